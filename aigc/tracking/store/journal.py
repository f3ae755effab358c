"""The spool of one run: the writes its tracking store did not take, in the order the run made
them (``Journal``), and their replay into a store, each once (``replay``, what ``aigc.sync`` runs).

The journal is JSON and copies of files (``aigc.tracking.store.codec``); replaying it calls only
the client's write methods, with files from inside the spool: a planted spool can't run code or
upload files from elsewhere.
"""

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from mlflow.exceptions import MlflowException

from aigc.common.errors import first_line
from aigc.tracking.store.codec import METADATA_WRITES, decode, discard_files, write_name

SPOOL_FOLDER = "tracking_spool"
FORMAT = "aigc-tracking-spool-1"
# MLflow's answers that no retry will change: the write is dropped with a warning, not spooled
PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST", "INVALID_STATE"}


class Journal:
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


def replay(client, spool: Journal, retries: int = 3) -> tuple[int, int]:
    """Apply the spool's pending writes in order, each once; stop at the first metadata write the
    store does not take (it is down again). Returns (applied now, still pending)."""
    applied = 0
    for record in spool.pending():
        error = apply(client, record, spool.files, retries)
        if error is not None and not permanent(error):
            if record["op"] in METADATA_WRITES:
                break
            continue  # an artifact the store still can't take: it stays spooled, the rest goes on
        if error is not None:
            print(f"Warning: the store refused a spooled write ({record['op']}): {first_line(error)}", file=sys.stderr)
        spool.mark_applied(record)
        discard_files(record, spool.files)
        applied += 1
    return applied, len(spool.pending())


def apply(client, record: dict, files: Path, retries: int) -> BaseException | None:
    write, arguments = getattr(client, write_name(record)), decode(record, files)  # a malformed record raises
    for attempt in range(retries):
        try:
            write(**arguments)
            return None
        except Exception as error:  # network, database and file system errors differ by store
            if permanent(error) or attempt == retries - 1:
                return error
            time.sleep(0.5 * 2**attempt)
    return None


def permanent(error: BaseException) -> bool:
    return isinstance(error, MlflowException) and error.error_code in PERMANENT
