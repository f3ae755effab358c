"""A cluster's warning that a job is about to be stopped (SLURM: ``sbatch --signal=USR1@120``),
turned into a checkpoint and a clean stop.

The signal's handler only sets a flag: a checkpoint written inside a handler can hang (Lightning
#21406). At the end of the step every process agrees (one warned process is enough) and the
checkpoint ``preempted.ckpt`` is written beside the run's others, where Lightning's own
step checkpoints are (resumed exactly, with a resumable data loader); before the next step training
stops with
``Preempted``: ``aigc.jobs.training`` then requeues a SLURM job (``scontrol requeue``), whose next
start continues the same MLflow run from that checkpoint, and elsewhere ends the run KILLED,
naming the checkpoint that ``resume=`` continues from.
"""

import signal
from pathlib import Path

from lightning import Callback

from aigc.common.errors import Preempted
from aigc.trainer.internals import take_over_sigterm


class Preemption(Callback):
    """``signal``: the warning's name (``SIGUSR1``, what ``sbatch --signal`` sends by default here;
    ``SIGTERM`` for schedulers that only send that before SIGKILL)."""

    CHECKPOINT = "preempted.ckpt"

    def __init__(self, signal: str = "SIGUSR1"):
        self.signum = _signal_number(signal)
        self._warned = False
        self._saved: tuple[str, int] | None = None  # the checkpoint written, at which step
        self._previous = None

    @staticmethod
    def check_arguments(signal: str = "SIGUSR1", **_) -> None:
        _signal_number(signal)  # a name that is no signal is refused before anything is built

    def setup(self, trainer, pl_module, stage: str) -> None:
        # before Lightning's own SLURM handler, which saves inside the handler: it leaves ours alone
        self._previous = signal.signal(self.signum, self._warn)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def _warn(self, signum, frame) -> None:
        self._warned = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # where ModelCheckpoint(every_n_train_steps) saves: Lightning resumes exactly from here
        if self._saved is not None or not trainer.strategy.reduce_boolean_decision(self._warned, all=False):
            return
        if self.signum == signal.SIGTERM:
            take_over_sigterm(trainer)  # ours to handle: this step ends, logged, before training stops
        folder = Path(trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else trainer.default_root_dir)
        path = folder / self.CHECKPOINT
        trainer.save_checkpoint(path)  # every process takes part; rank zero writes
        self._saved = (str(path), trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # the step the checkpoint ended with is logged and counted by now: stop before the next
        if self._saved is not None:
            raise Preempted(signal.Signals(self.signum).name, *self._saved)


def _signal_number(name: str) -> int:
    try:
        return signal.Signals[name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"]
    except KeyError:
        raise ValueError(f"preemption signal {name!r}: give a signal's name, e.g. SIGUSR1 or SIGTERM") from None
