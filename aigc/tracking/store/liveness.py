"""Is a RUNNING run still alive? A run's process refreshes its heartbeat tag while it trains
(``Heartbeat``, beaten by the run's writer thread: ``aigc.tracking.store.writer``); a process
that died without a word (SIGKILL, power loss, a lost node) leaves its run RUNNING with a
heartbeat that stopped. ``reap`` ends such runs FAILED, tagged ``aigc.end=lost``; ``resume=``
of a reaped run takes it up again (and removes the tag)."""

import time

from mlflow import MlflowClient
from mlflow.entities import Run

from aigc.common import tags

DEFAULT_AFTER_S = 300


class Heartbeat:
    """A run's tag ``aigc.heartbeat``: the time of its last beat, at most every ``interval_s`` seconds."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._next = 0.0

    def beat(self, client: MlflowClient, run_id: str) -> None:
        """Set the tag to now if a beat is due (what the store raises, it raises)."""
        now = time.time()
        if now < self._next:
            return
        self._next = now + self.interval_s
        client.set_tag(run_id, tags.HEARTBEAT, str(int(now)))


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
