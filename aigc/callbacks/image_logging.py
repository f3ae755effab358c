"""Image grids for callbacks: a PNG under the run's folder, and the same picture sent to every
logger that has ``log_image(key, images, step)`` (ours, Lightning's WandbLogger), with its step."""

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from aigc.trainer.internals import batches_that_stepped


def grid_picture(images: torch.Tensor, nrow: int) -> Image.Image:
    """uint8 images (N, C, H, W) -> one picture, ``nrow`` images to a row."""
    grid = make_grid(images.cpu(), nrow=nrow, padding=2)
    return Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy())


def metrics_step(trainer) -> int:
    """The step Lightning gives metrics logged now, so a picture lines up with the curves.

    Lightning counts a batch only after the validation that follows it, and logs
    epoch-end training metrics one step back to match: a picture made during
    validation or at the end of a training epoch lands on the epoch's last loss point.
    """
    step = batches_that_stepped(trainer)
    return step if trainer.validating else max(step - 1, 0)


def save_and_log(trainer, key: str, picture: Image.Image) -> Path:
    """Write ``<run folder>/<key>/epoch_NNN.png`` and log the picture under ``key``; returns the PNG's path."""
    folder = Path(trainer.default_root_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch_{trainer.current_epoch:03d}.png"
    picture.save(path)
    step = metrics_step(trainer)
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[picture], step=step)
    return path
