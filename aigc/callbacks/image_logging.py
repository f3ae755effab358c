"""Image grids for callbacks: a PNG under the run's folder, and the same picture sent to every
logger that has ``log_image(key, images, step)`` (ours, Lightning's WandbLogger), with its step."""

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
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


def captioned_grid(images: torch.Tensor, columns: int, captions: list[str], min_side: int = 64) -> Image.Image:
    """uint8 images (rows x columns, C, H, W), a row per caption, each row with its caption written
    under it; small images are enlarged (nearest neighbour) to ``min_side`` so the text stays legible."""
    scale = max(1, -(-min_side // images.shape[-1]))
    rows = [grid_picture(images[start : start + columns], nrow=columns) for start in range(0, len(images), columns)]
    width, height = rows[0].width * scale, rows[0].height * scale
    font = ImageFont.load_default(size=12)
    line = 16
    widest = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(caption, font=font) for caption in captions)
    picture = Image.new("RGB", (max(width, int(widest) + 8), (height + line) * len(rows)), "white")
    draw = ImageDraw.Draw(picture)
    for index, (row, caption) in enumerate(zip(rows, captions, strict=True)):
        top = index * (height + line)
        picture.paste(row.convert("RGB").resize((width, height), Image.Resampling.NEAREST), (0, top))
        draw.text((4, top + height + 1), caption, fill="black", font=font)
    return picture
