"""What a command shows: the libraries' noise dropped by named filters, their real warnings and
errors kept, and ``-v`` keeping everything. (A whole run's console: tests/test_run_tracking.py.)"""

import logging
import sys
import warnings

import pytest

from aigc.jobs import console


@pytest.fixture
def quiet(monkeypatch):
    """quiet_libraries(), undone after the test (it changes this process's loggers and warning filters)."""
    loggers = {name: logging.getLogger(name) for name, *_ in console.DROPPED_LINES} | {
        name: logging.getLogger(name) for name in [*console.QUIET_LOGGERS, "lightning"]
    }
    saved = {name: (logger.filters[:], logger.level, logger.propagate) for name, logger in loggers.items()}
    with warnings.catch_warnings():
        console.quiet_libraries()
        yield
    for name, (filters, level, propagate) in saved.items():
        loggers[name].filters[:] = filters
        loggers[name].setLevel(level)
        loggers[name].propagate = propagate


def passes(logger: str, message: str) -> bool:
    """Whether ``logger``'s own filters let an INFO line through."""
    record = logging.getLogger(logger).makeRecord(logger, logging.INFO, __file__, 1, message, (), None)
    return bool(logging.getLogger(logger).filter(record))


def test_the_named_noise_is_dropped_and_what_matters_is_kept(quiet):
    rank_zero = "lightning.pytorch.utilities.rank_zero"
    assert not passes(rank_zero, "💡 Tip: For seamless cloud logging, try installing [litlogger](https://...)")
    assert not passes(rank_zero, "GPU available: False, used: False")
    assert not passes(rank_zero, "TPU available: False, using: 0 TPU cores")
    assert passes(rank_zero, "GPU available: True (cuda), used: True")  # a GPU is news
    assert not passes(rank_zero, "Using bfloat16 Automatic Mixed Precision (AMP)")  # aigc.run prints why
    assert passes(rank_zero, "`Trainer.fit` stopped: `max_epochs=2` reached.")
    monitor = logging.getLogger("mlflow.system_metrics.system_metrics_monitor")
    assert not monitor.isEnabledFor(logging.INFO) and monitor.isEnabledFor(logging.WARNING)
    assert logging.getLogger("lightning").propagate is False  # Lightning's handler prints it, Hydra's doesn't again
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn(
            "Precision bf16-mixed is not supported by the model summary.  Estimated ...", UserWarning, stacklevel=1
        )
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_v_keeps_every_line_and_never_reaches_hydra(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["aigc.run", "-v", "model=vae"])
    monkeypatch.setattr(console, "quiet_libraries", lambda: pytest.fail("-v must keep the libraries' lines"))
    seen = []
    console.entry_point(lambda: seen.append(list(sys.argv)))
    assert seen == [["aigc.run", "model=vae"]]
