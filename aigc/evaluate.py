"""Score a trained model and log the scores into its MLflow run.

    python -m aigc.evaluate run_id=<id>                    # the run's last checkpoint
    python -m aigc.evaluate run_id=<id> checkpoint=best
    python -m aigc.evaluate ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt
    python -m aigc.evaluate run_id=<id> trainer=ddp_cpu      # on 2 processes: the same scores
    python -m aigc.evaluate ckpt_path=<file> logger=none       # scored, logged nowhere
    python -m aigc.evaluate run_id=<id> sampler=ddim steps=50 guidance=3   # a diffusion model, sampled otherwise
    python -m aigc.evaluate model=hf_causal_lm model.pretrained=gpt2 data=shakespeare

The checkpoint carries the run's resolved config and its MLflow run id, so
nothing else is needed. Scores are logged as ``test/*`` metrics; metric settings
are overrides as in training (``metrics.num_samples=10000``).

With ``model=`` and ``data=`` instead, the model is scored as its config builds it (a
pretrained model before fine-tuning) and logged as a new run (tag ``aigc.task=evaluate``) in
the experiment training would use, so base and fine-tuned models sit side by side.
"""

import tempfile

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from aigc.common import tags
from aigc.common.collector import started
from aigc.common.stored import CONFIG_KEY, RUN_KEY, read_checkpoint
from aigc.config.validation import validate
from aigc.jobs.build import Job, build, family_callbacks
from aigc.jobs.console import entry_point, one_line_errors
from aigc.tracking.run.record import typed_overrides
from aigc.tracking.run.tracker import Record
from aigc.tracking.store.checkpoints import checkpoint_of_run
from aigc.tracking.store.client import open_store, stored_run

# what a diffusion model's samples are drawn with, which an evaluation may change
SAMPLING_OPTIONS = ("sampler", "steps", "guidance")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("model") is not None:
        return score_as_configured(cfg)
    if not (cfg.run_id or cfg.ckpt_path):
        raise ValueError(
            "say which model to score: run_id=<mlflow run id>, ckpt_path=<checkpoint file>, "
            "or model=<name> data=<name> (as configured, untrained)"
        )
    client = open_store(cfg.tracking_uri) if cfg.run_id else None
    with tempfile.TemporaryDirectory() as folder:
        ckpt_path = cfg.ckpt_path or checkpoint_of_run(client, cfg.run_id, cfg.checkpoint, folder)
        checkpoint = read_checkpoint(ckpt_path)
        # the run the scores go into (logger=none: scored, logged nowhere)
        run_id = (cfg.run_id or checkpoint.get(RUN_KEY)) if cfg.get("logger") else None
        if run_id:
            stored_run(client or open_store(cfg.tracking_uri), run_id, f"named by {ckpt_path}")
        job = build(scoring_config(cfg, checkpoint, ckpt_path, run_id), stored_in=ckpt_path)
        with job.tracker.rescoring():  # scoring a run, or failing to, doesn't change how it ended
            (scores,) = job.trainer.test(job.model, datamodule=job.datamodule, ckpt_path=ckpt_path)
    for name, value in sorted(scores.items()):
        print(f"{name} = {value:.6g}")
    if run_id:
        print(f"Logged {len(scores)} test metrics into MLflow run {run_id} ({cfg.tracking_uri})")
    return scores


def scoring_config(cfg: DictConfig, checkpoint: dict, ckpt_path: str, run_id: str | None) -> DictConfig:
    """The run's model and data (untrusted: ``build`` rebuilds them from allowed classes only), with
    today's callbacks, metric settings, paths and trainer, logging into the run (if it has one).

    Replaced, not merged: no stored callback is built. The run's family callbacks (by name)
    come from today's definitions of them."""
    run_cfg = OmegaConf.create(checkpoint.get(CONFIG_KEY) or {})
    if not {"model", "data", "logger"} <= set(run_cfg):
        raise ValueError(f"{ckpt_path} holds no aigc run config ({CONFIG_KEY}): it was not written by aigc.run")
    trained_with = set(run_cfg.get("callbacks") or {})
    families = family_callbacks(typed_overrides(HydraConfig.get().overrides.task), HydraConfig.get().job.config_name)
    with open_dict(run_cfg):
        for group in ("callbacks", "metrics", "paths", "trainer"):
            run_cfg[group] = cfg[group]
        for option in SAMPLING_OPTIONS:  # sampled otherwise than the run trained it to
            if cfg.get(option) is not None:
                if option not in run_cfg.model:
                    raise ValueError(f"{option}= is for models that take it (a diffusion model); {ckpt_path} has none")
                run_cfg.model[option] = cfg[option]
        for name in trained_with & set(families):
            run_cfg.callbacks[name] = families[name]
        run_cfg.logger = {"mlflow": logging_into(cfg, run_id=run_id)} if run_id else None
    return run_cfg


def logging_into(cfg: DictConfig, **settings) -> dict:
    """``logger.mlflow`` on this command's store (``tracking_uri=``); scoring logs no checkpoints and no model."""
    return {**cfg.logger.mlflow, "tracking_uri": cfg.tracking_uri, "log_model": False, "pyfunc": False, **settings}


def score_as_configured(cfg: DictConfig) -> dict[str, float]:
    """Score the model ``cfg.model`` builds, untrained, on ``cfg.data``; log a new run."""
    if cfg.run_id or cfg.ckpt_path:
        raise ValueError("score a trained model (run_id=, ckpt_path=) or one as configured (model=), not both")
    if cfg.get("data") is None:
        raise ValueError(f"model={HydraConfig.get().runtime.choices.model} is scored on data: add data=<name>")
    overrides = typed_overrides(HydraConfig.get().overrides.task)
    # the family callbacks (samples, image and text metrics) that apply to this model and data;
    # training's own (checkpoints by the objective) have no place here: neither checked nor recorded
    job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "callbacks"])
    with open_dict(job_cfg):
        job_cfg.callbacks = family_callbacks(overrides, HydraConfig.get().job.config_name)
        if cfg.get("logger"):
            job_cfg.logger = {"mlflow": logging_into(cfg)}
    validate(job_cfg)
    job: Job = build(job_cfg, applicable_only=True)
    job.tracker.connect()
    job.datamodule.prepare_data()
    job.datamodule.setup("test")
    record = Record(job.config, overrides, job.datamodule.source, job.datamodule.state_dict())
    with job.tracker.run({tags.TASK: "evaluate", tags.PRECISION: job.precision}, record):
        (scores,) = job.trainer.test(job.model, datamodule=job.datamodule)
    for name, value in sorted(scores.items()):
        print(f"{name} = {value:.6g}")
    print(f"Logged {len(scores)} test metrics into a new MLflow run {job.tracker.logger.run_id} ({cfg.tracking_uri})")
    return scores


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    started()
    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    entry_point(main)
