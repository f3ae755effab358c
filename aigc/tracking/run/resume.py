"""Resuming a run: ``resume=<run id>`` or ``ckpt_path=``, into the same MLflow run.

``resume_point`` finds what to restore (the newest checkpoint of the run that loads, from its
folder or its artifacts) and which run to continue, and refuses a checkpoint that another run
wrote or a config that builds another model. The logger then continues that run
(``MLflowLogger.continue_run``: points it already has are not logged twice) and Lightning
restores weights, optimizers, loop counters and, through ``aigc.callbacks.random_state``, the
random generators.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf

from aigc.common import tags
from aigc.common.errors import Preempted
from aigc.common.slurm import slurm_job_id
from aigc.common.stored import CONFIG_KEY, RUN_KEY, NotACheckpoint, read_checkpoint
from aigc.tracking.store.checkpoints import checkpoint_of_run
from aigc.tracking.store.client import open_store, stored_run

# where aigc.run's config names the store
TRACKING_URI = "logger.mlflow.tracking_uri"


class CannotResume(ValueError):
    """``resume=`` or ``ckpt_path=`` names something this command can't continue (a run without a
    checkpoint, a checkpoint of another model): the user's input, printed as one line."""


def checkpoint_to_resume(client: MlflowClient, run: Run, download_to: Path) -> tuple[str, dict]:
    """(path, checkpoint) of the newest checkpoint of ``run`` that loads and belongs to it.

    Looks in the run's checkpoint folder while that exists (a killed run logged no checkpoint
    artifact), else among its ``last`` and ``best`` artifacts, downloaded into ``download_to``.
    A file that does not load (cut short by a full disk, say) or that another run wrote is
    skipped, and the console says so and which checkpoint serves.
    """
    run_id = run.info.run_id
    folder = Path(run.data.tags.get(tags.CHECKPOINTS, ""))
    skipped: list[str] = []
    found = _newest(sorted(folder.glob("*.ckpt")) if folder.is_dir() else [], run_id, skipped)
    if found is None:
        download_to.mkdir(parents=True, exist_ok=True)
        downloaded = []
        for which in ("last", "best"):
            try:
                downloaded.append(Path(checkpoint_of_run(client, run_id, which, str(download_to))))
            except FileNotFoundError:
                pass
        found = _newest(downloaded, run_id, skipped)
    for reason in skipped:
        print(f"Resume: skipping {reason}")
    if found is None:
        raise CannotResume(
            f"run {run_id} has no checkpoint to resume from: none in {folder} or its 'last'/'best' artifacts loads "
            "(a run killed before its first checkpoint can only start again)"
        )
    path, checkpoint = found
    print(
        f"Resume: from {path} (epoch {checkpoint.get('epoch')}, step {checkpoint.get('global_step')}), "
        f"the newest checkpoint of run {run_id} that loads"
    )
    return str(path), checkpoint


def _newest(paths: list[Path], run_id: str, skipped: list[str]) -> tuple[Path, dict] | None:
    readable = []
    for path in paths:
        try:
            checkpoint = read_checkpoint(path)
        except NotACheckpoint as error:
            skipped.append(str(error))
            continue
        owner = checkpoint.get(RUN_KEY)
        if owner != run_id:
            skipped.append(f"{path}: it belongs to run {owner}, not {run_id}")
            continue
        # the furthest training state; between equals, last.ckpt (saved after best-*.ckpt)
        readable.append(
            ((checkpoint.get("global_step", -1), checkpoint.get("epoch", -1), path.stem == "last"), path, checkpoint)
        )
    if not readable:
        return None
    _, path, checkpoint = max(readable, key=lambda item: item[0])
    return path, checkpoint


def resume_point(cfg: DictConfig) -> tuple[str | None, str | None]:
    """(checkpoint to restore, MLflow run to continue) for ``resume=<run id>`` or ``ckpt_path=``.

    The checkpoint restores weights, optimizers, schedulers, loop counters and random state; the
    run continues on the same step axis. The composed config must build the same model and data
    as the run did: a resume with other overrides would load the checkpoint into the wrong nets.
    A checkpoint that another run wrote is never resumed into this one.
    """
    ckpt_path, run_id = cfg.get("ckpt_path"), cfg.get("resume")
    tracking_uri = OmegaConf.select(cfg, TRACKING_URI)
    run = None
    if run_id:
        if tracking_uri is None:
            raise CannotResume("resume=<run id> needs the MLflow logger (drop logger=none), or give ckpt_path=")
        client = open_store(tracking_uri)
        run = stored_run(client, run_id, f"resume={run_id}", setting=TRACKING_URI)
        ckpt_path, checkpoint = checkpoint_to_resume(client, run, Path(cfg.paths.output_dir) / "resumed_from")
    elif ckpt_path:
        checkpoint = read_checkpoint(ckpt_path)
        run_id = checkpoint.get(RUN_KEY)
        if run_id and tracking_uri is not None:
            run = stored_run(
                open_store(tracking_uri),
                run_id,
                f"named by {ckpt_path}; or resume untracked with logger=none",
                setting=TRACKING_URI,
            )
    else:
        return None, None
    built = checkpoint.get(CONFIG_KEY, {})
    for group in ("model", "data"):
        if built and built[group]["_target_"] != cfg[group]._target_:
            overrides = run.data.tags.get(tags.OVERRIDES) if run is not None else None
            raise CannotResume(
                f"the checkpoint's {group} is {built[group]['_target_']}, this config's {cfg[group]._target_}: "
                f"resume with the run's own overrides{f' ({overrides})' if overrides else ''}"
            )
    return ckpt_path, run_id


def requeued_run(cfg: DictConfig) -> str | None:
    """The MLflow run to continue when this is a requeued SLURM job's next start
    (``SLURM_RESTART_COUNT`` > 0): the latest run of the experiment tagged with the job's id."""
    job = slurm_job_id()
    if job is None or int(os.environ.get("SLURM_RESTART_COUNT", "0")) < 1 or cfg.get("resume") or cfg.get("ckpt_path"):
        return None
    tracking_uri, experiment = (
        OmegaConf.select(cfg, f"logger.mlflow.{key}") for key in ("tracking_uri", "experiment_name")
    )
    if tracking_uri is None:
        return None
    client = open_store(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = found and client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{tags.SLURM_JOB}` = '{job}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    restart = os.environ["SLURM_RESTART_COUNT"]
    print(f"Requeued SLURM job {job} (start {int(restart) + 1}): continuing MLflow run {runs[0].info.run_id}")
    return runs[0].info.run_id


@contextmanager
def requeued_when_preempted() -> Iterator[None]:
    """After a preemption (the run has ended KILLED, its checkpoint written): a SLURM job puts
    itself back in the queue (``scontrol requeue``); its next start continues the run."""
    try:
        yield
    except Preempted as stop:
        job = slurm_job_id()
        if job is None:
            raise
        if rank_zero_only.rank != 0:
            stop.requeued = job  # rank zero requeues the job, every task of it
        else:
            requeue = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
            if requeue.returncode != 0:
                print(f"Warning: scontrol requeue {job} failed: {requeue.stderr.strip()[:300]}", file=sys.stderr)
            else:
                stop.requeued = job
        raise
