"""An in-memory image datamodule: subclasses say where the pixels come from."""

import os
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, TensorDataset

from aigc.common.constraints import NonNegativeInt, PositiveInt
from aigc.data.buckets import BucketBatchDataset, BucketBatches, BucketedImages
from aigc.data.sharding import evaluation_data, rank_and_world
from aigc.data.shuffle import EpochLoader, EpochShuffle, next_epoch
from aigc.data.source import DataSource, digest


@dataclass
class ImageSplits:
    """uint8 images (N, C, H, W) and int64 labels for the train and validation splits; captions
    (one per image) for data that has them; class names for data whose labels have names. Images
    of several sizes come by aspect-ratio bucket (``aigc.data.buckets``), and so do their batches."""

    train_images: np.ndarray | BucketedImages
    train_labels: np.ndarray
    val_images: np.ndarray | BucketedImages
    val_labels: np.ndarray
    source: str
    location: str
    train_captions: list[str] | None = None
    val_captions: list[str] | None = None
    class_names: list[str] | None = None
    # where the captions came from ("metadata.jsonl", ".txt files", "grammar"), for the model's card
    caption_source: str | None = None


class ImageDataModule(LightningDataModule):
    """Serves images as float tensors in [-1, 1] with their labels, and with their captions where
    the data has them: batches are ``(images, labels)`` or ``(images, labels, captions)``, the
    captions a list of strings (``captioned`` says which, after ``setup``).

    ``image_shape`` and ``num_classes`` (the labels are 0 .. num_classes - 1; None: data without
    classes, every label 0) are declared in the
    data config (models interpolate them) and checked here against the data actually loaded.
    """

    name: str = "images"
    # the in-package classifier that scores samples of this data offline (aigc.metrics), if any
    classifier: str | None = None

    def __init__(
        self,
        data_dir: str,
        image_shape: Sequence[int],
        num_classes: PositiveInt | None = 10,
        batch_size: PositiveInt = 128,
        num_workers: NonNegativeInt = 0,
        fid_metric: str = "val/fid",
    ):
        super().__init__()
        self.data_dir = data_dir
        # the FID generators of this data are judged by (a run's objective interpolates it):
        # val/fid_<classifier> where a classifier ships for the data, else Inception's val/fid
        self.fid_metric = fid_metric
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = num_workers
        # built right after the run's seed is set: the seed of the training order (read now, since
        # restoring a checkpoint's random state changes what torch reports)
        self.shuffle_seed = torch.initial_seed()
        self.source: DataSource | None = None
        self._splits: ImageSplits | None = None
        self._train: Dataset | None = None
        self._val: Dataset | None = None

    @abstractmethod
    def load(self) -> ImageSplits:
        """Read (or download) the dataset; raise with a one-line fix when it can't be had."""

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        splits = self.load()
        # bucketed images have their buckets' sizes (image_shape is then the size the model draws)
        bucketed = isinstance(splits.train_images, BucketedImages)
        if not bucketed and tuple(splits.train_images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"{self.name} images have shape {tuple(splits.train_images.shape[1:])}, "
                f"but the data config declares image_shape={list(self.image_shape)}"
            )
        labels = set(np.unique(np.concatenate([splits.train_labels, splits.val_labels])).tolist())
        if not labels <= set(range(self.num_classes or 1)):  # data without classes labels every image 0
            raise ValueError(
                f"{self.name} has labels {sorted(labels)}, but the data config declares num_classes={self.num_classes}"
            )
        self.source = DataSource(
            name=self.name,
            source=splits.source,
            location=splits.location,
            digest=digest(*_parts(splits.train_images), *_parts(splits.val_images)),
            num_train=len(splits.train_images),
            num_val=len(splits.val_images),
            captions=splits.caption_source,
        )
        self._splits = splits
        self._train = _to_dataset(splits.train_images, splits.train_labels, splits.train_captions)
        self._val = _to_dataset(splits.val_images, splits.val_labels, splits.val_captions)

    @property
    def captioned(self) -> bool:
        """Whether every image has a caption (batches carry them third)."""
        return self._splits is not None and self._splits.train_captions is not None

    @property
    def class_names(self) -> list[str] | None:
        return None if self._splits is None else self._splits.class_names

    @property
    def caption_source(self) -> str | None:
        return None if self._splits is None else self._splits.caption_source

    def captions(self, split: str = "val") -> list[str]:
        """The split's captions, in the order of ``real_images(split)``."""
        return list(getattr(self._splits, f"{split}_captions"))

    def real_images(self, split: str = "val") -> torch.Tensor:
        """The split's images as uint8 (N, C, H, W): the reference for image metrics."""
        return torch.from_numpy(getattr(self._splits, f"{split}_images"))

    def train_dataloader(self) -> DataLoader:
        # resumable mid-epoch, exactly (aigc.data.shuffle): each epoch's order from the run's seed and
        # the epoch; the loader's own generator for its workers' seeds (torch's global one would
        # shift the model's random numbers when a resumed run starts its loader)
        processes, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        # every process must draw the same order: unseeded ones would not, and take Lightning's seed
        seed = self.shuffle_seed if processes == 1 else int(os.environ.get("PL_GLOBAL_SEED", 0))
        if isinstance(self._train, BucketBatchDataset):  # the sampler draws whole batches, each from one bucket
            sampler = BucketBatches(self._train.images.bucket, self.batch_size, True, seed, processes, rank)
            batching = {"batch_size": None, "sampler": sampler}
        else:
            batching = {"batch_size": self.batch_size, "sampler": EpochShuffle(self._train, seed, processes, rank)}
        return EpochLoader(
            self._train,
            **batching,
            next_epoch=partial(next_epoch, self),
            generator=torch.Generator().manual_seed(seed),
            drop_last=batching["batch_size"] is not None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        if isinstance(self._val, BucketBatchDataset):  # batches from one bucket each, blanks of its size as padding
            rank, processes = rank_and_world()
            sampler = BucketBatches(self._val.images.bucket, self.batch_size, False, processes=processes, rank=rank)
            return DataLoader(
                self._val,
                batch_size=None,
                sampler=sampler,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
            )
        # a blank image labelled -1 pads the processes' shares under DDP: models score real images only
        blank = (torch.zeros(self.image_shape), torch.tensor(-1), *([""] if self.captioned else []))
        images, sampler = evaluation_data(self._val, blank)
        return self._loader(images, shuffle=False, drop_last=False, sampler=sampler)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()  # generative models are scored against the held-out split

    def _loader(self, dataset, shuffle: bool, drop_last: bool, sampler=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def _parts(images: np.ndarray | BucketedImages) -> list[np.ndarray]:
    return images.parts() if isinstance(images, BucketedImages) else [images]


def _to_dataset(images: np.ndarray | BucketedImages, labels: np.ndarray, captions: list[str] | None = None) -> Dataset:
    if isinstance(images, BucketedImages):
        return BucketBatchDataset(images, labels, captions)
    pixels = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    labelled = TensorDataset(pixels, torch.from_numpy(labels.astype(np.int64)))
    return labelled if captions is None else Captioned(labelled, captions)


class Captioned(Dataset):
    """``(image, label, caption)`` examples: a labelled dataset and a caption for each of its examples."""

    def __init__(self, labelled: TensorDataset, captions: list[str]):
        if len(captions) != len(labelled):
            raise ValueError(f"{len(captions)} captions for {len(labelled)} images")
        self.labelled, self.captions = labelled, list(captions)

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, index: int):
        return (*self.labelled[index], self.captions[index])
