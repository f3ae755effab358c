"""How a tracked run ends: FINISHED, FAILED (exception) or KILLED (signal, or a sweep's pruner);
never left RUNNING."""

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from optuna import TrialPruned

from aigc.common import tags
from aigc.common.errors import Preempted
from aigc.tracking.run.logger import MLflowLogger, optional_write
from aigc.tracking.run.signals import RunInterrupted, raise_on_signals, restore_signals


@contextmanager
def tracked_run(logger: MLflowLogger | None) -> Iterator[None]:
    """Sets the run's terminal status however the block ends.

    Lightning marks the run FAILED on any exception (``finalize("failed")``);
    this sets the final word: KILLED for a signal, a preemption or a pruned sweep trial (tagged
    ``aigc.sweep.pruned=true``), and FAILED with the traceback saved as ``error.txt``, queued
    before the status so that the run's last flush sends it: an artifact that can't be written
    (a full disk, an unwritable folder) is spooled alone and never leaves the run RUNNING.
    Everything already logged stays.
    """
    handlers = raise_on_signals()
    try:
        yield
    except RunInterrupted:
        _end(logger, "KILLED", timeout_s=5)  # a Ctrl-C acts within seconds, whatever the store does
        raise
    except Preempted:  # its checkpoint is written; the job comes back (requeued) or resume= continues it
        _end(logger, "KILLED", timeout_s=5)
        raise
    except TrialPruned:
        if logger is not None and logger.run_id is not None:
            optional_write(lambda: logger.set_tags({tags.SWEEP_PRUNED: "true"}), f"the tag {tags.SWEEP_PRUNED}")
        _end(logger, "KILLED")
        raise
    except BaseException as error:
        if logger is not None and logger.run_id is not None:
            text = "".join(traceback.format_exception(error))
            optional_write(lambda: logger.log_text_artifact(text, "error.txt"), "error.txt")
        _end(logger, "FAILED")
        raise
    else:
        _end(logger, "FINISHED")
    finally:
        restore_signals(handlers)


def _end(logger: MLflowLogger | None, status: str, timeout_s: float = 30) -> None:
    """The terminal status, then every queued write (what the store doesn't take stays spooled)."""
    if logger is not None and logger.run_id is not None:
        logger.stop_system_metrics()
        logger.experiment.set_terminated(logger.run_id, status)
        logger.flush_writes(timeout_s, close=True)
