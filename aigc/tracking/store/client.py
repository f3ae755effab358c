"""The MLflow store, safe to open from many processes starting at the same moment.

Measured pitfalls this module exists for (DESIGN.md):
- several processes creating the schema of a new SQLite file at once crash
  (``duplicate column name``, alembic errors);
- several processes creating the same experiment at once: the losers get an
  error, or a run filed under **Default**.
So a SQLite store and its experiments are created under an exclusive file lock beside
the SQLite file; on a server the losers of the race take the winner's experiment; and runs are
always created with an explicit experiment id. A server with sign-in is asked first whether the
environment's credentials are good (``check_signed_in``).
"""

import base64
import fcntl
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

from aigc.common import tags
from aigc.common.errors import RunNotFound, SignInRefused, first_line

# Creating a new SQLite store runs alembic migrations, which log a page of INFO lines.
logging.getLogger("alembic").setLevel(logging.WARNING)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for servers and other databases."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).expanduser().resolve()


def default_artifact_location(uri: str, experiment_name: str) -> str | None:
    """Artifacts beside a local SQLite store (MLflow's default is ./mlruns wherever a process runs)."""
    database = sqlite_path(uri)
    return None if database is None else str(database.parent / "mlartifacts" / experiment_name)


class TrackingUnreachable(RuntimeError):
    """The tracking store can't be reached or created; raised before training starts."""


PROBE_FRESH_S = 30.0
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_answered: dict[tuple, float] = {}  # (server, credentials): when it last answered a probe of this process
FIX = "start the server, or point logger.mlflow.tracking_uri (or MLFLOW_TRACKING_URI) at a reachable store"


@contextmanager
def reachable_store(uri: str, timeout_s: float = 5.0, experiment: str | None = None) -> Iterator[None]:
    """Checks that a server answers, then holds ``store_lock``; whatever fails inside becomes one
    ``TrackingUnreachable`` naming the URI and the fix, or, when the server refuses the signed-in
    user (HTTP 403) what it was doing in ``experiment``, a ``SignInRefused`` naming the permission."""
    if uri.startswith(("http://", "https://")):
        probe_server(uri, timeout_s)
    try:
        with store_lock(uri):
            yield
    except SignInRefused:
        raise
    except OSError as error:
        raise TrackingUnreachable(f"cannot create the MLflow store {uri} ({error}): {FIX}") from None
    except Exception as error:
        if forbidden(error):
            where = f"experiment '{experiment}'" if experiment else "the experiment"
            raise SignInRefused(
                f"MLflow tracking server {uri} refused user '{os.environ.get('MLFLOW_TRACKING_USERNAME')}' "
                f"(HTTP 403, permission denied): ask its admin for EDIT permission on {where}, or log into "
                "one you may edit (logger.mlflow.experiment_name)"
            ) from None
        raise TrackingUnreachable(f"MLflow tracking store {uri} failed: {first_line(error)}: {FIX}") from None


def probe_server(uri: str, timeout_s: float = 5.0) -> None:
    """``/health``, then the sign-in (``check_signed_in``); skipped when the server answered this
    process, for the same credentials, within ``PROBE_FRESH_S``: a run reaches its store four times
    as it starts, and a server with sign-in spends about 0.2 s of CPU on each signed-in request.
    A server that goes away after the probe still fails in one line (``reachable_store``)."""
    credentials = tuple(os.environ.get(name) for name in CREDENTIALS)
    if time.monotonic() - _answered.get((uri, credentials), -math.inf) < PROBE_FRESH_S:
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingUnreachable(f"MLflow tracking server {uri} is unreachable ({reason}): {FIX}") from None
    check_signed_in(uri, timeout_s)
    _answered[(uri, credentials)] = time.monotonic()


def forbidden(error: Exception) -> bool:
    """A server's HTTP 403: the user signed in, but may not do what was asked."""
    return isinstance(error, MlflowException) and (
        error.error_code == ErrorCode.Name(PERMISSION_DENIED) or "error code 403" in str(error)
    )


def check_signed_in(uri: str, timeout_s: float = 5.0) -> None:
    """A server with sign-in (``mlflow server --app-name basic-auth``) takes the credentials that
    MLflow's client reads from the environment; refuse in one line, before anything is built, when
    it does not. ``/health`` answers everyone, so ask for something that needs a sign-in."""
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    elif token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError as error:
        if error.code not in (401, 403):
            return  # not ours to judge here: the client's own call says what went wrong
        given = f"user '{username}' was refused" if username and password else "no credentials were given"
        raise SignInRefused(
            f"MLflow tracking server {uri} asks for a sign-in and {given} (HTTP {error.code}): "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it"
        ) from None
    except (urllib.error.URLError, OSError):
        return  # /health answered a moment ago; the client's own call will say what went wrong


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive across processes for a SQLite store; a server serialises its own writes."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock = open(database.with_name(database.name + ".lock"), "w")
    except OSError:  # an unusable folder: opening the store there fails with a message naming it
        lock = None
    if lock is None:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_store(tracking_uri: str, must_exist: bool = True) -> MlflowClient:
    """The one way aigc gets a client of a tracking store; a server must answer within seconds.

    ``must_exist`` (the commands that read runs: evaluate, sample, compare, sync, reap, resume):
    a SQLite file that isn't there is an error, where ``MlflowClient`` would silently create an
    empty store. Otherwise (a run, a sweep) a new SQLite store's tables are created now, under
    the store's lock, so that processes starting at the same moment don't race to create them.
    """
    database = sqlite_path(tracking_uri)
    if must_exist and database is not None and not database.exists():
        raise FileNotFoundError(
            f"no MLflow store at {database}: run where you trained, or set MLFLOW_TRACKING_URI (or tracking_uri=)"
        )
    with reachable_store(tracking_uri):
        return MlflowClient(tracking_uri)


def stored_run(client: MlflowClient, run_id: str, named_by: str, setting: str = "tracking_uri") -> Run:
    """The run ``run_id``, or one line (``RunNotFound``) saying that this store does not have it
    and which of the command's settings (``setting``) names the store."""
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
    raise RunNotFound(
        f"MLflow run {run_id} ({named_by}) is not in the store {client.tracking_uri}: point {setting}= "
        "(or MLFLOW_TRACKING_URI) at the store it was trained with"
    )


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside a SQLite store) if needed. The
    MLflow UI opens it in its model-training view (``tags.EXPERIMENT_KIND``), unless someone chose
    another view for it.

    A SQLite store is held under ``store_lock``; a server's processes (several machines at once)
    race instead, and the database's unique name decides: the losers take the winner's experiment
    (mlflow#4123 is this race in MLflow's own ``set_experiment``).
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        location = default_artifact_location(client.tracking_uri, name)
        try:
            return client.create_experiment(
                name, artifact_location=location, tags={tags.EXPERIMENT_KIND: tags.MODEL_TRAINING}
            )
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS) or experiment is not None:
                raise
        experiment = client.get_experiment_by_name(name)
    if tags.EXPERIMENT_KIND not in experiment.tags:  # made before aigc set it
        client.set_experiment_tag(experiment.experiment_id, tags.EXPERIMENT_KIND, tags.MODEL_TRAINING)
    return experiment.experiment_id
