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
(``replay``): in order, each write once (applied writes are recorded beside the spool), so it
can be run again after a failure. The spool is JSON and copies of files; replaying it calls only
the write methods below, with files from inside the spool: a planted spool can't run code or
upload files from elsewhere.
"""

from __future__ import annotations

import base64
import fcntl
import inspect
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos import service_pb2

from aigc import tags

SPOOL_FOLDER = "tracking_spool"
FORMAT = "aigc-tracking-spool-1"
ARTIFACT_WRITES = {"log_text", "log_dict", "log_image", "log_artifact", "log_artifacts"}
METADATA_WRITES = {
    "log_batch",
    "log_metric",
    "log_param",
    "set_tag",
    "delete_tag",
    "log_inputs",
    "set_terminated",
    "update_run",
}
WRITES = ARTIFACT_WRITES | METADATA_WRITES
# the MLflow entities writes carry, and their protobuf messages (data only) for the spool
ENTITIES = {cls.__name__: (cls, getattr(service_pb2, cls.__name__)) for cls in (Metric, Param, RunTag, DatasetInput)}
# MLflow's answers that no retry will change: the write is dropped with a warning, not spooled
PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST", "INVALID_STATE"}
# metric writes that follow one another within this many seconds go to the store as one batch
GATHER_S = 0.5
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch
WRITER_THREAD = "aigc-tracking-writer"  # the thread that sends writes to the store (benchmarks time it)


class Spool:
    """The files of one run's spool: ``ops.jsonl`` (a header, then one write per line),
    ``applied.txt`` (the numbers of the writes the store has taken) and ``files/``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.ops = self.folder / "ops.jsonl"
        self.applied_file = self.folder / "applied.txt"
        self.files = self.folder / "files"

    def exists(self) -> bool:
        return self.ops.is_file()

    def header(self) -> dict:
        with open(self.ops) as file:
            header = json.loads(file.readline())
        if header.get("format") != FORMAT:
            raise ValueError(f"{self.ops} is not an aigc tracking spool")
        return header

    def append(self, header: dict, record: dict) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        with open(self.ops, "a") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # a spawned DDP worker and its parent may both spool
            if file.tell() == 0:
                file.write(json.dumps(header) + "\n")
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def pending(self) -> list[dict]:
        if not self.exists():
            return []
        applied = set(self.applied_file.read_text().split()) if self.applied_file.is_file() else set()
        with open(self.ops) as file:
            lines = [line for line in file.read().splitlines()[1:] if line.strip()]
        records = []
        for number, line in enumerate(lines, start=2):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number - 1 < len(lines):
                    raise ValueError(
                        f"{self.ops}, line {number}, is not a spooled write: the spool is damaged"
                    ) from None
                print(
                    f"Warning: the last line of {self.ops} was cut short (a crash or a full disk): skipped",
                    file=sys.stderr,
                )
        return [record for record in records if record["id"] not in applied]

    def mark_applied(self, record: dict) -> None:
        with open(self.applied_file, "a") as file:
            file.write(record["id"] + "\n")
            file.flush()
            os.fsync(file.fileno())


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
        self._spool = Spool(spool_dir)
        self._tracking_uri = tracking_uri
        self._heartbeat_s = heartbeat_s
        self._retries = retries
        self._probe_every_s = probe_every_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # the write in flight
        self._replaying = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._hurry = threading.Event()  # set while someone waits for the queue (flush): no gathering
        self._degraded_since: float | None = None
        self._told = False
        self._count = 0
        self._in_flight: list[dict] = []  # taken from the queue, not yet sent
        self._run_id: str | None = None
        self._next_heartbeat = 0.0

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
            for record in abandoned:  # (one still in flight, if sent after all, is idempotent)
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
            print(f"Warning: a tracking write ({name}) could not be staged: {_first_line(error)}", file=sys.stderr)
            return
        self._run_id = self._run_id or record["args"].get("run_id")
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
                    record = self._queue.get(timeout=min(self._probe_every_s, self._heartbeat_s))
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
                self._heartbeat()

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
        error = _apply_with_retries(self._client, record, self._spool.files, self._retries)
        if error is None:
            discard_files(record, self._spool.files)
        elif _permanent(error):
            print(
                f"Warning: the store refused a tracking write ({record['op']}): {_first_line(error)}", file=sys.stderr
            )
        else:
            self._to_spool(record)
            if record["op"] in METADATA_WRITES:
                self._degrade(error)

    def _heartbeat(self) -> None:
        now = time.time()
        if self._run_id is None or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self._heartbeat_s
        try:
            self._client.set_tag(self._run_id, tags.HEARTBEAT, str(int(now)))
        except Exception as error:
            self._degrade(error)

    def _degrade(self, error: BaseException) -> None:
        self._degraded_since = time.monotonic()
        if not self._told:
            self._told = True
            print(
                f"\nTracking degraded: the store {self._tracking_uri} does not answer ({_first_line(error)}). "
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


def replay(client, spool: Spool, retries: int = 3) -> tuple[int, int]:
    """Apply the spool's pending writes in order, each once; stop at the first metadata write the
    store does not take (it is down again). Returns (applied now, still pending)."""
    applied = 0
    for record in spool.pending():
        error = _apply_with_retries(client, record, spool.files, retries)
        if error is not None and not _permanent(error):
            if record["op"] in METADATA_WRITES:
                break
            continue  # an artifact the store still can't take: it stays spooled, the rest goes on
        if error is not None:
            print(f"Warning: the store refused a spooled write ({record['op']}): {_first_line(error)}", file=sys.stderr)
        spool.mark_applied(record)
        discard_files(record, spool.files)
        applied += 1
    return applied, len(spool.pending())


def _apply_with_retries(client, record: dict, files: Path, retries: int) -> BaseException | None:
    write, arguments = getattr(client, _write_name(record)), decode(record, files)  # a malformed record raises
    for attempt in range(retries):
        try:
            write(**arguments)
            return None
        except Exception as error:  # network, database and file system errors differ by store
            if _permanent(error) or attempt == retries - 1:
                return error
            time.sleep(0.5 * 2**attempt)
    return None


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


def _write_name(record: dict) -> str:
    if record.get("op") not in WRITES:
        raise ValueError(f"not a tracking write: {record.get('op')!r}")
    return record["op"]


def _permanent(error: BaseException) -> bool:
    return isinstance(error, MlflowException) and error.error_code in PERMANENT


# --- encoding: JSON and staged files only -------------------------------------------------


def encode(name: str, method: Callable, args: tuple, kwargs: dict, files: Path, record_id: str) -> dict:
    """A write as JSON, with the files it uploads copied into ``files`` now (a caller's temporary
    folder is gone by the time the write is sent); times filled in now, not at replay."""
    bound = inspect.signature(method).bind(*args, **kwargs).arguments
    bound.pop("synchronous", None)
    if name == "set_terminated" and bound.get("end_time") is None:
        bound["end_time"] = int(time.time() * 1000)
    if name == "log_image" and bound.get("key") is not None and bound.get("timestamp") is None:
        bound["timestamp"] = int(time.time() * 1000)
    staged = files / record_id  # the file keeps its name: the artifact is named after it
    for key in ("local_path", "local_dir"):
        if key in bound:
            source = Path(bound[key])
            staged.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, staged / source.name)
            bound[key] = f"{record_id}/{source.name}"
    if name == "log_image":
        staged.mkdir(parents=True, exist_ok=True)
        np.save(staged / "image.npy", np.asarray(bound["image"]), allow_pickle=False)
        bound["image"] = f"{record_id}/image.npy"
    return {"id": record_id, "op": name, "args": _to_json(bound), "files": [record_id] if staged.exists() else []}


def decode(record: dict, files: Path) -> dict:
    args = _from_json(record["args"])
    for key in ("local_path", "local_dir"):
        if key in args:
            args[key] = str(_inside(files, args[key]))
    if record["op"] == "log_image":
        args["image"] = np.load(_inside(files, args["image"]), allow_pickle=False)
    return args


def discard_files(record: dict, files: Path) -> None:
    for name in record.get("files", []):
        path = _inside(files, name)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _inside(files: Path, name: str) -> Path:
    path = (files / name).resolve()
    if not path.is_relative_to(files.resolve()) or path == files.resolve():
        raise ValueError(f"a spooled write names a file outside the spool: {name!r}")
    return path


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple(cls for cls, _ in ENTITIES.values())):
        proto = value.to_proto().SerializeToString()
        return {"__entity__": type(value).__name__, "proto": base64.b64encode(proto).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return _to_json(value.item())
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__entity__" in value:
            cls, message = ENTITIES[value["__entity__"]]  # a KeyError for anything else
            proto = message()
            proto.ParseFromString(base64.b64decode(value["proto"]))
            return cls.from_proto(proto)
        if "__float__" in value:
            return float(value["__float__"])  # "nan", "inf", "-inf"
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
