"""A team's tracking server, as docs/team.md sets it up: ``mlflow server`` on PostgreSQL, artifacts
proxied to S3 (moto), sign-in with ``--app-name basic-auth``, credentials from the environment."""

import multiprocessing
import os
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.server import get_app_client

from tests.conftest import composed, run_aigc
from tests.servers import MlflowServer, MotoS3, Postgres, free_port, invoke, serve_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_server")]

SHORT_GAN = ("debug=fast", "trainer.max_epochs=1", "data.download=false", "metrics.inception=false")
PASSWORD = "team-pw-7f3a9c"  # grepped for in everything a run writes
# the server's connections to its database: per worker process, at most pool size + overflow
POOL = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "4", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "4"}


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    folder = tmp_path_factory.mktemp("team")
    postgres = Postgres().start()
    s3 = MotoS3(folder)
    server = None
    try:
        s3.start()
        server = MlflowServer(
            folder,
            backend_uri=postgres.database("mlflow"),
            artifacts="s3://mlflow/artifacts",
            admin_password=PASSWORD,
            auth_database_uri=postgres.database("mlflow_auth"),
            env={**s3.env, "MLFLOW_S3_ENDPOINT_URL": s3.url, **POOL},
        ).start()
        signed_in = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
        yield SimpleNamespace(url=server.url, postgres=postgres, s3=s3, server=server, env=signed_in)
    finally:
        if server is not None:
            server.stop()
        s3.stop()
        postgres.stop()


def client_of(team, monkeypatch) -> MlflowClient:
    for key, value in team.env.items():
        monkeypatch.setenv(key, value)
    return MlflowClient(team.url)


def test_a_sweep_signs_in_from_the_environment_and_every_command_works_on_its_runs(team, tmp_path: Path, monkeypatch):
    env = {"MLFLOW_TRACKING_URI": team.url, **team.env}
    result = run_aigc(tmp_path, "-m", *SHORT_GAN, "seed=1,2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_of(team, monkeypatch)
    found = client.search_runs([client.get_experiment_by_name("gan-mnist").experiment_id])
    (parent,) = [run for run in found if run.data.tags.get("aigc.sweep.role") == "parent"]
    jobs = [run for run in found if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(jobs) == 2 and {run.info.status for run in [parent, *jobs]} == {"FINISHED"}
    run = jobs[0]
    assert "train/loss_g" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: the client holds no S3 key
    assert any(run.info.run_id in key and key.endswith("config.yaml") for key in team.s3.objects())

    # the other commands, in this process, signed in the same way
    from aigc.compare import compare
    from aigc.sample import sample

    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.url)
    with composed("sample", tmp_path, f"run_id={run.info.run_id}", "num_samples=4", f"out={tmp_path}/4.png") as cfg:
        sample(cfg)
    assert (tmp_path / "4.png").stat().st_size > 0
    with composed("compare", tmp_path, f"run_id={parent.info.run_id}") as cfg:
        assert {compared.info.run_id for compared in compare(cfg).runs} == {job.info.run_id for job in jobs}
    from aigc import runs
    from aigc.evaluate import evaluate
    from aigc.serving.registry import register

    scoring = ("metrics.num_samples=200", "metrics.inception=false")  # as the run scored its samples
    with composed("evaluate", tmp_path, f"run_id={run.info.run_id}", *scoring) as cfg:
        scores = evaluate(cfg)  # its checkpoint downloaded through the server, scored into the run
    assert scores and set(scores) <= set(client.get_run(run.info.run_id).data.metrics)
    register(client, run.info.run_id, "team-gan", "champion")
    assert client.get_model_version_by_alias("team-gan", "champion").run_id == run.info.run_id
    server, port = serve_model("models:/team-gan@champion", team.url, tmp_path, set(), env=team.env)
    try:  # make serve: the model's files come through the signed-in server
        assert np.asarray(invoke(port, [{"num_samples": 2}], {"seed": 1})).shape == (2, 28, 28, 1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    with pytest.raises(SystemExit) as reaped:
        runs.main(["reap", "--tracking-uri", team.url])
    assert reaped.value.code == 0  # nothing to reap: the runs ended
    assert client.get_run(run.info.run_id).info.status == "FINISHED"

    # the password is nowhere in what the run wrote: its folder, its record, its artifacts
    leaks = subprocess.run(["grep", "-rl", PASSWORD, str(tmp_path)], capture_output=True, text=True).stdout
    assert leaks == ""
    stored = {**run.data.params, **run.data.tags}
    assert not [key for key, value in stored.items() if PASSWORD in value]
    for artifact in client.list_artifacts(run.info.run_id, "config"):
        local = client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path / "downloaded"))
        assert PASSWORD not in Path(local).read_text()
    dump = team.postgres.dump("mlflow")
    assert run.info.run_id in dump and PASSWORD not in dump


def test_no_or_a_wrong_password_is_one_line_naming_what_to_set(team, tmp_path: Path):
    result = run_aigc(tmp_path, "debug=fast", "data.download=false", env={"MLFLOW_TRACKING_URI": team.url})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: MLflow tracking server {team.url} asks for a sign-in and no credentials were given (HTTP 401): "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it"
    )
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("checkpoints/*"))

    from aigc.common.errors import SignInRefused
    from aigc.tracking.store.client import open_store

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", "wrong"
    try:
        with pytest.raises(SignInRefused, match="user 'admin' was refused"):
            open_store(team.url)
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]


