"""Image datasets that torchvision downloads: files under ``data_dir`` first, then a download.

There is no offline fallback: when neither serves, ``load`` raises a RuntimeError
whose message is one line naming ``paths.data_dir`` and the files it lacks.
Which source served ("idx"/"local": files already there, "download") is printed
here and recorded by the run.
"""

import pickle
from abc import abstractmethod
from pathlib import Path

import numpy as np
import torchvision

from aigc.data.images import ImageDataModule, ImageSplits


class TorchvisionImageDataModule(ImageDataModule):
    """Subclasses name the files they read (relative to ``data_dir``), read them, and download them."""

    title: str  # for people: "Fashion-MNIST"
    files: tuple[str, ...]
    local_source: str = "local"

    def __init__(self, *args, download: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.download = download

    @abstractmethod
    def read(self, source: str) -> ImageSplits:
        """Read the splits from ``files`` under ``data_dir``."""

    @abstractmethod
    def fetch(self) -> None:
        """Download ``files`` into ``data_dir`` (torchvision's own code, checksums included)."""

    def load(self) -> ImageSplits:
        missing = [name for name in self.files if not (Path(self.data_dir) / name).is_file()]
        source = self.local_source
        if missing:
            problem = f"{self.title} not found: paths.data_dir={self.data_dir} lacks {', '.join(missing)}"
            fix = "put the files there or point paths.data_dir at a folder that has them"
            if not self.download:
                raise RuntimeError(f"{problem}, and data.download=false: {fix}")
            try:
                self.fetch()
            except Exception as failed:  # urllib/HTTP/OS/checksum errors differ by platform
                raise RuntimeError(f"{problem}, and the download failed ({_one_line(failed)}): {fix}") from None
            source = "download"
        splits = self.read(source)
        print(f"{self.title} source: {splits.source} ({splits.location})")
        return splits


class FashionMNISTDataModule(TorchvisionImageDataModule):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 train / 10,000 test grey 28x28 images; the test split validates."""

    name = "fashion_mnist"
    title = "Fashion-MNIST"
    files = tuple(
        f"FashionMNIST/raw/{name}"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
    local_source = "idx"  # the same format, and source name, as MNIST's

    def read(self, source: str) -> ImageSplits:
        return read_idx_splits(torchvision.datasets.FashionMNIST, self.data_dir, download=False, source=source)

    def fetch(self) -> None:
        torchvision.datasets.FashionMNIST(self.data_dir, train=True, download=True)


_CIFAR10_FOLDER = torchvision.datasets.CIFAR10.base_folder  # "cifar-10-batches-py"
_CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


class CIFAR10DataModule(TorchvisionImageDataModule):
    """CIFAR-10 (Krizhevsky, 2009): 50,000 train / 10,000 test colour 32x32 images; the test split validates."""

    name = "cifar10"
    title = "CIFAR-10"
    files = tuple(f"{_CIFAR10_FOLDER}/{batch}" for batch in (*_CIFAR10_TRAIN_BATCHES, "test_batch"))

    def read(self, source: str) -> ImageSplits:
        # Read here rather than with torchvision.datasets.CIFAR10, which rejects any file whose
        # MD5 differs from the official one (so a subset or a test fixture could not be used);
        # the digest the run records still says exactly which pixels were used.
        root = Path(self.data_dir) / _CIFAR10_FOLDER
        train_images, train_labels = _read_cifar_batches(root, _CIFAR10_TRAIN_BATCHES)
        val_images, val_labels = _read_cifar_batches(root, ("test_batch",))
        return ImageSplits(train_images, train_labels, val_images, val_labels, source=source, location=str(root))

    def fetch(self) -> None:
        torchvision.datasets.CIFAR10(self.data_dir, train=True, download=True)


def read_idx_splits(dataset_class, data_dir: str, download: bool, source: str) -> ImageSplits:
    """MNIST-like torchvision datasets (IDX files): train split to train, test split to validate."""
    train = dataset_class(data_dir, train=True, download=download)
    test = dataset_class(data_dir, train=False, download=download)
    return ImageSplits(
        train_images=train.data.numpy()[:, None],
        train_labels=train.targets.numpy(),
        val_images=test.data.numpy()[:, None],
        val_labels=test.targets.numpy(),
        source=source,
        location=train.raw_folder,
    )


def _read_cifar_batches(root: Path, names) -> tuple[np.ndarray, np.ndarray]:
    """The python version's pickled dicts: ``data`` uint8 (N, 3072) in CHW order, ``labels`` a list."""
    images, labels = [], []
    for name in names:
        with open(root / name, "rb") as file:
            batch = pickle.load(file, encoding="latin1")  # pickled by Python 2
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _one_line(error: BaseException) -> str:
    """torchvision's download errors span several lines; a run's error must be one."""
    return " ".join(str(error).split()) or type(error).__name__
