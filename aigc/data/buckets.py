"""Aspect-ratio buckets (``data.buckets=true``), as kohya's sd-scripts and OneTrainer make them: a
few image sizes near ``resolution`` x ``resolution``; each image goes to the bucket whose aspect
ratio is nearest its own (resized to cover it, centre-cropped to it), and each batch comes from
one bucket, so a model that takes any size (a latent diffusion UNet) sees landscapes and portraits
whole instead of their middle squares.

- ``bucket_sizes``: for every width that is a multiple of 64, the tallest height that is one too
  with width x height <= resolution**2, and the same size turned on its side (kohya's generator);
  aspect ratios from 1:2 to 2:1. At 512: 384x640, 448x576, 512x512, 576x448, 640x384.
- ``BucketedImages``: a split's images, one uint8 array per bucket (images of different sizes
  can't share one).
- ``BucketBatches``: the batches of example indices, each from one bucket. Training: each epoch
  shuffles every bucket's examples, cuts them into batches (a bucket's last batch may be short:
  a small bucket still trains), and shuffles the batches, all from ``seed`` and the epoch; under
  DDP, process r of W takes batches r, r + W, ... (the first ones again to even out the last
  round). Evaluation: buckets in order, their examples in order; under DDP each process takes
  every W-th example of each bucket, padded with blanks (label -1, ``aigc.data.sharding``) to
  the same count (a batch may then hold blanks only: models score real images only). Being a
  ``DistributedSampler``, Lightning keeps it under DDP; the epoch comes from
  ``aigc.data.shuffle.EpochLoader`` (``begin_epoch``), whose saved place resumes an epoch
  exactly: the order is a function of the seed and the epoch.
- ``BucketBatchDataset``: indexed by a whole batch (a list of indices), for a loader without
  automatic batching (``batch_size=None``) that takes its batches from ``BucketBatches``.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

# the sides of every bucket are multiples of it (SD's VAE halves a side 3 times, its UNet 3 more)
STEP = 64
# the widest and the tallest aspect ratio of a bucket
MAX_RATIO = 2.0


def bucket_sizes(resolution: int) -> list[tuple[int, int]]:
    """The buckets' (width, height), sorted: sides multiples of ``STEP``, area at most
    ``resolution**2``, aspect ratios within 1:``MAX_RATIO`` and ``MAX_RATIO``:1."""
    area = resolution * resolution
    sizes = set()
    for width in range(STEP, area // STEP + 1, STEP):
        height = area // width // STEP * STEP
        for size in ((width, height), (height, width)):
            if height and 1 / MAX_RATIO <= size[0] / size[1] <= MAX_RATIO:
                sizes.add(size)
    return sorted(sizes)


def nearest_bucket(width: int, height: int, sizes: list[tuple[int, int]]) -> int:
    """The index of the bucket whose aspect ratio is nearest ``width / height`` (on a log scale,
    so that wide and tall are alike); the first of equals."""
    ratio = math.log(width / height)
    return min(range(len(sizes)), key=lambda b: abs(math.log(sizes[b][0] / sizes[b][1]) - ratio))


def blank(bucket: int) -> int:
    """The index that stands for a blank image of ``bucket`` (DDP's evaluation padding)."""
    return -1 - bucket


@dataclass
class BucketedImages:
    """A split's images by bucket: example i is ``arrays[bucket[i]][row[i]]``; ``arrays[b]`` is
    uint8 (n_b, C, height, width) of ``sizes[b]`` (n_b may be 0)."""

    sizes: list[tuple[int, int]]
    arrays: list[np.ndarray]
    bucket: np.ndarray
    row: np.ndarray

    @classmethod
    def group(cls, images: list[np.ndarray], sizes: list[tuple[int, int]], channels: int) -> "BucketedImages":
        """``images`` (each (C, H, W), of one of the ``sizes``), in their order."""
        index = {size: b for b, size in enumerate(sizes)}
        bucket = np.array([index[(image.shape[2], image.shape[1])] for image in images], dtype=np.int64)
        row = np.zeros(len(images), dtype=np.int64)
        arrays = []
        for b, (width, height) in enumerate(sizes):
            members = np.flatnonzero(bucket == b)
            row[members] = np.arange(len(members))
            empty = np.zeros((0, channels, height, width), np.uint8)
            arrays.append(np.stack([images[i] for i in members]) if len(members) else empty)
        return cls(list(sizes), arrays, bucket, row)

    def __len__(self) -> int:
        return len(self.bucket)

    def counts(self) -> list[int]:
        """How many images each bucket has."""
        return [len(array) for array in self.arrays]

    def parts(self) -> list[np.ndarray]:
        """The arrays that make it (for a content digest)."""
        return [self.bucket, self.row, *self.arrays]


class BucketBatchDataset(Dataset):
    """``dataset[[i, j, ...]]`` is the batch of those examples, ``(images, labels)`` or ``(images,
    labels, captions)``: images as float in [-1, 1] (converted a batch at a time), and
    ``blank(b)`` a black image of bucket b labelled -1 with the empty caption."""

    def __init__(self, images: BucketedImages, labels: np.ndarray, captions: list[str] | None = None):
        if len(labels) != len(images) or (captions is not None and len(captions) != len(images)):
            raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(captions or [])} captions")
        self.images = images
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.captions = None if captions is None else list(captions)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: list[int]):
        images, labels, captions = [], [], []
        for index in indices:
            if index < 0:
                width, height = self.images.sizes[-1 - index]
                images.append(np.zeros((self.images.arrays[0].shape[1], height, width), np.uint8))
                labels.append(torch.tensor(-1))
                captions.append("")
            else:
                images.append(self.images.arrays[self.images.bucket[index]][self.images.row[index]])
                labels.append(self.labels[index])
                captions.append(None if self.captions is None else self.captions[index])
        pixels = torch.from_numpy(np.stack(images)).float().div_(127.5).sub_(1.0)
        batch = (pixels, torch.stack(labels))
        return batch if self.captions is None else (*batch, captions)


