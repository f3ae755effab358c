"""How a tracked run ends: FINISHED, FAILED (exception) or KILLED (signal); never left RUNNING."""

import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from aigc.tracking.logger import MLflowLogger


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so ``except Exception`` blocks let it through,
    and not a KeyboardInterrupt, which Lightning turns into ``sys.exit(1)``."""

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"received {self.signal_name}")


def _raise_interrupted(signum, frame):
    raise RunInterrupted(signum)


@contextmanager
def tracked_run(logger: MLflowLogger | None) -> Iterator[None]:
    """Sets the run's terminal status however the block ends.

    Lightning marks the run FAILED on any exception (``finalize("failed")``);
    this sets the final word: KILLED for a signal, and FAILED with the traceback
    saved as ``error.txt``. Everything already logged stays.
    """
    handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except RunInterrupted:
        _end(logger, "KILLED")
        raise
    except BaseException as error:
        if logger is not None:
            logger.log_text_artifact("".join(traceback.format_exception(error)), "error.txt")
        _end(logger, "FAILED")
        raise
    else:
        _end(logger, "FINISHED")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _end(logger: MLflowLogger | None, status: str) -> None:
    if logger is not None and logger.run_id is not None:
        logger.experiment.set_terminated(logger.run_id, status)
