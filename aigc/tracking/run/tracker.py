"""What training and evaluation say to the tracking store, in the order they say it: ``Tracker``
for an MLflow run (``logger=mlflow``), ``NullTracker`` for none (``logger=none``, and every
process but rank zero). Both have the same methods, so a command reads as a straight line:

    tracker.connect(resume_run_id)          # the store answers (or one line), before any data loads
    with tracker.run(tags, record):         # the run exists, is recorded, and ends FINISHED/FAILED/KILLED
        trainer.fit(...)
        tracker.log_model(checkpoint, source, step)
        tracker.register(name, alias)
    tracker.report()                        # where to find it
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mlflow.entities import Run

from aigc.data.source import DataSource
from aigc.serving.logged_model import log_run_model
from aigc.serving.registry import register
from aigc.tracking.run.lifecycle import tracked_run
from aigc.tracking.run.logger import MLflowLogger, optional_write
from aigc.tracking.run.record import record_run


@dataclass
class Record:
    """What a new run records besides its metrics (``aigc.tracking.run.record.record_run``)."""

    config: dict
    overrides: list[str]
    source: DataSource | None = None
    data_state: dict | None = None


class Tracker:
    def __init__(self, logger: MLflowLogger):
        self.logger = logger

    def finished_twin(self) -> Run | None:
        """In a resumed sweep, this job's run if it finished before (``MLflowLogger.finished_twin``)."""
        return self.logger.finished_twin()

    def connect(self, resume_run_id: str | None = None) -> None:
        """Continue ``resume_run_id`` if given, and create or reach the store and the experiment:
        one line naming the fix if it can't, before any data is loaded and before any run exists."""
        if resume_run_id:
            self.logger.continue_run(resume_run_id)
        self.logger.check_reachable()

    @contextmanager
    def run(self, tags: dict[str, str], record: Record) -> Iterator[None]:
        """Open the run, tag and record it, and end it however the block ends (``tracked_run``)."""
        self.logger.open_run()
        with tracked_run(self.logger):
            self.logger.set_tags(tags)
            record_run(self.logger, record.config, record.overrides, record.source, record.data_state)
            print(f"MLflow run {self.logger.run_id} started in experiment '{self.logger.experiment_name}'")
            yield

    @contextmanager
    def rescoring(self) -> Iterator[None]:
        """Log into a run that has ended (scores of its checkpoint): it ends as it ended before,
        whether the scoring succeeds or fails."""
        client, run_id = self.logger.experiment, self.logger.run_id
        ended = client.get_run(run_id).info
        try:
            yield
        finally:
            client.set_terminated(run_id, ended.status, end_time=ended.end_time)
            self.logger.flush_writes(close=True)

    def log_model(self, checkpoint: dict, source: str, step: int = 0) -> None:
        """The run's MLflow model (``aigc.serving.logged_model``), when ``logger.mlflow.pyfunc`` is on;
        a store that fails leaves the run as it is, with a line saying so."""
        logger = self.logger
        if not logger.pyfunc or logger.run_id is None:
            return
        if logger.degraded:
            print(
                "Warning: the tracking store is down, so the run's MLflow model was not logged; "
                f"sample from its checkpoints: python -m aigc.sample ckpt_path={source}",
                file=sys.stderr,
            )
            return
        optional_write(
            lambda: log_run_model(logger.experiment, logger.run_id, checkpoint, source, step), "the run's MLflow model"
        )

    def register(self, name: str | None, alias: str | None) -> None:
        """A new version of the registered model ``name`` (if given) from the run's model; a failure is one line."""
        if name and self.logger.pyfunc:
            optional_write(
                lambda: register(self.logger.experiment, self.logger.run_id, name, alias),
                f"model registration ({name})",
            )

    def report(self) -> None:
        """Where the run is, and how to look at it."""
        logger = self.logger
        print(
            f"\nMLflow run {logger.run_id} (experiment '{logger.experiment_name}', id {logger.experiment_id})\n"
            f"  store: {logger.tracking_uri}\n"
            f"  view:  {logger.ui_command()}"
        )
        if not logger.tracking_uri.startswith(("http://", "https://")):
            print(f"  then open http://127.0.0.1:5000/#/experiments/{logger.experiment_id}/runs/{logger.run_id}")


class NullTracker:
    """Tracks nothing; a run still stops cleanly on Ctrl-C or SIGTERM (``tracked_run``)."""

    logger = None

    def finished_twin(self) -> None:
        return None

    def connect(self, resume_run_id: str | None = None) -> None:
        pass

    @contextmanager
    def run(self, tags: dict[str, str], record: Record) -> Iterator[None]:
        with tracked_run(None):
            yield

    @contextmanager
    def rescoring(self) -> Iterator[None]:
        yield

    def log_model(self, checkpoint: dict, source: str, step: int = 0) -> None:
        pass

    def register(self, name: str | None, alias: str | None) -> None:
        pass

    def report(self) -> None:
        pass


def tracker_for(logger: MLflowLogger | None) -> Tracker | NullTracker:
    return NullTracker() if logger is None else Tracker(logger)
