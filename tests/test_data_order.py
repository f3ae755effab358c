"""The training order of image data: drawn from the seed and the epoch, shared out among DDP
processes, and resumable in the middle of an epoch exactly (a preempted run's checkpoint)."""

import torch
from torch.utils.data import TensorDataset

from aigc.data.shuffle import EpochLoader, EpochShuffle

DATA = TensorDataset(torch.arange(24))


def loader(epoch: list[int], processes: int = 1, rank: int = 0, seed: int = 7) -> EpochLoader:
    """``epoch[0]``: the epoch the trainer starts next."""
    sampler = EpochShuffle(DATA, seed, processes, rank)
    return EpochLoader(DATA, batch_size=4, sampler=sampler, drop_last=True, next_epoch=lambda: epoch[0])


def batches(data: EpochLoader, count: int | None = None) -> list[list[int]]:
    taken = []
    for (batch,) in data:
        taken.append(batch.tolist())
        if len(taken) == count:
            break
    return taken


def test_each_epoch_has_its_own_order_from_the_seed_and_the_processes_share_it_out():
    epoch = [0]
    first, again = batches(loader(epoch)), batches(loader(epoch))
    epoch[0] = 1
    second = batches(loader(epoch))
    assert first == again and first != second
    assert sorted(sum(first, [])) == list(range(24)) == sorted(sum(second, []))
    epoch[0] = 0
    shares = [sum(batches(loader(epoch, processes=2, rank=rank)), []) for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(24))  # each item once, in one process
    assert batches(loader(epoch, seed=8)) != first


def test_a_loader_resumes_the_epoch_it_was_saved_in_and_starts_the_next_one_afresh():
    epoch = [2]
    whole = batches(loader(epoch))
    interrupted = loader(epoch)
    assert batches(interrupted, 2) == whole[:2]
    state = interrupted.state_dict()  # in a checkpoint written after the second step
    resumed = loader(epoch)
    resumed.load_state_dict(state)
    assert batches(resumed) == whole[2:]

    finished = loader(epoch)
    batches(finished)
    state = finished.state_dict()  # the checkpoint at the epoch's end: the next starts at its first batch
    epoch[0] = 3
    next_epoch = loader(epoch)
    next_epoch.load_state_dict(state)
    assert batches(next_epoch) == batches(loader(epoch))
