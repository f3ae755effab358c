"""Fashion-MNIST and CIFAR-10: files in torchvision's on-disk formats are read, a missing dataset is one error line.

No test downloads anything: the download path is exercised up to the network call.
"""

import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar
import torchvision.datasets.mnist
from hydra.utils import instantiate

from tests.conftest import run_aigc

EXPECTED = {
    "fashion_mnist": ["FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte"],
    "cifar10": ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/data_batch_5", "cifar-10-batches-py/test_batch"],
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


def test_fashion_mnist_reads_idx_files(compose_cfg, tmp_path, capsys):
    arrays = fake_fashion_mnist(tmp_path / "data")
    dm = datamodule(compose_cfg, "fashion_mnist", "data.download=false")
    dm.setup("fit")
    assert dm.source.source == "idx" and (dm.source.num_train, dm.source.num_val) == (NUM_TRAIN, NUM_VAL)
    assert "Fashion-MNIST source: idx" in capsys.readouterr().out
    images, labels = next(iter(dm.val_dataloader()))
    expected = arrays["t10k-images-idx3-ubyte"][:, None] / 127.5 - 1
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_cifar10_reads_pickled_batches(compose_cfg, tmp_path, capsys):
    batches = fake_cifar10(tmp_path / "data")
    dm = datamodule(compose_cfg, "cifar10", "data.download=false")
    dm.setup("fit")
    assert dm.source.source == "local" and (dm.source.num_train, dm.source.num_val) == (NUM_TRAIN, NUM_VAL)
    assert "CIFAR-10 source: local" in capsys.readouterr().out
    images, _ = next(iter(dm.val_dataloader()))
    assert images.shape == (NUM_VAL, 3, 32, 32)
    expected = batches["test_batch"].reshape(-1, 3, 32, 32) / 127.5 - 1
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(("data", "fake"), [("fashion_mnist", fake_fashion_mnist), ("cifar10", fake_cifar10)])
def test_the_declared_image_shape_is_checked(compose_cfg, tmp_path, data, fake):
    fake(tmp_path / "data")
    dm = datamodule(compose_cfg, data, "data.download=false", "data.image_shape=[1,32,32]")
    with pytest.raises(ValueError, match=r"declares image_shape=\[1, 32, 32\]"):
        dm.setup("fit")


@pytest.mark.slow
def test_the_entry_point_prints_the_one_line(tmp_path):
    result = run_aigc(tmp_path, "data=cifar10", "data.download=false", "logger=none", timeout=180)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error: RuntimeError:")]
    assert_one_line_naming_dir_and_files(line, tmp_path / "data", "cifar10")


def test_mnist_prefers_idx_files_under_data_dir(compose_cfg, tmp_path, capsys):
    fake_fashion_mnist(tmp_path / "data", folder="MNIST")  # same IDX format, MNIST's folder
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
