"""Image datasets that torchvision downloads: files under ``data_dir`` first, then a download.

Every file is checked against its published MD5 before it is parsed (CIFAR-10's batches are
pickles, and unpickling an unverified file can run code): a file that is there but differs is
an error naming the file and both digests, never a reason to switch to another source. When
all the files are absent, the dataset is downloaded (torchvision's code, which checks the
archives' digests) or, for a dataset that has one, an offline fallback serves and says so.
When neither serves, ``load`` raises one line naming ``paths.data_dir`` and the missing files.
Which source served ("idx"/"local": files already there, "download", a fallback) is printed
here and recorded by the run.
"""

import hashlib
import pickle
from abc import abstractmethod
from pathlib import Path

import numpy as np
import torchvision

from aigc.common.errors import joined
from aigc.data.images import ImageDataModule, ImageSplits

# MD5 of the uncompressed files as published (torchvision publishes the archives' digests and,
# for CIFAR-10, the batches'; the IDX files' are those of the originals as their sites serve them)
PUBLISHED_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    "FashionMNIST/raw/train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "FashionMNIST/raw/train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "FashionMNIST/raw/t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
} | {
    f"{torchvision.datasets.CIFAR10.base_folder}/{name}": md5
    for name, md5 in torchvision.datasets.CIFAR10.train_list + torchvision.datasets.CIFAR10.test_list
}


def idx_files(folder: str) -> tuple[str, ...]:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple(f"{folder}/{name}" for name in names)


class DataIntegrityError(RuntimeError):
    """A dataset file that is there but is not the published file."""


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
        """Read the splits from ``files`` under ``data_dir`` (verified before this is called)."""

    @abstractmethod
    def fetch(self) -> None:
        """Download ``files`` into ``data_dir`` (torchvision's own code, checksums included)."""

    def fallback(self, why: str) -> ImageSplits | None:
        """What serves when the files are absent and can't be downloaded (``why``); None: nothing."""
        return None

    def load(self) -> ImageSplits:
        root = Path(self.data_dir)
        missing = [name for name in self.files if not (root / name).is_file()]
        source = self.local_source
        if missing and len(missing) < len(self.files):
            raise RuntimeError(
                f"{self.title} is incomplete: paths.data_dir={self.data_dir} has "
                f"{', '.join(n for n in self.files if n not in missing)} but lacks {', '.join(missing)}: "
                "add the missing files, or remove the others to download them all"
            )
        if missing:
            problem = f"{self.title} not found: paths.data_dir={self.data_dir} lacks {', '.join(missing)}"
            fix = "put the files there or point paths.data_dir at a folder that has them"
            if not self.download:
                why = f"{problem}, and data.download=false"
            else:
                try:
                    self.fetch()
                    why = None
                except Exception as failed:  # urllib/HTTP/OS/checksum errors differ by platform
                    why = f"{problem}, and the download failed ({joined(failed)})"
            if why is not None:
                splits = self.fallback(why)
                if splits is None:
                    raise RuntimeError(f"{why}: {fix}")
                print(f"{self.title} source: {splits.source} ({splits.location})")
                return splits
            source = "download"
        for name in self.files:
            verify(root / name, PUBLISHED_MD5[name])
        splits = self.read(source)
        print(f"{self.title} source: {splits.source} ({splits.location})")
        return splits


class IDXImageDataModule(TorchvisionImageDataModule):
    """MNIST-like datasets: four uint8 IDX files under ``<data_dir>/<raw_folder>``; the test split validates."""

    raw_folder: str
    local_source = "idx"

    @property
    def files(self) -> tuple[str, ...]:
        return idx_files(self.raw_folder)

    def read(self, source: str) -> ImageSplits:
        return read_idx_splits(Path(self.data_dir) / self.raw_folder, source)


class FashionMNISTDataModule(IDXImageDataModule):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 train / 10,000 test grey 28x28 images."""

    name = "fashion_mnist"
    title = "Fashion-MNIST"
    raw_folder = "FashionMNIST/raw"

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
        root = Path(self.data_dir) / _CIFAR10_FOLDER
        train_images, train_labels = _read_cifar_batches(root, _CIFAR10_TRAIN_BATCHES)
        val_images, val_labels = _read_cifar_batches(root, ("test_batch",))
        return ImageSplits(train_images, train_labels, val_images, val_labels, source=source, location=str(root))

    def fetch(self) -> None:
        torchvision.datasets.CIFAR10(self.data_dir, train=True, download=True)


def verify(path: Path, expected_md5: str) -> None:
    """Raise ``DataIntegrityError`` unless the file's MD5 is the published one (before any parsing)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected_md5:
        raise DataIntegrityError(
            f"{path} is not the published file: md5 {digest.hexdigest()}, expected {expected_md5} "
            f"({path.stat().st_size:,} bytes; truncated or altered?): delete it to download it again, or replace it"
        )


def read_idx_splits(raw: Path, source: str) -> ImageSplits:
    """MNIST-like IDX files: the train split trains, the test (t10k) split validates."""
    return ImageSplits(
        train_images=read_idx(raw / "train-images-idx3-ubyte", ndim=3)[:, None],
        train_labels=read_idx(raw / "train-labels-idx1-ubyte", ndim=1).astype(np.int64),
        val_images=read_idx(raw / "t10k-images-idx3-ubyte", ndim=3)[:, None],
        val_labels=read_idx(raw / "t10k-labels-idx1-ubyte", ndim=1).astype(np.int64),
        source=source,
        location=str(raw),
    )


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A uint8 IDX file: two zero bytes, type 0x08, the number of dimensions, their big-endian
    sizes, then the data; anything else is an error naming the file."""
    data = path.read_bytes()
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes([0, 0, 0x08, ndim]):
        raise DataIntegrityError(f"{path} is not a uint8 IDX file of {ndim} dimensions (header {data[:4].hex()})")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if len(data) != header + int(np.prod(shape)):
        raise DataIntegrityError(
            f"{path} has {len(data) - header:,} bytes of data; its header {shape} says {int(np.prod(shape)):,}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()  # writable, as torch wants


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's batches are pickled dicts of lists, bytes and numpy arrays: nothing else loads."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: not an array")
        return super().find_class(module, name)


def _read_cifar_batches(root: Path, names) -> tuple[np.ndarray, np.ndarray]:
    """The python version's pickled dicts: ``data`` uint8 (N, 3072) in CHW order, ``labels`` a list."""
    images, labels = [], []
    for name in names:
        with open(root / name, "rb") as file:
            batch = _ArraysOnly(file, encoding="latin1").load()  # pickled by Python 2
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)
