"""Score a trained model and log the scores into its MLflow run.

    python -m aigc.evaluate run_id=<id>                    # the run's last checkpoint
    python -m aigc.evaluate run_id=<id> checkpoint=best
    python -m aigc.evaluate ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt
    python -m aigc.evaluate run_id=<id> trainer=ddp_cpu      # on 2 processes: the same scores
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
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aigc import tags
from aigc.callbacks import ConfigSnapshot
from aigc.capabilities import Contract, MissingCapability
from aigc.console import entry_point, one_line_errors
from aigc.precision import trainer_precision
from aigc.stored import instantiate_stored, read_checkpoint
from aigc.tracking.run.lifecycle import tracked_run
from aigc.tracking.run.logger import MLflowLogger
from aigc.tracking.run.record import record_run, recorded, typed_overrides
from aigc.tracking.store.checkpoints import checkpoint_of_run
from aigc.tracking.store.client import open_store, stored_run
from aigc.training import CODE_DIR
from aigc.validation import validate


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
        # the run's model and data (untrusted: rebuilt from allowed classes only); today's
        # callbacks, metric settings and paths
        run_cfg = OmegaConf.create(checkpoint.get(ConfigSnapshot.key) or {})
        if not {"model", "data", "logger"} <= set(run_cfg):
            raise ValueError(f"{ckpt_path} holds no aigc run config (aigc_config): it was not written by aigc.run")
        # replaced, not merged: no stored callback is built. The run's family callbacks (by name)
        # come from today's definitions of them.
        trained_with = set(run_cfg.get("callbacks") or {})
        for group in ("callbacks", "metrics", "paths"):
            run_cfg[group] = cfg[group]
        for name in trained_with & set(cfg.family_callbacks):
            run_cfg.callbacks[name] = cfg.family_callbacks[name]
        run_id = cfg.run_id or checkpoint.get(ConfigSnapshot.run_key)
        logger = None
        if run_id:
            client = client or open_store(cfg.tracking_uri)
            status = stored_run(client, run_id, f"named by {ckpt_path}").info
            logger = MLflowLogger(
                tracking_uri=cfg.tracking_uri,
                experiment_name=run_cfg.logger.mlflow.experiment_name,
                run_id=run_id,
                log_model=False,
                pyfunc=False,
            )
        model = instantiate_stored(run_cfg.model, f"{ckpt_path}: model", _convert_="all")
        datamodule = instantiate_stored(run_cfg.data, f"{ckpt_path}: data", _convert_="all")
        callbacks = [instantiate(c) for c in (run_cfg.get("callbacks") or {}).values()]
        trainer = instantiate(
            cfg.trainer, logger=logger or False, callbacks=callbacks, precision=trainer_precision(cfg.trainer, model)[0]
        )
        try:
            (scores,) = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
        finally:
            if logger is not None:  # scoring a run, or failing to, doesn't change how it ended
                client.set_terminated(run_id, status.status, end_time=status.end_time)
    for name, value in sorted(scores.items()):
        print(f"{name} = {value:.6g}")
    if logger is not None:
        print(f"Logged {len(scores)} test metrics into MLflow run {run_id} ({cfg.tracking_uri})")
    return scores


def score_as_configured(cfg: DictConfig) -> dict[str, float]:
    """Score the model ``cfg.model`` builds, untrained, on ``cfg.data``; log a new run."""
    if cfg.run_id or cfg.ckpt_path:
        raise ValueError("score a trained model (run_id=, ckpt_path=) or one as configured (model=), not both")
    if cfg.get("data") is None:
        raise ValueError(f"model={HydraConfig.get().runtime.choices.model} is scored on data: add data=<name>")
    # training's callbacks (checkpoints by the objective) have no place here: neither checked nor recorded
    validate(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "callbacks"]))
    config = recorded(cfg, without=("hydra", "callbacks"))
    model = instantiate(cfg.model, _convert_="all")
    datamodule = instantiate(cfg.data, _convert_="all")
    logger = MLflowLogger(
        tracking_uri=cfg.tracking_uri,
        experiment_name=cfg.experiment_name,
        run_name=cfg.run_name,
        log_model=False,
        pyfunc=False,
    )
    logger.check_reachable()
    datamodule.prepare_data()
    datamodule.setup("test")
    # the family callbacks (samples, image and text metrics) that apply to this model and data
    callbacks = [instantiate(c) for c in cfg.family_callbacks.values()]
    callbacks = [c for c in callbacks if _applies(c, model, datamodule)]
    logger.open_run()
    with tracked_run(logger):
        logger.set_tags({tags.TASK: "evaluate"})
        overrides = typed_overrides(HydraConfig.get().overrides.task)
        record_run(logger, config, overrides, datamodule.source, CODE_DIR, datamodule.state_dict())
        precision, why = trainer_precision(cfg.trainer, model)
        logger.set_tags({tags.PRECISION: f"{precision} ({why})"})
        trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, precision=precision)
        (scores,) = trainer.test(model, datamodule=datamodule)
    for name, value in sorted(scores.items()):
        print(f"{name} = {value:.6g}")
    print(f"Logged {len(scores)} test metrics into a new MLflow run {logger.run_id} ({cfg.tracking_uri})")
    return scores


def _applies(callback, model, datamodule) -> bool:
    if not isinstance(callback, Contract):
        return True
    try:
        callback.check(model, datamodule)
    except MissingCapability:
        return False
    return True


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    entry_point(main)
