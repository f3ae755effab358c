"""A grid of images from fixed seeds after every N-th epoch's validation, saved as PNG and logged with its step."""

import math

import torch

from aigc.callbacks.image_logging import grid_picture, save_and_log
from aigc.callbacks.schedule import due
from aigc.common.capabilities import Contract, GeneratesImages
from aigc.common.constraints import PositiveInt
from aigc.metrics.images import to_uint8


class SampleGrid(Contract):
    """Needs a model that generates images (``aigc.common.capabilities.GeneratesImages``).

    A class-conditional model (``num_classes``) draws one row per label, ``num_samples //
    num_classes`` images each. The grid's step is that of the epoch's last loss point, so it
    lines up with the loss curves. It is drawn at the end of validation, from the weights that
    validation scores (with ``callbacks=[default,ema]``: the average). Loggers that have ``log_image(key,
    images, step)`` (ours, Lightning's WandbLogger) receive the grid; the PNG is
    also written under the run's output directory.
    """

    needs_model = (GeneratesImages,)

    def __init__(
        self, num_samples: PositiveInt = 64, seed: int = 0, every_n_epochs: PositiveInt = 1, key: str = "samples"
    ):
        self.num_samples = num_samples
        self.seed = seed
        self.every_n_epochs = every_n_epochs
        self.key = key

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not due(trainer, self.every_n_epochs):
            return
        classes = getattr(pl_module, "num_classes", None)
        if classes:
            per_label = max(1, self.num_samples // classes)
            labels = torch.arange(classes).repeat_interleave(per_label)
            images, row = pl_module.sample(len(labels), seed=self.seed, labels=labels), per_label
        else:
            images, row = pl_module.sample(self.num_samples, seed=self.seed), math.ceil(math.sqrt(self.num_samples))
        save_and_log(trainer, self.key, grid_picture(to_uint8(images), nrow=row))
