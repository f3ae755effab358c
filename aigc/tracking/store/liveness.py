"""Is a RUNNING run still alive? A run's process refreshes its heartbeat tag while it trains
(``SpoolingClient``); a process that died without a word (SIGKILL, power loss, a lost node)
leaves its run RUNNING with a heartbeat that stopped. ``reap`` ends such runs FAILED, tagged
``aigc.end=lost``; ``resume=`` of a reaped run takes it up again (and removes the tag)."""

import time

from mlflow import MlflowClient
from mlflow.entities import Run

from aigc import tags

DEFAULT_AFTER_S = 300


def lost(run: Run, after_s: float, now: float | None = None) -> bool:
    """RUNNING, with a heartbeat older than ``after_s`` (runs without one are not aigc's to judge)."""
    beat = run.data.tags.get(tags.HEARTBEAT)
    return run.info.status == "RUNNING" and beat is not None and (now or time.time()) - float(beat) > after_s


def reap(client: MlflowClient, experiment_ids: list[str] | None = None, after_s: float = DEFAULT_AFTER_S) -> list[Run]:
    """Mark every lost run FAILED (ended at its last heartbeat) with tag ``aigc.end=lost``."""
    ids = experiment_ids or [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=50000)
    reaped = [run for run in running if lost(run, after_s)]
    for run in reaped:
        client.set_tag(run.info.run_id, tags.END, "lost")
        client.set_terminated(run.info.run_id, "FAILED", end_time=int(float(run.data.tags[tags.HEARTBEAT]) * 1000))
    return reaped
