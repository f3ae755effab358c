"""The training order of a dataset, resumable in the middle of an epoch (a preempted run's
checkpoint) and at its end, exactly.

Each epoch's order is torch's ``DistributedSampler``'s: a permutation drawn from ``seed + epoch``,
each process taking its share (one process takes it all). Being one, it is also the sampler
Lightning keeps under DDP instead of wrapping it. The epoch is asked of the trainer when the
epoch's iterator is made (Lightning makes the first one before it calls ``set_epoch``, and on a
restart that is the epoch the checkpoint says comes next). ``EpochLoader`` (torchdata's
``StatefulDataLoader``) keeps how far an epoch got in the checkpoint and skips that much when the
same epoch resumes; a checkpoint from an epoch's end starts the next one at its first batch (an
epoch can end before its data does: ``trainer.limit_train_batches``). Text windows
(``aigc.data.text``) are an iterable dataset that the loader tells the epoch.

Measured (2026-12-03): torchdata's own RandomSampler resumes the interrupted epoch exactly but
shuffles the next one differently; torch's draws its seed from the global generator, shifting the
model's random numbers in a resumed run; and ``trainer.current_epoch`` still names the finished
epoch when Lightning makes a restarted run's first iterator.
"""

from collections.abc import Callable

from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader


def next_epoch(datamodule) -> int:
    """The epoch the datamodule's trainer starts next (on a restart: the one after the
    checkpoint's); 0 without a trainer."""
    trainer = datamodule.trainer
    return trainer.fit_loop.epoch_progress.current.processed if trainer else 0


class EpochShuffle(DistributedSampler):
    """The epoch is told by the loader (``EpochLoader``) when it makes the epoch's iterator."""

    def __init__(self, dataset: Dataset, seed: int, processes: int, rank: int):
        super().__init__(dataset, num_replicas=processes, rank=rank, shuffle=True, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        pass  # Lightning's, called after it makes an epoch's iterator (on a restart, with the last epoch)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class EpochLoader(StatefulDataLoader):
    """A ``StatefulDataLoader`` whose saved place is used only to resume the epoch it was saved in.
    ``next_epoch``: the epoch the next iterator belongs to, asked when it is made; the sampler and
    the dataset, where they have ``begin_epoch``, are told it then (before worker processes copy
    the dataset)."""

    _resumes_epoch: int | None = None  # the epoch of a loaded state, until the next iterator is made

    def __init__(self, *args, next_epoch: Callable[[], int], **kwargs):
        super().__init__(*args, **kwargs)
        self.next_epoch = next_epoch
        self.epoch: int | None = None  # the epoch of the iterator made last

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self._resumes_epoch = state.pop("epoch", None)
        super().load_state_dict(state)

    def __iter__(self):
        self.epoch = self.next_epoch()
        if self._resumes_epoch not in (None, self.epoch):
            self.next_iter_state = None  # torchdata's: where the next iterator starts
        self._resumes_epoch = None
        for told in (self.sampler, self.dataset):
            if callable(begin_epoch := getattr(told, "begin_epoch", None)):
                begin_epoch(self.epoch)
        return super().__iter__()
