"""Callbacks that break a run on purpose, added by tests with `+callbacks.<name>._target_=failures.<Class>`."""

import os
import signal

import torch
from lightning import Callback

from aigc.trainer.internals import batches_that_stepped


class RaiseAtBatch(Callback):
    def __init__(self, batch: int = 2):
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batches_that_stepped(trainer) >= self.batch:
            raise RuntimeError("injected failure")


class PoisonWeightsAtBatch(Callback):
    """Fills every parameter with NaN, as a diverged optimizer would."""

    def __init__(self, batch: int = 2):
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batches_that_stepped(trainer) >= self.batch:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))


class KillAtBatch(Callback):
    """SIGKILL at a batch, as the OOM killer or a lost node would: no handler runs, nothing is closed."""

    def __init__(self, epoch: int, batch: int):
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class KillRankAtBatch(Callback):
    """SIGKILL one DDP process at a batch, as a lost node or the OOM killer would: its peers are left
    waiting in the next collective."""

    def __init__(self, rank: int, batch: int):
        self.rank = rank
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.rank and batches_that_stepped(trainer) >= self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class StopRankAtBatch(KillRankAtBatch):
    """SIGSTOP one DDP process at a batch: alive but silent, as a hung node or a network partition is;
    its peers wait in the next collective until its timeout."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.rank and batches_that_stepped(trainer) >= self.batch:
            os.kill(os.getpid(), signal.SIGSTOP)


class SignalAtStep(Callback):
    """Send this process the signal ``name`` before step ``step``: a cluster's preemption warning, on cue."""

    def __init__(self, step: int, name: str = "SIGUSR1"):
        self.step, self.signum = step, signal.Signals[name]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class WarnJobAtStep(Callback):
    """Rank zero asks the job's launcher (the tests' ``srun``) to send every task the signal ``name``
    before step ``step``, as SLURM's ``--signal`` does before it preempts a job."""

    def __init__(self, step: int, name: str = "SIGUSR1"):
        self.step, self.signum = step, signal.Signals[name]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 0 and trainer.global_step == self.step:
            os.kill(os.getppid(), self.signum)
