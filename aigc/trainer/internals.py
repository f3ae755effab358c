"""Every use aigc makes of Lightning's private attributes, in one place, so that a Lightning
upgrade that moves one fails ``tests/test_lightning_internals.py`` loudly instead of a run
quietly. ``pyproject.toml`` pins Lightning to the range these were checked on.

- ``batches_that_stepped``: the step Lightning gives the metrics it logs (the metric step
  that sample grids and text reports line up with);
- ``writes_logs_now``: whether the loggers write at this step (``aigc.models.training_log``
  logs only then);
- ``MLFLOW_LOGGER``: what ``aigc.tracking.run.logger.MLflowLogger`` reads and sets in Lightning's
  ``MLFlowLogger`` it extends (the run, the experiment, the checkpoints it logs at the end);
- ``DDP_STRATEGY``: what ``aigc.trainer.distributed.DDPStrategy`` hooks into (the DDP wrapper's
  arguments, built in ``_setup_model``);
- ``MODEL_CHECKPOINT``: what ``aigc.callbacks.ModelCheckpoint`` calls to save the best after
  the last epoch and ``last.ckpt`` after every epoch, as Lightning saves them after every n-th;
- ``take_over_sigterm``: a SIGTERM that ``aigc.callbacks.preemption`` handles as a preemption
  warning, which Lightning would otherwise turn into ``SIGTERMException`` at the end of the step;
- ``interrupts_kept``: an interrupt that Lightning's cleanup after it hides behind an error of
  its own.
"""

from collections.abc import Iterator
from contextlib import contextmanager

MLFLOW_LOGGER = (
    "_tracking_uri",
    "_experiment_name",
    "_experiment_id",
    "_run_id",
    "_run_name",
    "_mlflow_client",
    "_initialized",
    "_checkpoint_callback",
    "_scan_and_log_checkpoints",
)
DDP_STRATEGY = ("_ddp_kwargs", "_setup_model")
MODEL_CHECKPOINT = (
    "_every_n_epochs",
    "_should_save_on_train_epoch_end",
    "_should_skip_saving_checkpoint",
    "_monitor_candidates",
    "_save_topk_checkpoint",
    "_save_last_checkpoint",
)


def batches_that_stepped(trainer) -> int:
    """Optimizer steps taken so far, as Lightning counts them for its loggers' step axis."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def writes_logs_now(trainer) -> bool:
    """Whether Lightning's loggers write what is logged at this training step (every
    ``log_every_n_steps``, and when training stops): Lightning's own test."""
    return trainer._logger_connector.should_update_logs


def take_over_sigterm(trainer) -> None:
    """Lightning notes every SIGTERM and raises at the end of the step; forget that it came."""
    trainer._signal_connector.received_sigterm = False


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """A Ctrl-C, SIGTERM or preemption stays what it was when Lightning's cleanup after it raises.

    One landing while Lightning starts an epoch's loader (``iter(combined_loader)``, which
    starts the worker processes) leaves the loader without an iterator, and Lightning's teardown
    then raises ``RuntimeError: Please call `iter(combined_loader)` first`` over it: the run
    would end FAILED and a sweep would count a failed trial and go on instead of stopping."""
    try:
        yield
    except Exception as error:
        cause = error.__context__
        while isinstance(cause, Exception | GeneratorExit):
            cause = cause.__context__
        if cause is None:  # no interrupt under it: the error is the run's own
            raise
        raise cause from None
