"""What ``python -m aigc.run`` does once its config is composed: check it, build every group, load
the data, open the MLflow run, fit, and log the run's model.

It imports torch, Lightning and MLflow; ``aigc.run`` imports this module only when it trains,
so that ``--help``, ``--cfg job`` and a rejected override answer in well under two seconds.
"""

from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict
from optuna import TrialPruned

from aigc.callbacks import ConfigSnapshot
from aigc.callbacks.random_state import RandomState
from aigc.callbacks.trial_pruning import TrialPruning, raise_if_pruned
from aigc.common import tags
from aigc.common.capabilities import MissingCapability
from aigc.common.errors import RunNotFound, SignInRefused, first_line
from aigc.common.hub import PretrainedUnavailable
from aigc.common.slurm import slurm_job_id
from aigc.common.stored import read_checkpoint
from aigc.config.validation import ConfigError, check_monitors, check_trainable, validate
from aigc.jobs.build import Job, build
from aigc.tracking.run.record import recorded_config, typed_overrides
from aigc.tracking.run.rerun import rerun_config
from aigc.tracking.run.resume import CannotResume, requeued_run, requeued_when_preempted, resume_point
from aigc.tracking.run.tracker import Record
from aigc.trainer.distributed import lost_ranks_named
from aigc.trainer.internals import interrupts_kept


def build_training(cfg: DictConfig) -> Job:
    """``build`` with what training adds: the config in every checkpoint, the random state, and
    in a job of aigc's Optuna sweeper the pruning reports."""
    config = recorded_config(cfg)
    callbacks = [ConfigSnapshot(config), RandomState()]
    if (pruning := TrialPruning.for_this_job(cfg.objective.metric)) is not None:
        callbacks.append(pruning)
    return build(cfg, callbacks, config=config)


def train(cfg: DictConfig) -> float | None:
    """Check, build, load the data, then open the MLflow run and fit: a command that can't train
    (a bad config, missing data, an unreachable store) stops before any run exists."""
    overrides = typed_overrides(HydraConfig.get().overrides.task)
    if cfg.get("rerun"):
        cfg, overrides = rerun_config(cfg, overrides)
    if (requeued := requeued_run(cfg)) is not None:  # a preempted SLURM job, started again
        with open_dict(cfg):
            cfg.resume = requeued
    validate(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is a param of the run
    job = build_training(cfg)
    check_monitors(cfg, job.model, job.datamodule, job.trainer.callbacks)
    if (twin := job.tracker.finished_twin()) is not None:
        print(f"This job finished before in the same sweep (MLflow run {twin.info.run_id}): not run again")
        return twin.data.metrics.get(cfg.objective.metric)
    ckpt_path, run_id = resume_point(cfg)
    checkpoints = claim_checkpoint_folder(job.trainer, resumed_from=ckpt_path)
    job.tracker.connect(resume_run_id=run_id)  # before any data is loaded
    try:
        job.datamodule.prepare_data()
        job.datamodule.setup("fit")
    except ValueError as error:  # data that can't be read as configured (a folder, a file in it): the user's input
        raise ConfigError(first_line(error)) from None
    source = getattr(job.datamodule, "source", None)  # the datamodule printed which source served
    check_trainable(job.datamodule, job.model, job.trainer.callbacks)
    record = Record(job.config, overrides, source, job.datamodule.state_dict())
    rank_zero_only(print)(f"Precision: {job.precision}")
    with requeued_when_preempted(), job.tracker.run(run_tags(job, checkpoints), record):
        with lost_ranks_named(job.trainer), interrupts_kept():
            job.trainer.fit(job.model, datamodule=job.datamodule, ckpt_path=ckpt_path)
        raise_if_pruned(job.trainer)  # what it logged stays; the run ends KILLED, tagged pruned
        if rank_zero_only.rank == 0:
            job.tracker.log_model(*weights_to_serve(job), step=job.trainer.global_step)
            if HydraConfig.get().mode != RunMode.MULTIRUN:  # a sweep registers its best job
                job.tracker.register(cfg.get("register"), cfg.get("register_alias"))
    job.tracker.report()
    objective = job.trainer.callback_metrics.get(cfg.objective.metric)
    return None if objective is None else float(objective)


def run_tags(job: Job, checkpoints: Path | None) -> dict[str, str]:
    """Where the run computes and writes, and in a sweep which job it is."""
    where = {tags.PRECISION: job.precision} | ({tags.CHECKPOINTS: str(checkpoints)} if checkpoints else {})
    if job.config.get("rerun"):
        where[tags.RERUN_OF] = job.config["rerun"]
    if slurm_job_id() is not None:
        where[tags.SLURM_JOB] = slurm_job_id()
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        where |= {tags.SWEEP_JOB: str(hydra_cfg.job.num), tags.SWEEP_DIR: str(Path(hydra_cfg.sweep.dir).resolve())}
    return where


def weights_to_serve(job: Job) -> tuple[dict, str]:
    """The best checkpoint (the last when nothing is scored), or the weights in memory when the
    run saves no checkpoints: (checkpoint, where it comes from)."""
    callback = job.trainer.checkpoint_callback
    path = callback and (callback.best_model_path or callback.last_model_path)
    if path:
        return read_checkpoint(path), path
    state = {"state_dict": job.model.state_dict(), ConfigSnapshot.key: job.config}
    return state | {type(job.datamodule).__qualname__: job.datamodule.state_dict()}, "the final weights"


def claim_checkpoint_folder(trainer: L.Trainer, resumed_from: str | None = None) -> Path | None:
    """Create the run's checkpoint folder, or refuse a folder that exists: it holds another
    command's checkpoints (two runs given one ``hydra.run.dir``), which this run would overwrite
    or resume would mistake for its own; unless it is where the checkpoint this run resumes from
    lies (a requeued SLURM job step, in its own folder again). Rank zero writes checkpoints; the
    others don't claim."""
    callback = trainer.checkpoint_callback
    if callback is None or callback.dirpath is None or rank_zero_only.rank != 0:
        return None
    folder = Path(callback.dirpath).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        if resumed_from is not None and Path(resumed_from).resolve().parent == folder:
            return folder
        raise FileExistsError(
            f"the checkpoint folder {folder} exists: another run writes there; give this run its own "
            "hydra.run.dir (the default names a new folder for every command)"
        ) from None
    return folder


# the user's input, or what it names: their one line says it all
USER_ERRORS = (ConfigError, MissingCapability, PretrainedUnavailable, SignInRefused, RunNotFound, CannotResume)
# a sweep's pruner stopped the job: neither a success nor a failure (the sweeper records it PRUNED)
PRUNED = TrialPruned
