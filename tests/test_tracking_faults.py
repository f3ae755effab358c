"""The store, the disk and the process fail; the run still ends honestly and loses nothing.

A tracking server killed mid-run: training goes on, writes are spooled and `aigc.sync` completes
the run with the same points an undisturbed run has. Ctrl-C in the outage acts within seconds.
An unwritable artifact store or a full disk ends the run FAILED, never RUNNING. A SIGKILLed run
is found by its stopped heartbeat (`aigc.runs reap`) and can still be resumed.
"""

import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import RunTag

from aigc import runs, sync
from aigc.common.tags import HEARTBEAT as HEARTBEAT_TAG
from aigc.jobs.training import train
from aigc.tracking.store.liveness import lost, reap
from tests.conftest import all_runs, client_for, composed, new_experiment, only_run, run_aigc, user_env
from tests.servers import MlflowServer, free_port

pytestmark = pytest.mark.slow
VAE = ("model=vae", "debug=fast", "data.download=false", "metrics.inception=false")


def start(folder: Path, *overrides: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    output = folder / "run.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "aigc.run", *overrides],
        cwd=folder,
        env=user_env(env),
        stdout=open(output, "w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, output


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"{what} never happened")
        time.sleep(0.3)


def epochs_logged(server: MlflowServer, count: int):
    def enough() -> bool:
        try:
            client = MlflowClient(server.url)
            runs = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
            return bool(runs) and len(client.get_metric_history(runs[0].info.run_id, "val/elbo")) >= count
        except Exception:
            return False

    return enough


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(point.step for point in client.get_metric_history(run_id, key))


def test_a_server_killed_mid_run_stops_nothing_and_sync_completes_the_run(tmp_path: Path, monkeypatch, capsys):
    command = (*VAE, "trainer.max_epochs=12")
    reference_folder = tmp_path / "undisturbed"
    reference_folder.mkdir()
    with composed("train", reference_folder, *command) as cfg:  # the same run undisturbed, in this process
        train(cfg)
    reference_client = client_for(reference_folder)
    reference = only_run(reference_client)
    assert HEARTBEAT_TAG in reference.data.tags  # refreshed while a run trains

    server = MlflowServer(tmp_path).start()
    try:
        process, output = start(tmp_path, *command, env={"MLFLOW_TRACKING_URI": server.url})
        wait_for(epochs_logged(server, 3), "three epochs reaching the server", process)
        server.stop()  # the server dies and stays down
        assert process.wait(timeout=300) == 0, output.read_text()[-3000:]
        printed = output.read_text()
        assert printed.count("Tracking degraded: the store") == 1
        (folder,) = [p.parent for p in tmp_path.glob("logs/**/tracking_spool")]
        assert f"python -m aigc.sync {folder}" in printed

        server.start()  # back, on the same store
        synced = subprocess.run(
            [sys.executable, "-m", "aigc.sync", str(folder)],
            env=user_env({"MLFLOW_TRACKING_URI": server.url}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert synced.returncode == 0, synced.stderr[-3000:]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        capsys.readouterr()
        with pytest.raises(SystemExit) as again:  # python -m aigc.sync <folder> again, in this process
            sync.main([str(folder)])
        assert again.value.code == 0 and "Nothing to sync" in capsys.readouterr().out

        client = MlflowClient(server.url)
        (run,) = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
        assert run.info.status == "FINISHED"
        for key in ("train/loss", "train/loss_epoch", "val/elbo", "val/fid_mnist"):
            assert steps(client, run.info.run_id, key) == steps(reference_client, reference.info.run_id, key), key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"last", "config"} <= artifacts and any(name.startswith("best") for name in artifacts)
    finally:
        server.stop()


def test_ctrl_c_during_an_outage_exits_130_within_seconds_and_sync_ends_the_run_killed(tmp_path: Path):
    server = MlflowServer(tmp_path).start()
    try:
        process, output = start(tmp_path, *VAE, "trainer.max_epochs=1000", env={"MLFLOW_TRACKING_URI": server.url})
        wait_for(epochs_logged(server, 2), "two epochs reaching the server", process)
        server.stop()
        wait_for(lambda: "Tracking degraded" in output.read_text(), "the outage noticed", process)
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, output.read_text()[-3000:]
        assert time.monotonic() - pressed < 15
        (folder,) = [p.parent for p in tmp_path.glob("logs/**/tracking_spool")]

        server.start()
        synced = subprocess.run(
            [sys.executable, "-m", "aigc.sync", str(folder)],
            env=user_env({"MLFLOW_TRACKING_URI": server.url}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert synced.returncode == 0, synced.stderr[-3000:]
        client = MlflowClient(server.url)
        (run,) = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
        assert run.info.status == "KILLED"
    finally:
        server.stop()


def test_an_unwritable_artifact_store_ends_a_failing_run_failed_not_running(tmp_path: Path, capsys):
    (tmp_path / "mlartifacts").write_text("a file where the artifact folder should be")
    fail = ("+callbacks.fail._target_=tests.helpers.failures.RaiseAtBatch", "+callbacks.fail.batch=4")
    with composed("train", tmp_path, *VAE, *fail) as cfg, pytest.raises(RuntimeError, match="injected failure"):
        train(cfg)
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FAILED"
    assert "train/loss" in run.data.metrics  # metrics went through; the artifacts wait in the spool
    assert "writes are spooled" in capsys.readouterr().err


def test_a_full_disk_ends_the_run_failed_in_one_line(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        result = run_aigc(tmp_path, *VAE, "trainer.max_epochs=4", f"hydra.run.dir={disk}/run")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert only_run(client_for(tmp_path)).info.status == "FAILED"


def test_a_sigkilled_run_is_reaped_by_its_heartbeat_and_can_still_resume(tmp_path: Path, capsys):
    command = (*VAE, "trainer.max_epochs=3", "logger.mlflow.heartbeat_s=1")
    killed = run_aigc(
        tmp_path,
        *command,
        "+callbacks.kill._target_=failures.KillAtBatch",
        "+callbacks.kill.epoch=1",
        "+callbacks.kill.batch=1",
    )
    assert killed.returncode == -9
    client = client_for(tmp_path)
    run_id = only_run(client).info.run_id
    assert only_run(client).info.status == "RUNNING"  # SIGKILL: nothing in the process could end it
    time.sleep(2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as reaped:  # python -m aigc.runs reap --after 1
        runs.main(["reap", "--after", "1", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert reaped.value.code == 0 and "Reaped 1 runs" in capsys.readouterr().out
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["aigc.end"] == "lost"

    with composed("train", tmp_path, *command, f"resume={run_id}") as cfg:
        train(cfg)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "aigc.end" not in run.data.tags


def test_reap_ends_only_running_runs_whose_heartbeat_stopped(tmp_path: Path):
    client = client_for(tmp_path)
    experiment = client.create_experiment("runs")
    now = time.time()
    beats = {"silent": now - 600, "alive": now - 5, "not_ours": None}
    ids = {}
    for name, beat in beats.items():
        run = client.create_run(experiment, run_name=name, tags={HEARTBEAT_TAG: str(beat)} if beat else {})
        ids[name] = run.info.run_id
    finished = client.create_run(experiment, run_name="finished", tags={HEARTBEAT_TAG: str(now - 600)})
    client.set_terminated(finished.info.run_id, "FINISHED")
    assert [run.info.run_name for run in reap(client, after_s=300)] == ["silent"]
    statuses = {run.info.run_name: (run.info.status, run.data.tags.get("aigc.end")) for run in all_runs(client)}
    assert statuses == {
        "silent": ("FAILED", "lost"),
        "alive": ("RUNNING", None),
        "not_ours": ("RUNNING", None),
        "finished": ("FINISHED", None),
    }
    assert not lost(client.get_run(ids["alive"]), after_s=300)
    client.log_batch(ids["alive"], tags=[RunTag(HEARTBEAT_TAG, str(now - 1000))])
    assert lost(client.get_run(ids["alive"]), after_s=300)


def test_a_spool_replays_each_write_once_with_its_files_and_names(tmp_path: Path, monkeypatch):
    """In-process: a run's writes spooled (its server is gone), then replayed twice into a store."""
    from mlflow.entities import Metric

    from aigc.tracking.store.journal import Journal, replay
    from aigc.tracking.store.writer import SpoolingClient

    client = client_for(tmp_path)
    run_id = client.create_run(new_experiment(client, "spooled", tmp_path)).info.run_id
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"weights")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spooling = SpoolingClient(MlflowClient(gone), tmp_path / "spool", gone, retries=1, probe_every_s=0.1)
    spooling.log_batch(
        run_id, metrics=[Metric("train/loss", float("nan"), 1000, 3), Metric("train/loss", 0.5, 1001, 4)]
    )
    spooling.log_artifact(run_id, str(checkpoint), "last")
    checkpoint.unlink()  # the caller's file may be gone by the time the write is sent
    spooling.set_terminated(run_id, "KILLED")
    assert spooling.flush(timeout_s=10, close=True) == 3

    spool = Journal(tmp_path / "spool")
    assert replay(client, spool) == (3, 0)
    assert replay(client, spool) == (0, 0)  # a second sync adds nothing
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    assert history[1] == (4, 0.5) and history[0][0] == 3 and history[0][1] != history[0][1]  # NaN kept
    assert [a.path for a in client.list_artifacts(run_id, "last")] == ["last/last.ckpt"]


def test_metric_writes_reach_the_store_in_few_batches_and_in_order_with_the_other_writes(tmp_path: Path):
    """A point per step would be a store transaction per step (milliseconds of the training CPU):
    points that follow one another go as one batch, and a tag or the status still comes after them."""
    from mlflow.entities import Metric

    from aigc.tracking.store.writer import SpoolingClient

    client = client_for(tmp_path)
    run_id = client.create_run(new_experiment(client, "gathered", tmp_path)).info.run_id
    batches = []

    class Counting(MlflowClient):
        def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
            batches.append((len(metrics), len(tags)))
            return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    spooling = SpoolingClient(Counting(f"sqlite:///{tmp_path}/mlflow.db"), tmp_path / "spool", "sqlite")
    for step in range(200):
        spooling.log_batch(run_id, metrics=[Metric("train/loss", 1.0 / (step + 1), 0, step)])
        if step == 100:
            spooling.log_batch(run_id, tags=[RunTag("halfway", "yes")])
    spooling.set_terminated(run_id, "FINISHED")
    assert spooling.flush(timeout_s=30, close=True) == 0
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == list(range(200))
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(batches) < 20 and sum(n for n, _ in batches) == 200
    tag_at = batches.index((0, 1))
    assert sum(n for n, _ in batches[:tag_at]) == 101  # the points before the tag went before it


def test_a_planted_spool_can_not_upload_files_from_elsewhere_or_call_other_methods(tmp_path: Path):
    import json

    from aigc.tracking.store.journal import FORMAT, Journal, replay

    client = client_for(tmp_path)
    run_id = client.create_run(new_experiment(client, "planted", tmp_path)).info.run_id
    spool = Journal(tmp_path / "spool")
    spool.folder.mkdir()
    header = {"format": FORMAT, "tracking_uri": "x", "run_id": run_id}
    planted = [
        {"id": "1", "op": "log_artifact", "args": {"run_id": run_id, "local_path": "../../../etc/passwd"}, "files": []},
        {"id": "2", "op": "delete_run", "args": {"run_id": run_id}, "files": []},
    ]
    spool.ops.write_text("\n".join(json.dumps(line) for line in [header, *planted]) + "\n")
    with pytest.raises(ValueError, match="outside the spool"):
        replay(client, spool)
    spool.ops.write_text("\n".join(json.dumps(line) for line in [header, planted[1]]) + "\n")
    with pytest.raises(ValueError, match="not a tracking write"):
        replay(client, spool)
    assert client.get_run(run_id).info.lifecycle_stage == "active"


def test_a_write_after_the_run_has_closed_still_reaches_the_store(tmp_path: Path):
    """The writer thread may be gone once the run's last flush closed it (an error's traceback,
    a rescoring's scores): a later write must not wait in a queue nobody reads."""
    from aigc.tracking.store.writer import SpoolingClient

    client = client_for(tmp_path)
    run_id = client.create_run(new_experiment(client, "closed", tmp_path)).info.run_id
    spooling = SpoolingClient(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), tmp_path / "spool", "sqlite")
    spooling.set_terminated(run_id, "FAILED")
    assert spooling.flush(timeout_s=30, close=True) == 0
    time.sleep(0.2)  # the writer thread has seen the close and ended
    spooling.log_text(run_id, "the traceback", "error.txt")
    assert [artifact.path for artifact in client.list_artifacts(run_id)] == ["error.txt"]


def test_a_write_a_flush_stopped_waiting_for_is_sent_once_and_the_run_ends(tmp_path: Path):
    """A store slower than a checkpoint's flush (5 s): the image being uploaded is spooled by the
    flush while the writer still sends it. Sent after all, it is not replayed at the run's end
    (its staged file is gone by then), and the run's last flush leaves nothing spooled."""
    import threading

    import numpy as np

    from aigc.tracking.store.journal import Journal
    from aigc.tracking.store.writer import SpoolingClient

    client = client_for(tmp_path)
    run_id = client.create_run(new_experiment(client, "slow", tmp_path)).info.run_id
    uploading, release = threading.Event(), threading.Event()

    class SlowStore(MlflowClient):
        def log_image(self, run_id, image, artifact_file=None):
            uploading.set()
            release.wait(30)
            return super().log_image(run_id, image, artifact_file=artifact_file)

    spooling = SpoolingClient(SlowStore(f"sqlite:///{tmp_path}/mlflow.db"), tmp_path / "spool", "sqlite")
    spooling.log_image(run_id, np.zeros((4, 4, 3), dtype=np.uint8), artifact_file="grid.png")
    assert uploading.wait(30)
    assert spooling.flush(timeout_s=0.1) == 1  # gave up waiting: spooled
    release.set()
    spooling.set_terminated(run_id, "FINISHED")
    assert spooling.flush(timeout_s=30, close=True) == 0
    assert Journal(tmp_path / "spool").pending() == []
    assert [a.path for a in client.list_artifacts(run_id)] == ["grid.png"]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_server_that_answered_is_probed_again_only_for_other_credentials_or_later(monkeypatch):
    """A run reaches its store four times as it starts; a server with sign-in checks the password of
    each request, so a server that answered is not asked again at once, unless the credentials changed."""
    from aigc.tracking.store import client as store

    asked = []

    class Server(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path.split("?")[0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        store.probe_server(uri)
        store.probe_server(uri)
        assert asked == ["/health", "/api/2.0/mlflow/experiments/search"]
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "bobs-password")
        store.probe_server(uri)
        assert len(asked) == 4
        monkeypatch.setattr(store, "PROBE_FRESH_S", 0.0)
        store.probe_server(uri)
        assert len(asked) == 6
    finally:
        server.shutdown()
        server.server_close()
