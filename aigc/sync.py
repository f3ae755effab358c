"""Replay what a run could not write to its tracking store (it was down, the disk was full).

    python -m aigc.sync logs/train/runs/2026-11-30_09-53-54
    python -m aigc.sync <run folder> --tracking-uri http://127.0.0.1:5000

The run prints this command when it ends with writes spooled. Writes are applied in the order
the run made them, each once: running it again after a failure, or twice, adds nothing twice.
The store is the one the run used, unless ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` says otherwise.
"""

import argparse
import os
import sys
from pathlib import Path

from aigc.jobs.console import one_line_errors
from aigc.tracking.store.client import open_store, stored_run
from aigc.tracking.store.journal import SPOOL_FOLDER, Journal, replay


def sync(folder: Path, tracking_uri: str | None = None) -> int:
    """Replay the spool of the run in ``folder``; returns how many writes stay spooled."""
    spool = Journal(folder / SPOOL_FOLDER)
    if not spool.exists() or not spool.pending():
        print(f"Nothing to sync in {folder}: every write reached the store")
        return 0
    header = spool.header()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or header["tracking_uri"]
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one line now, not minutes of retries
    client = open_store(uri)
    stored_run(client, header["run_id"], f"the run of {folder}")
    applied, left = replay(client, spool)
    print(f"Synced {applied} writes into MLflow run {header['run_id']} ({uri}); {left} still spooled")
    if left:
        print(f"Error: {left} writes were not taken (is the store up?): run this again", file=sys.stderr)
    return left


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the run's output folder (it holds tracking_spool/)")
    parser.add_argument("--tracking-uri", help="the store (default: MLFLOW_TRACKING_URI, else the run's)")
    args = parser.parse_args(argv)
    with one_line_errors():
        left = sync(args.folder, args.tracking_uri)
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
