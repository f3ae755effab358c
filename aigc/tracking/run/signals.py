"""Ctrl-C and SIGTERM during a run: raised as ``RunInterrupted`` in the main thread, but never in
the middle of a write to the store (``uninterrupted``)."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager


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
