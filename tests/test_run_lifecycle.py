"""However a run ends, MLflow says so: FINISHED, FAILED or KILLED, never RUNNING."""

import os
import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from aigc.callbacks import NonFiniteLossError
from aigc.jobs.training import train
from aigc.tracking.run.lifecycle import tracked_run
from aigc.tracking.run.logger import MLflowLogger
from aigc.tracking.run.signals import RunInterrupted
from tests.conftest import all_runs, client_for, composed, interrupt_when, only_run, run_aigc, start_aigc

pytestmark = pytest.mark.slow
FAST = ("debug=fast", "data.download=false")


def test_exception_leaves_run_failed_with_one_clear_line(tmp_path: Path):
    result = run_aigc(tmp_path, *FAST, "+callbacks.boom._target_=failures.RaiseAtBatch", "+callbacks.boom.batch=2")
    assert result.returncode == 1
    assert "Error: RuntimeError: injected failure" in result.stderr
    assert "failures.py:" in result.stderr and "full traceback:" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr
    client = client_for(tmp_path)
    run = only_run(client)
    assert run.info.status == "FAILED"
    # what was logged before the failure stays
    assert len(client.get_metric_history(run.info.run_id, "train/loss_g")) == 2
    assert "error.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_non_finite_loss_stops_training_and_fails_the_run(tmp_path: Path):
    poison = ("+callbacks.poison._target_=tests.helpers.failures.PoisonWeightsAtBatch", "+callbacks.poison.batch=1")
    with composed("train", tmp_path, *FAST, *poison) as cfg, pytest.raises(NonFiniteLossError) as stopped:
        train(cfg)
    assert "train/loss_g is nan" in str(stopped.value) and "lower the learning rate" in str(stopped.value)
    client = client_for(tmp_path)
    run = only_run(client)
    assert run.info.status == "FAILED"
    # stopped at the first bad batch, not at the end of the run
    assert len(client.get_metric_history(run.info.run_id, "train/loss_g")) == 1


def test_sigterm_leaves_run_killed(tmp_path: Path):
    process = start_aigc(tmp_path, "data.download=false", "trainer.max_epochs=50", "trainer.log_every_n_steps=1")

    def logged_a_loss(client) -> bool:
        runs = all_runs(client)
        return bool(runs and client.get_metric_history(runs[0].info.run_id, "train/loss_g"))

    output = interrupt_when(process, tmp_path, logged_a_loss, signal.SIGTERM, "a logged loss")
    client = client_for(tmp_path)
    assert process.returncode != 0
    assert "Stopped by SIGTERM" in output
    assert only_run(client).info.status == "KILLED"


def test_unreachable_tracking_server_fails_before_training(tmp_path: Path):
    uri = "http://127.0.0.1:9"  # the discard port: nothing listens there
    started = time.monotonic()
    result = run_aigc(tmp_path, *FAST, f"logger.mlflow.tracking_uri={uri}", timeout=120)
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: TrackingUnreachable: MLflow tracking server {uri} is unreachable")
    assert error.count("is unreachable") == 1  # the cause, not Hydra's wrapping of it too
    assert "Epoch 0" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60


def test_tracking_uri_from_environment_is_used(tmp_path: Path, monkeypatch):
    store = tmp_path / "team" / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    with composed("train", tmp_path, *FAST, "trainer.max_epochs=1", "metrics.inception=false") as cfg:
        train(cfg)
    assert only_run(MlflowClient(f"sqlite:///{store}")).info.status == "FINISHED"
    assert not (tmp_path / "mlflow.db").exists()


def test_ctrl_c_in_the_middle_of_a_store_write_still_ends_the_run_killed(tmp_path: Path):
    # Raised inside the write's transaction, the interrupt used to leave this process holding
    # SQLite's lock: the KILLED status then failed with "database is locked", the run stayed RUNNING.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(tracking_uri=uri, experiment_name="interrupted")
    logger.check_reachable()
    logger.open_run()
    pressed = []

    def ctrl_c_during_the_first_query(conn, cursor, statement, *args):
        if statement.startswith("SELECT") and not pressed:
            pressed.append(statement)
            os.kill(os.getpid(), signal.SIGINT)

    event.listen(Engine, "after_cursor_execute", ctrl_c_during_the_first_query)
    try:
        with pytest.raises(RunInterrupted), tracked_run(logger):
            logger.log_metrics({"train/loss": 1.5}, step=0)
            logger.log_metrics({"train/loss": 1.0}, step=1)
    finally:
        event.remove(Engine, "after_cursor_execute", ctrl_c_during_the_first_query)
    assert pressed
    run = MlflowClient(uri).get_run(logger.run_id)
    assert run.info.status == "KILLED"
    assert run.data.metrics == {"train/loss": 1.5}  # the write under way when Ctrl-C came completed