def test_a_member_the_server_refuses_an_experiment_is_told_which_permission_to_ask_for(team, monkeypatch):
    from aigc.common.errors import SignInRefused
    from aigc.tracking.run.logger import MLflowLogger

    admin = client_of(team, monkeypatch)
    guarded = admin.create_experiment("guarded")
    accounts = get_app_client("basic-auth", tracking_uri=team.url)
    accounts.create_user("bob", "bobs-password-42")
    accounts.grant_user_permission("bob", "experiment", guarded, "DENY")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "bobs-password-42")
    with pytest.raises(SignInRefused) as refused:  # signed in, but not allowed there: HTTP 403, not 401
        MLflowLogger(team.url, "guarded", pyfunc=False).check_reachable()
    assert str(refused.value) == (
        f"MLflow tracking server {team.url} refused user 'bob' (HTTP 403, permission denied): ask its admin for "
        "EDIT permission on experiment 'guarded', or log into one you may edit (logger.mlflow.experiment_name)"
    )


def test_sync_replays_a_spool_into_the_signed_in_server(team, tmp_path: Path, monkeypatch, capsys):
    """A run whose writes were spooled while the server was out of reach, synced signed in."""
    from mlflow.entities import Metric

    from aigc import sync
    from aigc.tracking.store.journal import SPOOL_FOLDER
    from aigc.tracking.store.writer import SpoolingClient

    client = client_of(team, monkeypatch)
    run_id = client.create_run(client.create_experiment("spooled")).info.run_id
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    gone = f"http://127.0.0.1:{free_port()}"  # the server as the run saw it: out of reach
    spooling = SpoolingClient(MlflowClient(gone), tmp_path / SPOOL_FOLDER, gone, retries=1, probe_every_s=0.1)
    spooling.log_batch(run_id, metrics=[Metric("train/loss", 1.0 / step, 1000 + step, step) for step in (1, 2)])
    spooling.set_terminated(run_id, "FINISHED")
    assert spooling.flush(timeout_s=10, close=True) == 2

    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(SystemExit) as refused:
        sync.main([str(tmp_path), "--tracking-uri", team.url])
    assert refused.value.code == 1 and "asks for a sign-in and no credentials were given" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    with pytest.raises(SystemExit) as synced:
        sync.main([str(tmp_path), "--tracking-uri", team.url])
    assert synced.value.code == 0
    assert [(p.step, p.value) for p in client.get_metric_history(run_id, "train/loss")] == [(1, 1.0), (2, 0.5)]
    assert client.get_run(run_id).info.status == "FINISHED"


def _first_runs(stores: list[str], experiment: str, env: dict, start, points: int, spool: str) -> None:
    """What ``aigc.run`` does with its store, from the moment it connects, in each store in turn,
    started at once with the other processes: one new run, ``points`` metric points through the
    writer, FINISHED."""
    os.environ.update(env)
    from aigc.tracking.run.lifecycle import tracked_run
    from aigc.tracking.run.logger import MLflowLogger

    for number, uri in enumerate(stores):
        logger = MLflowLogger(uri, experiment, spool_dir=f"{spool}/{number}", pyfunc=False)
        start.wait(timeout=60)
        logger.check_reachable()
        logger.open_run()
        with tracked_run(logger):
            for step in range(points):
                logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)


def test_four_processes_start_a_new_experiment_at_once_into_one_experiment_losing_no_point(
    team, tmp_path: Path, monkeypatch
):
    stores = {"server": team.url, "sqlite": f"sqlite:///{tmp_path}/mlflow.db"}
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    workers = [
        context.Process(
            target=_first_runs, args=(list(stores.values()), "raced", team.env, start, 300, str(tmp_path / f"spool{i}"))
        )
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    for store, uri in stores.items():
        client = client_of(team, monkeypatch) if store == "server" else MlflowClient(uri)
        assert client.search_runs(["0"]) == [], store  # none of them lost the race into Default
        runs = client.search_runs([client.get_experiment_by_name("raced").experiment_id])
        assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}, store
        for run in runs:
            steps = [point.step for point in client.get_metric_history(run.info.run_id, "train/loss")]
            assert steps == list(range(300)), store
    # runs talk HTTP; only the server holds database connections, and its pool bounds them
    pool = int(POOL["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) + int(POOL["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"])
    assert 0 < team.postgres.connections("mlflow") <= pool


def test_a_run_made_offline_is_pushed_into_the_server_with_its_model(team, tmp_path: Path, monkeypatch, capsys):
    from aigc import push
    from aigc.jobs.training import train

    with composed("train", tmp_path, *SHORT_GAN) as cfg:
        train(cfg)  # into ./mlflow.db: the laptop on the train
    local = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (offline,) = local.search_runs([local.get_experiment_by_name("gan-mnist").experiment_id])
    server = client_of(team, monkeypatch)
    push.main([str(tmp_path / "mlflow.db"), f"to={team.url}"])
    push.main([str(tmp_path / "mlflow.db"), f"to={team.url}"])  # twice: the second adds nothing
    said = capsys.readouterr().out
    assert f"1 runs pushed into {team.url}; 0 were there already" in said
    assert f"0 runs pushed into {team.url}; 1 were there already" in said
    (copy,) = server.search_runs(
        [server.get_experiment_by_name("gan-mnist").experiment_id],
        filter_string=f"tags.`aigc.pushed_from` = '{offline.info.run_id}'",
    )
    points = [(p.step, p.timestamp, p.value) for p in server.get_metric_history(copy.info.run_id, "train/loss_g")]
    assert points == [
        (p.step, p.timestamp, p.value) for p in local.get_metric_history(offline.info.run_id, "train/loss_g")
    ]
    mlflow.set_tracking_uri(team.url)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{copy.info.run_id}/model")  # its files through the server, from S3
    finally:
        mlflow.set_tracking_uri(None)
    assert model.metadata.run_id == copy.info.run_id