class BucketBatches(DistributedSampler):
    """This process's batches of example indices, each from one bucket (the module's docstring
    says in which order). ``buckets``: each example's bucket."""

    def __init__(
        self,
        buckets: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        processes: int = 1,
        rank: int = 0,
    ):
        super().__init__(buckets, num_replicas=processes, rank=rank, shuffle=shuffle, seed=seed)
        self.buckets = np.asarray(buckets)
        self.batch_size = batch_size
        self.members = [np.flatnonzero(self.buckets == b) for b in range(int(self.buckets.max(initial=-1)) + 1)]

    def set_epoch(self, epoch: int) -> None:
        pass  # Lightning's, called after it makes an epoch's iterator (aigc.data.shuffle.EpochShuffle)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This process's batches of the current epoch."""
        if self.shuffle:
            return self._training_batches()
        return [
            batch
            for b, members in enumerate(self.members)
            for batch in self._cut(self._evaluation_share(members.tolist(), b))
        ]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        if self.shuffle:
            every = sum(math.ceil(len(members) / self.batch_size) for members in self.members)
            return math.ceil(every / self.num_replicas)
        share = (math.ceil(len(members) / self.num_replicas) for members in self.members)
        return sum(math.ceil(count / self.batch_size) for count in share)

    def _training_batches(self) -> list[list[int]]:
        draw = np.random.default_rng([self.seed, self.epoch])
        every = [batch for members in self.members for batch in self._cut(draw.permutation(members).tolist())]
        every = [every[i] for i in draw.permutation(len(every))]
        rounds = math.ceil(len(every) / self.num_replicas)
        return [every[i % len(every)] for i in range(self.rank, rounds * self.num_replicas, self.num_replicas)]

    def _evaluation_share(self, members: list[int], bucket: int) -> list[int]:
        mine = members[self.rank :: self.num_replicas]
        return mine + [blank(bucket)] * (math.ceil(len(members) / self.num_replicas) - len(mine))

    def _cut(self, indices: list[int]) -> list[list[int]]:
        return [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]
