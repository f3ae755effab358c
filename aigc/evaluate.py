"""Score a trained model and log the scores into its MLflow run.

    python -m aigc.evaluate run_id=<id>                    # the run's last checkpoint
    python -m aigc.evaluate run_id=<id> checkpoint=best
    python -m aigc.evaluate ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt
    python -m aigc.evaluate run_id=<id> trainer=ddp_cpu      # on 2 processes: the same scores

The checkpoint carries the run's resolved config and its MLflow run id, so
nothing else is needed. Scores are logged as ``test/*`` metrics; metric settings
are overrides as in training (``metrics.num_samples=10000``).
"""

import tempfile

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aigc.callbacks import ConfigSnapshot
from aigc.console import entry_point, one_line_errors
from aigc.stored import instantiate_stored, read_checkpoint
from aigc.tracking.run.logger import MLflowLogger
from aigc.tracking.store.checkpoints import checkpoint_of_run
from aigc.tracking.store.client import open_store, stored_run


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if not (cfg.run_id or cfg.ckpt_path):
        raise ValueError("say which model to score: run_id=<mlflow run id> or ckpt_path=<checkpoint file>")
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
        trainer = instantiate(cfg.trainer, logger=logger or False, callbacks=callbacks)
        (scores,) = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
    for name, value in sorted(scores.items()):
        print(f"{name} = {value:.6g}")
    if logger is not None:  # scoring a run doesn't change how it ended
        client.set_terminated(run_id, status.status, end_time=status.end_time)
        print(f"Logged {len(scores)} test metrics into MLflow run {run_id} ({cfg.tracking_uri})")
    return scores


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    entry_point(main)
