"""Copy runs made where the team's server couldn't be reached into it.

    python -m aigc.push mlflow.db to=http://mlflow.example.org:5000        # every run of a local store
    python -m aigc.push logs/train/runs/2026-12-02_10-00-00 to=<uri>        # the run of one output folder
    python -m aigc.push logs/train/multiruns/2026-12-02_10-00-00 to=<uri>   # a sweep: its parent and jobs

``to=`` defaults to ``MLFLOW_TRACKING_URI``; credentials come from the environment, as for every
command. A run folder's store is the ``mlflow.db`` of the folder the command ran in (the nearest
one above it). Pushing again adds nothing; see ``aigc.tracking.store.transfer`` for what is copied.
"""

import argparse
import os
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from aigc.common import tags
from aigc.jobs.console import one_line_errors
from aigc.tracking.store.client import open_store, sqlite_path
from aigc.tracking.store.transfer import Pushed, push


def source_runs(path: Path) -> tuple[MlflowClient, list[Run]]:
    """The store ``path`` names (a SQLite file, or a folder holding ``mlflow.db``) and all its runs;
    or, for a run's or a sweep's output folder, the runs written there (and a sweep's parent)."""
    path = path.resolve()
    if path.is_file():
        client = open_store(f"sqlite:///{path}")
        return client, _all_runs(client)
    if (path / "mlflow.db").is_file():
        return source_runs(path / "mlflow.db")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a store nor a run's folder: give mlflow.db or a logs/... folder")
    store = next((folder / "mlflow.db" for folder in path.parents if (folder / "mlflow.db").is_file()), None)
    if store is None:
        raise FileNotFoundError(f"no mlflow.db in a folder above {path}: give the store itself")
    client = open_store(f"sqlite:///{store}")
    runs = [run for run in _all_runs(client) if _written_in(run, path)]
    parents = {run.data.tags[MLFLOW_PARENT_RUN_ID] for run in runs if MLFLOW_PARENT_RUN_ID in run.data.tags}
    runs += [client.get_run(parent) for parent in parents - {run.info.run_id for run in runs}]
    if not runs:
        raise LookupError(f"no run of {client.tracking_uri} was written in {path}")
    return client, runs


def _all_runs(client: MlflowClient) -> list[Run]:
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    return list(client.search_runs(experiments, max_results=50_000)) if experiments else []


def _written_in(run: Run, folder: Path) -> bool:
    written = [run.data.tags.get(tags.CHECKPOINTS), run.data.tags.get(tags.SWEEP_DIR)]
    return any(place and Path(place).resolve().is_relative_to(folder) for place in written)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a local store (mlflow.db, or its folder), or a run's output folder")
    parser.add_argument("to", nargs="?", default=None, help="to=<tracking uri> (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with one_line_errors():
        if args.to is not None and not args.to.startswith("to="):
            raise ValueError(f"unknown argument {args.to!r}: python -m aigc.push <source> to=<tracking uri>")
        uri = args.to.removeprefix("to=") if args.to else os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ValueError("give to=<tracking uri> (or set MLFLOW_TRACKING_URI): the store to push into")
        source, runs = source_runs(args.source)
        if sqlite_path(uri) is not None and sqlite_path(uri) == sqlite_path(source.tracking_uri):
            raise ValueError(f"{uri} is the store the runs are in: push them into another")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one line now, not minutes of retries
        pushed: Pushed = push(source, runs, open_store(uri, must_exist=False))
        print(f"{len(pushed.copied)} runs pushed into {uri}; {len(pushed.already)} were there already")


if __name__ == "__main__":
    main()
