"""Writes to the tracking store that never hold up training, and never get lost.

``SpoolingClient`` wraps a run's ``MlflowClient``. Reads pass straight through; writes
(metrics, params, tags, artifacts, statuses) go into a bounded queue that a background thread
sends to the store, each with a few short retries. A write the store does not take is appended
to a spool beside the run's output (``<output dir>/tracking_spool/``) instead:

- a metadata write that fails (the store is down) puts the client in degraded mode: the console
  says so once, with the spool's path; later writes go straight to the spool, and every few
  seconds the thread asks the store again; when it answers, the spool is replayed in order and
  writes go to the store again;
- an artifact write that fails (a full disk, an unwritable folder) is spooled alone: metrics and
  the run's status still reach the store.

Whatever is still spooled when the run ends is replayed by ``python -m aigc.sync <output dir>``
(``aigc.tracking.store.journal.replay``): in order, each write once, so it can be run again
after a failure. While the run is open the writer also refreshes its heartbeat
(``aigc.tracking.store.liveness``).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from aigc.common.errors import first_line
from aigc.tracking.store.codec import METADATA_WRITES, WRITES, discard_files, encode
from aigc.tracking.store.journal import FORMAT, Journal, apply, permanent, replay
from aigc.tracking.store.liveness import Heartbeat

# metric writes that follow one another within this many seconds go to the store as one batch
GATHER_S = 0.5
WRITER_THREAD = "aigc-tracking-writer"  # the thread that sends writes to the store (benchmarks time it)


class SpoolingClient:
    """An ``MlflowClient`` whose writes are queued, retried briefly and spooled when the store
    fails. While the run is open the writer thread also refreshes the run's heartbeat tag every
    ``heartbeat_s`` seconds (``aigc.runs reap`` ends runs whose heartbeat stopped)."""

    def __init__(
        self,
        client,
        spool_dir: str | Path,
        tracking_uri: str,
        heartbeat_s: float = 30.0,
        retries: int = 3,
        probe_every_s: float = 5.0,
        queue_size: int = 10_000,
    ):
        self._client = client
        self._settings = (spool_dir, tracking_uri, heartbeat_s, retries, probe_every_s, queue_size)
        self._spool = Journal(spool_dir)
        self._tracking_uri = tracking_uri
        self._heartbeat = Heartbeat(heartbeat_s)
        self._retries = retries
        self._probe_every_s = probe_every_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.RLock()  # the writes in flight
        self._replaying = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._hurry = threading.Event()  # set while someone waits for the queue (flush): no gathering
        self._degraded_since: float | None = None
        self._told = False
        self._count = 0
        self._in_flight: list[dict] = []  # taken from the queue, not yet sent
        self._abandoned: set[str] = set()  # in flight when a flush gave up waiting: spooled then
        self._run_id: str | None = None

    # --- the client's interface ------------------------------------------------------------

    def __getattr__(self, name: str):
        if name.startswith("_"):  # (while unpickling, before __init__ has run)
            raise AttributeError(name)
        attribute = getattr(self._client, name)
        if name not in WRITES:
            return attribute
        return lambda *args, **kwargs: self._enqueue(name, attribute, args, kwargs)

    def __getstate__(self):  # a spawned DDP worker gets a client of its own: its own thread and queue
        return {"client": self._client, "settings": self._settings}

    def __setstate__(self, state):
        self.__init__(state["client"], *state["settings"])

    @property
    def degraded(self) -> bool:
        return self._degraded_since is not None

    def flush(self, timeout_s: float = 30.0, close: bool = False) -> int:
        """Wait (at most ``timeout_s``) for the queued writes, then spool what is left; ``close``
        also stops the heartbeat (the run has ended). Returns how many writes stay spooled."""
        deadline = time.monotonic() + timeout_s
        self._hurry.set()
        while self._thread is not None and self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        if close:
            self._closed.set()
        else:
            self._hurry.clear()
        with self._lock:
            abandoned = list(self._in_flight)
            while True:
                try:
                    abandoned.append(self._queue.get_nowait())
                    self._queue.task_done()
                except queue.Empty:
                    break
            for record in abandoned:  # one the writer still sends is marked applied when it is sent
                self._abandoned.add(record["id"])
                self._to_spool(record)
        # mid-run (a checkpoint's flush) the writer replays the spool when the store is back:
        # training must not wait for thousands of spooled writes
        if close and self._spool.pending() and self._store_answers():
            self._replay()
        left = len(self._spool.pending())
        if left and close:
            print(
                f"\nTracking: {left} writes are spooled in {self._spool.folder}; when the store "
                f"({self._tracking_uri}) answers: python -m aigc.sync {self._spool.folder.parent}",
                file=sys.stderr,
            )
        return left

    # --- the writer ---------------------------------------------------------------------------

    def _enqueue(self, name: str, method: Callable, args: tuple, kwargs: dict) -> None:
        self._count += 1
        try:
            record = encode(name, method, args, kwargs, self._spool.files, f"{os.getpid()}-{self._count}")
        except OSError as error:  # the file to upload can't even be staged (a full disk): go on training
            print(f"Warning: a tracking write ({name}) could not be staged: {first_line(error)}", file=sys.stderr)
            return
        self._run_id = self._run_id or record["args"].get("run_id")
        if self._closed.is_set():  # the run has ended and its writer may be gone: write it now
            with self._lock:
                self._to_spool(record) if self.degraded else self._send(record)
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=WRITER_THREAD, daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(record)
        except queue.Full:  # the store is too slow to keep up: spool rather than wait
            self._to_spool(record)

    def _work(self) -> None:
        held = None  # a write taken from the queue while gathering metrics: sent next
        while not (self._closed.is_set() and self._queue.empty() and held is None):
            if held is not None:
                record, held = held, None
            else:
                try:
                    record = self._queue.get(timeout=min(self._probe_every_s, self._heartbeat.interval_s))
                except queue.Empty:
                    record = None
            if record is not None:
                taken = [record]
                with self._lock:
                    self._in_flight = [record]
                if _metrics_only(record) and not self.degraded:
                    held = self._gather_metrics(taken)
                    record = _merged(taken)
                with self._lock:
                    self._in_flight = [record] + ([held] if held is not None else [])
                try:
                    self._to_spool(record) if self.degraded else self._send(record)
                except BaseException:  # the writer dies (the spool's disk is full): a flush must not wait for `held`
                    if held is not None:
                        self._queue.task_done()
                        held = None
                    raise
                finally:
                    with self._lock:
                        self._in_flight = [held] if held is not None else []
                    for _ in taken:
                        self._queue.task_done()
            if self.degraded and time.monotonic() - self._degraded_since > self._probe_every_s:
                if self._store_answers():
                    self._replay()
            elif not self.degraded and not self._closed.is_set():
                self._beat()

    def _gather_metrics(self, taken: list[dict]) -> dict | None:
        """Add to ``taken`` the metric writes queued in the next ``GATHER_S`` seconds (one store
        transaction for many points: a SQLite write costs milliseconds of the CPU that trains);
        returns the first other write met, to be sent after them. The thread sleeps meanwhile
        rather than wake for every point; not while a flush waits, or after the run has closed."""
        if not self._closed.is_set():
            self._hurry.wait(GATHER_S)
        count = len(taken[0]["args"]["metrics"])
        while count < MAX_METRICS_PER_BATCH:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                return None
            with self._lock:
                self._in_flight.append(record)
            if not _metrics_only(record) or record["args"]["run_id"] != taken[0]["args"]["run_id"]:
                return record
            taken.append(record)
            count += len(record["args"]["metrics"])
        return None

    def _send(self, record: dict) -> None:
        error = apply(self._client, record, self._spool.files, self._retries)
        with self._lock:  # from now on a flush leaves it to this thread
            self._in_flight = [other for other in self._in_flight if other is not record]
            spooled_meanwhile = record["id"] in self._abandoned
        if spooled_meanwhile:  # a flush that stopped waiting spooled it: sent, it must not be replayed
            if error is None or permanent(error):
                with self._replaying:
                    self._spool.mark_applied(record)
                    discard_files(record, self._spool.files)
            return
        if error is None:
            discard_files(record, self._spool.files)
        elif permanent(error):
            print(f"Warning: the store refused a tracking write ({record['op']}): {first_line(error)}", file=sys.stderr)
        else:
            self._to_spool(record)
            if record["op"] in METADATA_WRITES:
                self._degrade(error)

    def _beat(self) -> None:
        if self._run_id is None:
            return
        try:
            self._heartbeat.beat(self._client, self._run_id)
        except Exception as error:
            self._degrade(error)

    def _degrade(self, error: BaseException) -> None:
        self._degraded_since = time.monotonic()
        if not self._told:
            self._told = True
            print(
                f"\nTracking degraded: the store {self._tracking_uri} does not answer ({first_line(error)}). "
                f"Training goes on; writes are spooled in {self._spool.folder} and replayed when it answers "
                f"(or: python -m aigc.sync {self._spool.folder.parent})",
                file=sys.stderr,
            )

    def _to_spool(self, record: dict) -> None:
        self._spool.append({"format": FORMAT, "tracking_uri": self._tracking_uri, "run_id": self._run_id}, record)

    def _store_answers(self) -> bool:
        try:
            self._client.get_run(self._run_id) if self._run_id else self._client.search_experiments(max_results=1)
            return True
        except Exception:
            if self.degraded:
                self._degraded_since = time.monotonic()  # the next probe in probe_every_s
            return False

    def _replay(self) -> None:
        with self._replaying:
            applied, left = replay(self._client, self._spool)
        if not left:
            was_degraded, self._degraded_since = self.degraded, None
            if was_degraded:
                print(f"Tracking: the store answers again; {applied} spooled writes replayed", file=sys.stderr)


def _metrics_only(record: dict) -> bool:
    args = record["args"]
    return record["op"] == "log_batch" and bool(args.get("metrics")) and not args.get("params") and not args.get("tags")


def _merged(records: list[dict]) -> dict:
    """One ``log_batch`` of the metrics of ``records`` (metric writes of one run, in order)."""
    if len(records) == 1:
        return records[0]
    first = records[0]
    metrics = [metric for record in records for metric in record["args"]["metrics"]]
    return {**first, "id": f"{first['id']}+{len(records) - 1}", "args": {**first["args"], "metrics": metrics}}
