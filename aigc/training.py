"""What ``python -m aigc.run`` does once its config is composed: check it, build every group, load
the data, open the MLflow run, fit, and log the run's model.

It imports torch, Lightning and MLflow; ``aigc.run`` imports this module only when it trains,
so that ``--help``, ``--cfg job`` and a rejected override answer in well under two seconds.
"""

from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from optuna import TrialPruned

from aigc import tags
from aigc.callbacks import ConfigSnapshot
from aigc.callbacks.random_state import RandomState
from aigc.callbacks.trial_pruning import TrialPruning, raise_if_pruned
from aigc.capabilities import MissingCapability
from aigc.hub import PretrainedUnavailable
from aigc.precision import trainer_precision
from aigc.stored import read_checkpoint
from aigc.tracking.run.lifecycle import tracked_run
from aigc.tracking.run.logger import MLflowLogger
from aigc.tracking.run.record import record_run, recorded_config, typed_overrides
from aigc.tracking.run.resume import resume_point
from aigc.validation import ConfigError, check_trainable, validate, within_memory

CODE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    datamodule: L.LightningDataModule
    model: L.LightningModule
    trainer: L.Trainer
    tracker: MLflowLogger | None
    precision: str  # what the Trainer computes in, and why (trainer.precision=auto chooses)
    config: dict  # resolved, env secrets as text, plain containers: what params, artifacts and checkpoints record


def build(cfg: DictConfig) -> Job:
    """Instantiate every group; nothing here knows which model or dataset it builds."""
    config = recorded_config(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks += [ConfigSnapshot(config), RandomState()]
    if (pruning := TrialPruning.for_this_job(cfg.objective.metric)) is not None:
        callbacks.append(pruning)
    # Only rank zero talks to MLflow: processes that torchrun or SLURM start as other ranks know
    # their rank from the environment and get no logger; workers that Lightning spawns get rank
    # zero's logger (run id included) and log nothing through it.
    on_rank_zero = rank_zero_only.rank == 0
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()] if on_rank_zero else []
    with within_memory():
        model = instantiate(cfg.model, _convert_="all")
    precision, why = trainer_precision(cfg.trainer, model)
    return Job(
        datamodule=instantiate(cfg.data, _convert_="all"),
        model=model,
        trainer=instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision),
        tracker=next((lg for lg in loggers if isinstance(lg, MLflowLogger)), None),
        precision=f"{precision} ({why})",
        config=config,
    )


def train(cfg: DictConfig) -> float | None:
    """Check, build, load the data, then open the MLflow run and fit: a command that can't train
    (a bad config, missing data, an unreachable store) stops before any run exists."""
    validate(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    job = build(cfg)
    hydra_cfg = HydraConfig.get()
    tracker = job.tracker
    if tracker is not None and (twin := tracker.finished_twin()) is not None:
        print(f"This job finished before in the same sweep (MLflow run {twin.info.run_id}): not run again")
        return twin.data.metrics.get(cfg.objective.metric)
    ckpt_path, run_id = resume_point(cfg)
    checkpoints = claim_checkpoint_folder(job.trainer)
    if tracker is not None:
        if run_id:
            tracker.continue_run(run_id)
        tracker.check_reachable()  # before any data is loaded
    job.datamodule.prepare_data()
    job.datamodule.setup("fit")
    source = getattr(job.datamodule, "source", None)
    if source is not None:
        print(f"Data: {source.describe()}")
    check_trainable(job.datamodule, job.model, job.trainer.callbacks)
    if tracker is not None:
        tracker.open_run()
    with tracked_run(tracker):
        if tracker is not None:
            where = {tags.PRECISION: job.precision} | ({tags.CHECKPOINTS: str(checkpoints)} if checkpoints else {})
            if hydra_cfg.mode == RunMode.MULTIRUN:
                where |= {
                    tags.SWEEP_JOB: str(hydra_cfg.job.num),
                    tags.SWEEP_DIR: str(Path(hydra_cfg.sweep.dir).resolve()),
                }
            tracker.set_tags(where)
            overrides = typed_overrides(hydra_cfg.overrides.task)
            record_run(tracker, job.config, overrides, source, CODE_DIR, job.datamodule.state_dict())
            print(f"MLflow run {tracker.run_id} started in experiment '{tracker.experiment_name}'")
        job.trainer.fit(job.model, datamodule=job.datamodule, ckpt_path=ckpt_path)
        raise_if_pruned(job.trainer)  # what it logged stays; the run ends KILLED, tagged pruned
        if tracker is not None and tracker.pyfunc and rank_zero_only.rank == 0:
            tracker.log_run_model(*weights_to_serve(job), step=job.trainer.global_step)
            if cfg.get("register") and hydra_cfg.mode != RunMode.MULTIRUN:  # a sweep registers its best job
                tracker.register_run_model(cfg.register, cfg.register_alias)
    if tracker is not None:
        _print_where(tracker)
    objective = job.trainer.callback_metrics.get(cfg.objective.metric)
    return None if objective is None else float(objective)


def weights_to_serve(job: Job) -> tuple[dict, str]:
    """The best checkpoint (the last when nothing is scored), or the weights in memory when the
    run saves no checkpoints: (checkpoint, where it comes from)."""
    callback = job.trainer.checkpoint_callback
    path = callback and (callback.best_model_path or callback.last_model_path)
    if path:
        return read_checkpoint(path), path
    state = {"state_dict": job.model.state_dict(), ConfigSnapshot.key: job.config}
    return state | {type(job.datamodule).__qualname__: job.datamodule.state_dict()}, "the final weights"


def claim_checkpoint_folder(trainer: L.Trainer) -> Path | None:
    """Create the run's checkpoint folder, or refuse a folder that exists: it holds another
    command's checkpoints (two runs given one ``hydra.run.dir``), which this run would overwrite
    or resume would mistake for its own. Rank zero writes checkpoints; the others don't claim."""
    callback = trainer.checkpoint_callback
    if callback is None or callback.dirpath is None or rank_zero_only.rank != 0:
        return None
    folder = Path(callback.dirpath).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        raise FileExistsError(
            f"the checkpoint folder {folder} exists: another run writes there; give this run its own "
            "hydra.run.dir (the default names a new folder for every command)"
        ) from None
    return folder


def _print_where(tracker: MLflowLogger) -> None:
    print(
        f"\nMLflow run {tracker.run_id} (experiment '{tracker.experiment_name}', id {tracker.experiment_id})\n"
        f"  store: {tracker.tracking_uri}\n"
        f"  view:  {tracker.ui_command()}"
    )
    if not tracker.tracking_uri.startswith(("http://", "https://")):
        print(f"  then open http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}/runs/{tracker.run_id}")


# the user's input, or what it names: their one line says it all
USER_ERRORS = (ConfigError, MissingCapability, PretrainedUnavailable)
# a sweep's pruner stopped the job: neither a success nor a failure (the sweeper records it PRUNED)
PRUNED = TrialPruned
