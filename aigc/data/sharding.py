"""Evaluation data split over processes so that every example is scored exactly once.

Under DDP each process must take the same number of steps, so Lightning's
``DistributedSampler`` pads the shares by repeating the first examples: 23 windows on 2
processes score 24, and a loss averaged over them counts one window twice. ``EvenShares``
pads with ``PADDING`` instead, for which ``WithBlanks`` serves a blank example that scores
nothing (text: targets all ``IGNORE_INDEX``; images: label -1). Being a
``DistributedSampler``, Lightning leaves it in place.
"""

import math

import torch
from torch.utils.data import Dataset, DistributedSampler

PADDING = -1
IGNORE_INDEX = -100  # what torch's cross_entropy ignores


def rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EvenShares(DistributedSampler):
    """Process ``r`` of ``W`` takes examples ``r, r + W, r + 2W, ...``, then ``PADDING`` up to
    ``ceil(N / W)``."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = math.ceil(len(dataset) / world_size)

    def __iter__(self):
        mine = list(range(self.rank, len(self.dataset), self.num_replicas))
        return iter(mine + [PADDING] * (self.num_samples - len(mine)))

    def __len__(self) -> int:
        return self.num_samples


class WithBlanks(Dataset):
    """``dataset``, plus ``blank`` at index ``PADDING``."""

    def __init__(self, dataset: Dataset, blank):
        self.dataset, self.blank = dataset, blank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.blank if index == PADDING else self.dataset[index]


def evaluation_data(dataset: Dataset, blank) -> tuple[Dataset, DistributedSampler | None]:
    """(dataset, sampler) for an evaluation DataLoader: in a DDP process, each example once."""
    rank, world_size = rank_and_world()
    if world_size == 1:
        return dataset, None
    padded = WithBlanks(dataset, blank)
    return padded, EvenShares(padded, rank, world_size)
