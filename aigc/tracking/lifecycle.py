"""How a tracked run ends: FINISHED, FAILED (exception) or KILLED (signal); never left RUNNING."""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the logger holds its writes back from signals with `uninterrupted`, from here
    from aigc.tracking.logger import MLflowLogger


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so ``except Exception`` blocks let it through,
    and not a KeyboardInterrupt, which Lightning turns into ``sys.exit(1)``."""

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"received {self.signal_name}")


_received: list[str] = []  # signals this process got, for code that ends runs after the fact (atexit)
_held: list[int] = []  # signals that arrived during a store write, raised when it ends
_writes_in_progress = 0


def _raise_interrupted(signum, frame):
    _received.append(signal.Signals(signum).name)
    if _writes_in_progress:
        _held.append(signum)
        return
    raise RunInterrupted(signum)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A store write in progress finishes before ``RunInterrupted`` is raised. Raised in the
    middle of an SQLite transaction, it would leave the transaction open and this process
    holding the database's lock: every later write, the run's KILLED status included, would
    then fail with "database is locked"."""
    global _writes_in_progress
    _writes_in_progress += 1
    try:
        yield
    finally:
        _writes_in_progress -= 1
        if not _writes_in_progress and _held:
            signum = _held.pop()
            _held.clear()
            raise RunInterrupted(signum)


def raise_on_signals() -> dict:
    """SIGINT and SIGTERM raise ``RunInterrupted`` from now on; returns the handlers they had."""
    return {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def interrupted_by() -> str | None:
    """The last signal that interrupted this process, if any."""
    return _received[-1] if _received else None


@contextmanager
def tracked_run(logger: MLflowLogger | None) -> Iterator[None]:
    """Sets the run's terminal status however the block ends.

    Lightning marks the run FAILED on any exception (``finalize("failed")``);
    this sets the final word: KILLED for a signal, and FAILED with the traceback
    saved as ``error.txt``, the status first: an artifact that can't be written (a full
    disk, an unwritable folder) never leaves the run RUNNING. Everything already logged stays.
    """
    handlers = raise_on_signals()
    try:
        yield
    except RunInterrupted:
        _end(logger, "KILLED", timeout_s=5)  # a Ctrl-C acts within seconds, whatever the store does
        raise
    except BaseException as error:
        _end(logger, "FAILED")
        if logger is not None:
            text = "".join(traceback.format_exception(error))
            optional_write(lambda: logger.log_text_artifact(text, "error.txt"), "error.txt")
        raise
    else:
        _end(logger, "FINISHED")
    finally:
        restore_signals(handlers)


def optional_write(write: Callable[[], object], what: str) -> None:
    """Run a write the run can end without (an artifact); if it fails, say so in one line."""
    try:
        write()
    except Exception as error:
        print(f"Warning: {what} could not be stored in the run ({_first_line(error)})", file=sys.stderr)


def _end(logger: MLflowLogger | None, status: str, timeout_s: float = 30) -> None:
    """The terminal status, then every queued write (what the store doesn't take stays spooled)."""
    if logger is not None and logger.run_id is not None:
        logger.experiment.set_terminated(logger.run_id, status)
        logger.flush_writes(timeout_s, close=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
