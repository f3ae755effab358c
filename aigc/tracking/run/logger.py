"""Lightning's MLFlowLogger, plus what a generative run needs: images with steps,
text artifacts, artifacts stored beside a local SQLite store, a reachability
check before any training starts, and membership of a sweep's parent run."""

import functools
import os
import sys
from collections.abc import Callable

import numpy as np
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

from aigc.common import tags
from aigc.common.constraints import PositiveFloat
from aigc.common.errors import first_line
from aigc.tracking.run.signals import uninterrupted
from aigc.tracking.run.system_metrics import SystemMetrics
from aigc.tracking.store.client import default_artifact_location, experiment_id, open_store, reachable_store
from aigc.tracking.store.writer import SpoolingClient

CHECKPOINT_FLUSH_S = 5.0  # the longest a checkpoint waits for the writes queued before it


class MLflowLogger(MLFlowLogger):
    """``parent_run_id`` makes the run a child of that run (a sweep's job): it is filed in the
    parent's experiment, whatever ``experiment_name`` says, so that a sweep over models stays
    one tree. An empty ``run_name`` leaves the naming to MLflow. ``continue_run`` (resume) logs
    into an existing run instead of creating one.

    With a ``spool_dir``, writes never hold up training (``aigc.tracking.store.writer``): they are sent
    by a background thread, spooled there when the store fails, and the run's heartbeat tag is
    refreshed every ``heartbeat_s`` seconds. MLflow's own HTTP retries (minutes when a server is
    gone) are cut to a short timeout; the spool takes their place.

    ``pyfunc``: when training ends, the run's best (else last) weights are logged as its MLflow
    model (``aigc.tracking.run.tracker``); Lightning's ``log_model`` is about the checkpoint artifacts.

    ``system_metrics_s``: sample the machine (CPU, memory, disk, network, GPU) this often into
    ``system/*`` metrics while the run is open (``aigc.tracking.run.system_metrics``); None: off."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        artifact_location: str | None = None,
        parent_run_id: str | None = None,
        run_name: str | None = None,
        spool_dir: str | None = None,
        heartbeat_s: PositiveFloat = 30.0,
        pyfunc: bool = True,
        system_metrics_s: PositiveFloat | None = None,
        **kwargs,
    ):
        if spool_dir is not None:
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        client = open_store(tracking_uri, must_exist=False)  # a new store's tables, made under its lock
        super().__init__(
            experiment_name=experiment_name,
            tracking_uri=tracking_uri,
            artifact_location=artifact_location or default_artifact_location(tracking_uri, experiment_name),
            run_name=run_name or None,
            **kwargs,
        )
        self._writes = None if spool_dir is None else SpoolingClient(client, spool_dir, tracking_uri, heartbeat_s)
        # every call Lightning and this class make to the store completes before Ctrl-C acts
        self._mlflow_client = UninterruptedClient(self._writes or client)
        self._parent_run_id = parent_run_id
        self.pyfunc = pyfunc
        self._system_metrics_s = system_metrics_s
        self._system_metrics: SystemMetrics | None = None
        self._continuing = False
        # continuing a run: per metric, the last step it already has (points up to it are not logged again)
        self._logged_until: dict[str, int] = {}

    @property
    def experiment(self) -> MlflowClient:
        """Lightning's client of the store, without its side effect: Lightning points the whole
        process's MLflow at this store, ``MLFLOW_TRACKING_URI`` included, so a process that runs or
        scores several runs (a notebook, a test) would send the next one here whatever it says."""
        if self._initialized:
            return self._mlflow_client
        before = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            return super().experiment
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    @property
    def experiment_name(self) -> str:
        return self._experiment_name

    def check_reachable(self) -> None:
        """Create the store and the experiment now, or fail fast with one message naming the URI
        and the fix (instead of MLflow's minutes of retries). No run exists yet: ``open_run``."""
        with reachable_store(self._tracking_uri, experiment=self._experiment_name):
            self._find_experiment()

    def open_run(self) -> None:
        """Create the run (or take up the one ``continue_run`` named), with an explicit experiment id."""
        with reachable_store(self._tracking_uri, experiment=self._experiment_name):
            self._find_experiment()
            _ = self.experiment
            if self._continuing:
                client, run = self._mlflow_client, self._mlflow_client.get_run(self._run_id)
                self._experiment_name = client.get_experiment(run.info.experiment_id).name
                self._logged_until = {
                    key: max(point.step for point in client.get_metric_history(self._run_id, key))
                    for key in run.data.metrics
                }
                client.update_run(self._run_id, status="RUNNING")
                if tags.END in run.data.tags:  # reaped as lost (aigc.runs): it lives again
                    client.delete_tag(self._run_id, tags.END)
            if self._system_metrics_s:
                self._system_metrics = SystemMetrics(
                    self.run_id, self._tracking_uri, self._system_metrics_s, resume=self._continuing
                )

    def stop_system_metrics(self) -> None:
        """Stop sampling system metrics (before the run's status is written: the monitor stops
        by itself when it sees the run end, but only at its next sample)."""
        if self._system_metrics is not None:
            self._system_metrics.stop()
            self._system_metrics = None

    def continue_run(self, run_id: str) -> None:
        """Log into the existing run ``run_id`` (resuming it) instead of creating one. Points at
        steps the run already has, logged between its last checkpoint and its end, are not logged
        again: the resumed training recomputes them, so each step keeps one value."""
        self._run_id = run_id
        self._continuing = True

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        if self._logged_until and step is not None:
            metrics = {key: value for key, value in metrics.items() if step > self._logged_until.get(key, -1)}
        if metrics:
            super().log_metrics(metrics, step)

    def finished_twin(self):
        """In a resumed sweep: the FINISHED run of this same job (same parent, same name), or None.

        Under Hydra's basic sweeper the name is the job's overrides, so a grid run again after an
        interrupt skips the jobs it already finished. (Optuna trials never repeat their params.)"""
        if not (self._parent_run_id and self._run_name):
            return None
        with reachable_store(self._tracking_uri, experiment=self._experiment_name):
            parent = self._mlflow_client.get_run(self._parent_run_id)
            siblings = self._mlflow_client.search_runs(
                [parent.info.experiment_id],
                filter_string=(
                    f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self._parent_run_id}' and attributes.status = 'FINISHED'"
                ),
                max_results=50000,
            )
        return next((run for run in siblings if run.info.run_name == self._run_name), None)

    def _find_experiment(self) -> None:
        """The experiment a new run goes in: its sweep parent's, or ``experiment_name`` (created if new)."""
        if self._run_id is None and self._experiment_id is None:
            if self._parent_run_id:
                parent = self._mlflow_client.get_run(self._parent_run_id)
                self._experiment_id = parent.info.experiment_id
                self._experiment_name = self._mlflow_client.get_experiment(self._experiment_id).name
                self.tags = (self.tags or {}) | {
                    MLFLOW_PARENT_RUN_ID: self._parent_run_id,
                    tags.SWEEP_ID: parent.data.tags.get(tags.SWEEP_ID, ""),
                }
            else:
                self._experiment_id = experiment_id(self._mlflow_client, self._experiment_name)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        """What was logged before a checkpoint reaches the store (or the spool) before training
        goes on: a run killed later resumes from the checkpoint with every point up to it."""
        super().after_save_checkpoint(checkpoint_callback)
        self.flush_writes(timeout_s=CHECKPOINT_FLUSH_S)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning's end of a run, the status first: the checkpoint artifacts after it are optional,
        and a failure to store them leaves the run FINISHED (or FAILED), never RUNNING."""
        if not self._initialized:
            return
        self.stop_system_metrics()
        self.experiment.set_terminated(
            self.run_id, {"success": "FINISHED", "failed": "FAILED"}.get(status, status.upper())
        )
        if self._checkpoint_callback:
            optional_write(
                lambda: self._scan_and_log_checkpoints(self._checkpoint_callback), "the checkpoint artifacts"
            )
        self.flush_writes()

    @property
    def degraded(self) -> bool:
        """Whether the store stopped answering and writes are being spooled."""
        return self._writes is not None and self._writes.degraded

    def flush_writes(self, timeout_s: float = 30.0, close: bool = False) -> int:
        """Send the queued writes (spooling what the store does not take within ``timeout_s``);
        ``close`` when the run has ended. Returns how many writes stay spooled for ``aigc.sync``."""
        return 0 if self._writes is None else self._writes.flush(timeout_s, close)

    @rank_zero_only
    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        """Log images under ``key`` at ``step`` (MLflow's UI shows them on a step slider)."""
        if self._logged_until and (step or 0) <= max(self._logged_until.values()):
            return  # a continued run already has this step's images
        for index, image in enumerate(images):
            name = key if len(images) == 1 else f"{key}_{index}"
            self.experiment.log_image(self.run_id, _as_array(image), key=name, step=step or 0)

    @rank_zero_only
    def set_tags(self, tags: dict[str, str]) -> None:
        """One write per ``MAX_PARAMS_TAGS_PER_BATCH`` tags (MLflow's limit), not one per tag: a server
        with sign-in checks the password of every request (about 0.2 s of its CPU each, MLflow 3.17)."""
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(batch), MAX_PARAMS_TAGS_PER_BATCH):
            self.experiment.log_batch(self.run_id, tags=batch[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    @rank_zero_only
    def log_text_artifact(self, text: str, artifact_file: str) -> None:
        """Save ``text`` as the artifact ``artifact_file`` (not Lightning's WandbLogger.log_text table)."""
        self.experiment.log_text(self.run_id, text, artifact_file)

    @rank_zero_only
    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self.experiment.log_artifact(self.run_id, local_path, artifact_path)

    def ui_command(self) -> str:
        store = self._tracking_uri
        if store.startswith(("http://", "https://")):
            return f"open {store}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5000"


class UninterruptedClient:
    """An MlflowClient whose calls run under ``lifecycle.uninterrupted``: a signal that
    arrives during one takes effect when it returns, never inside a database transaction."""

    def __init__(self, client: MlflowClient):
        self._client = client

    def __getattr__(self, name: str):
        if name == "_client":  # while unpickling, before __init__'s attribute exists
            raise AttributeError(name)
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args, **kwargs):
            with uninterrupted():
                return attribute(*args, **kwargs)

        return call


def _as_array(image) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else np.asarray(image)


def optional_write(write: Callable[[], object], what: str) -> None:
    """Run a write the run can end without (an artifact); if it fails, say so in one line."""
    try:
        write()
    except Exception as error:
        print(f"Warning: {what} could not be stored in the run ({first_line(error)})", file=sys.stderr)
