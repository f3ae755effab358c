"""The servers a team runs, started by the tests on loopback in a temporary folder and stopped
after them: PostgreSQL (Debian's), ``mlflow server`` (on SQLite or PostgreSQL, artifacts proxied
to a folder or to S3, with sign-in or without) and moto's S3. docs/team.md gives the same
commands for a real machine. And ``mlflow models serve``, a model's server, as ``make serve`` starts it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import user_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path, what: str, stop) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop()
                pytest.fail(f"{what} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)


def _kill_group(process: subprocess.Popen | None, signum: int = signal.SIGKILL) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signum)
        process.wait(timeout=30)


class Postgres:
    """Debian's PostgreSQL in a folder of its own, on a loopback port; run as the ``postgres``
    user when the tests run as root (initdb refuses root)."""

    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
        self.bin = found[-1].parent
        # not under pytest's tmp_path: the postgres user can't enter root's 0700 folders
        self.folder = Path(tempfile.mkdtemp(prefix="aigc-postgres-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / program), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> "Postgres":
        self._run("initdb", "-D", f"{self.folder}/data", "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=100"
        self._run("pg_ctl", "-D", f"{self.folder}/data", "-o", options, "-l", f"{self.folder}/log", "-w", "start")
        return self

    def database(self, name: str) -> str:
        """A new database, as the SQLAlchemy URI that MLflow and Optuna take."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def dump(self, name: str) -> str:
        """Everything database ``name`` holds, as SQL text."""
        return subprocess.run(
            [*self.as_user, str(self.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    def connections(self, name: str) -> int:
        """How many connections to database ``name`` are open now."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres") as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            return connection.execute(query, (name,)).fetchone()[0]

    def stop(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", f"{self.folder}/data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


class MotoS3:
    """moto's server mode: an S3 endpoint on loopback, one bucket made."""

    def __init__(self, folder: Path, bucket: str = "mlflow"):
        self.folder, self.bucket = folder, bucket
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "MotoS3":
        log = self.folder / "moto.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", self.url.rsplit(":", 1)[1]],
            stdout=open(log, "a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_until_up(f"{self.url}/moto-api/", self.process, log, "moto's S3 server", self.stop)
        import boto3

        boto3.client("s3", endpoint_url=self.url, **self._credentials()).create_bucket(Bucket=self.bucket)
        return self

    def _credentials(self) -> dict:
        return {
            "aws_access_key_id": self.env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": self.env["AWS_SECRET_ACCESS_KEY"],
            "region_name": self.env["AWS_DEFAULT_REGION"],
        }

    def objects(self) -> list[str]:
        import boto3

        listed = boto3.client("s3", endpoint_url=self.url, **self._credentials()).list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listed.get("Contents", [])]

    def stop(self) -> None:
        _kill_group(self.process)
        self.process = None


class MlflowServer:
    """``mlflow server`` on a loopback port: its store (a SQLite file in ``folder`` unless
    ``backend_uri``), artifacts proxied to ``artifacts`` (a folder in ``folder`` by default, or an
    ``s3://`` URI with ``env`` naming the endpoint), and with ``admin_password`` MLflow's sign-in
    app. It can be killed and started again on the same port and store, as a real outage would go."""

    def __init__(
        self,
        folder: Path,
        backend: Path | None = None,
        backend_uri: str | None = None,
        artifacts: str | None = None,
        admin_password: str | None = None,
        auth_database_uri: str | None = None,
        env: dict | None = None,
    ):
        self.folder = folder
        self.backend_uri = backend_uri or f"sqlite:///{backend or folder / 'server.db'}"
        self.artifacts = artifacts or str(folder / "server_artifacts")
        self.admin_password = admin_password
        self.auth_database_uri = auth_database_uri or f"sqlite:///{folder / 'basic_auth.db'}"
        self.env = env or {}
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    def _sign_in(self) -> tuple[list[str], dict]:
        if self.admin_password is None:
            return [], {}
        config = self.folder / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = EDIT\n"
            f"database_uri = {self.auth_database_uri}\nadmin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-key-of-the-test-server",
        }
        return ["--app-name", "basic-auth"], env

    def start(self) -> "MlflowServer":
        log = self.folder / "mlflow_server.log"
        app, auth_env = self._sign_in()
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri]
            + ["--artifacts-destination", self.artifacts, "--host", "127.0.0.1", "--port", port, "--workers", "1"]
            + app,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **auth_env, **self.env},
            stdout=open(log, "a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers it forks go down with it
        )
        _wait_until_up(f"{self.url}/health", self.process, log, "mlflow server", self.stop)
        return self

    def stop(self, signum: int = signal.SIGKILL) -> None:
        _kill_group(self.process, signum)
        self.process = None


def serve_model(
    uri: str, tracking_uri: str, cwd: Path, taken: set[int], env: dict | None = None, attempts: int = 3
) -> tuple[subprocess.Popen, int]:
    """`mlflow models serve` of model ``uri`` (from ``tracking_uri``, ``env`` added to a user's) on
    a port of its own, answering, and the port it listens on.

    A port probed free can be bound by another process before the server binds it, and two
    probes can return one port. The server then fails to bind while another process answers on
    that port: once another model's server, whose schema refused these requests with HTTP 400.
    So a port counts as the server's only when the server itself says it listens there; if
    it can't bind, it is started again on another port."""
    # as from an activated venv (or `make serve`): mlflow starts uvicorn from the PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = user_env({"MLFLOW_TRACKING_URI": tracking_uri, "PATH": path, **(env or {})})
    command = ["mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "--host", "127.0.0.1"]
    for _ in range(attempts):
        port = next(port for port in iter(free_port, None) if port not in taken)
        server = subprocess.Popen(
            [sys.executable, "-m", *command, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: its server workers go down with it
        )
        said = []
        for line in server.stderr:  # until uvicorn says where it listens, or the process ends
            said.append(line)
            if f"Uvicorn running on http://127.0.0.1:{port}" in line:
                threading.Thread(target=server.stderr.read, daemon=True).start()  # drain: never block the server
                taken.add(port)
                return server, port
        server.wait(timeout=30)
        if "address already in use" not in "".join(said):
            pytest.fail(f"mlflow models serve did not start: {''.join(said)[-3000:]}")
    pytest.fail(f"mlflow models serve found no free port in {attempts} attempts")


def invoke(port: int, rows: list[dict], params: dict) -> list:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"dataframe_records": rows, "params": params}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as error:  # the server's answer holds what predict raised, stack trace included
        raise AssertionError(f"{error}: {error.read().decode(errors='replace')[-4000:]}") from None
