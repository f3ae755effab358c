"""Runs whose process died without a word (SIGKILL, power loss, a lost node) stay RUNNING in
MLflow; their heartbeat tag (``aigc.heartbeat``, refreshed every ``logger.mlflow.heartbeat_s``
seconds while a run trains) tells them apart.

    python -m aigc.runs reap                      # runs silent for 5 minutes -> FAILED, tag aigc.end=lost
    python -m aigc.runs reap --after 120 --tracking-uri http://127.0.0.1:5000

A reaped run can still be resumed (``resume=<run id>``): it is RUNNING again, the tag removed.
``aigc.compare`` reaps the runs it compares.
"""

import argparse
import os
import sys

from aigc.jobs.console import one_line_errors
from aigc.tracking.store.client import open_store
from aigc.tracking.store.liveness import DEFAULT_AFTER_S, reap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc.runs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reaping = commands.add_parser("reap", help="mark runs whose heartbeat stopped FAILED (tag aigc.end=lost)")
    reaping.add_argument("--after", type=float, default=DEFAULT_AFTER_S, help="seconds of silence (default 300)")
    reaping.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{os.getcwd()}/mlflow.db")
    )
    reaping.add_argument("--experiment", help="only this experiment (by name)")
    args = parser.parse_args(argv)
    with one_line_errors():
        client = open_store(args.tracking_uri)
        ids = None
        if args.experiment:
            experiment = client.get_experiment_by_name(args.experiment)
            if experiment is None:
                raise ValueError(f"no experiment named {args.experiment!r} in {args.tracking_uri}")
            ids = [experiment.experiment_id]
        reaped = reap(client, ids, args.after)
    for run in reaped:
        print(f"{run.info.run_id} ({run.info.run_name}): no heartbeat for {args.after:.0f}+ s -> FAILED, aigc.end=lost")
    print(f"Reaped {len(reaped)} runs")
    sys.exit(0)


if __name__ == "__main__":
    main()
