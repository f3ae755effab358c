"""ReconstructionGrid: fixed validation images above their reconstructions, as a PNG and a logged image."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import Logger
from PIL import Image

from aigc.callbacks.reconstruction_grid import ReconstructionGrid
from aigc.common.capabilities import MissingCapability
from aigc.jobs.training import build_training
from aigc.metrics.images import to_uint8

CELL = 28 + 2  # MNIST side plus make_grid's padding


class RecordingLogger(Logger):
    """Records ``log_image`` calls; everything else is dropped."""

    def __init__(self):
        super().__init__()
        self.images: list[tuple[str, list, int]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        self.images.append((key, images, step))


def cell(picture: np.ndarray, row: int, column: int) -> np.ndarray:
    """One image of the grid, first channel (grey images are repeated into RGB)."""
    top, left = 2 + row * CELL, 2 + column * CELL
    return picture[top : top + 28, left : left + 28, 0]


def test_modules_without_reconstruct_are_refused_at_setup_not_skipped(tmp_path):
    # (a callback that silently did nothing hid a model whose method was named otherwise)
    trainer = SimpleNamespace(datamodule=None)
    with pytest.raises(
        MissingCapability, match="ReconstructionGrid needs a model that meets Reconstructs.*Linear does not"
    ):
        ReconstructionGrid().setup(trainer, torch.nn.Linear(1, 1), "fit")


def test_grid_is_saved_and_logged_on_the_sample_grid_steps(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "model=vae",
        "debug=fast",
        "logger=none",
        "data.download=false",
        "++callbacks.reconstruction_grid._target_=aigc.callbacks.reconstruction_grid.ReconstructionGrid",
        "++callbacks.reconstruction_grid.num_images=12",  # one and a half rows of 8
    )
    job = build_training(cfg)
    recorder = RecordingLogger()
    job.trainer.loggers = [recorder]
    job.trainer.fit(job.model, datamodule=job.datamodule)

    pngs = sorted(p.name for p in (tmp_path / "out" / "reconstructions").glob("*.png"))
    assert pngs == ["epoch_000.png", "epoch_001.png"]
    steps = {key: [step for k, _, step in recorder.images if k == key] for key in ("samples", "reconstructions")}
    assert steps["reconstructions"] == steps["samples"] == [2, 5]  # debug=fast: 3 batches an epoch

    (logged,) = [images for key, images, _ in recorder.images if key == "reconstructions"][-1]
    picture = np.asarray(Image.open(tmp_path / "out" / "reconstructions" / "epoch_001.png"))
    np.testing.assert_array_equal(np.asarray(logged), picture)
    assert picture.shape[:2] == (4 * CELL + 2, 8 * CELL + 2)  # originals, reconstructions, originals, reconstructions

    originals = next(iter(job.datamodule.val_dataloader()))[0][:12]
    expected_originals = to_uint8(originals).numpy()[:, 0]
    expected_reconstructions = to_uint8(job.model.reconstruct(originals)).numpy()[:, 0].astype(int)
    for index in range(12):
        row, column = 2 * (index // 8), index % 8
        np.testing.assert_array_equal(cell(picture, row, column), expected_originals[index])
        assert np.abs(cell(picture, row + 1, column).astype(int) - expected_reconstructions[index]).max() <= 1
    assert not cell(picture, 2, 7).any() and not cell(picture, 3, 7).any()  # the last row's unused places are blank
