"""The training order of a map-style dataset, resumable mid-epoch.

Each epoch's order is a permutation drawn from ``seed + epoch`` (Lightning tells the sampler its
epoch through ``set_epoch``, as it tells DDP's), so a resumed run that starts an epoch over, or
picks one up in the middle (``StatefulDataLoader`` skips the samples it already gave), draws the
same order as a run that never stopped, in that epoch and every later one. Measured: torchdata's
own RandomSampler resumes the interrupted epoch exactly but shuffles the next one differently;
torch's draws its seed from the global generator, shifting the model's random numbers too.
"""

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size
