"""Fixed validation images above their reconstructions, after every N validation runs."""

import torch

from aigc.callbacks.image_logging import grid_picture, save_and_log
from aigc.callbacks.schedule import due
from aigc.common.capabilities import Contract, Reconstructs
from aigc.common.constraints import PositiveInt
from aigc.metrics.images import to_uint8


class ReconstructionGrid(Contract):
    """Needs a model that reconstructs images (``aigc.common.capabilities.Reconstructs``).

    The images are the first ``num_images`` of the validation set, the same every time.
    Rows alternate: ``nrow`` originals, then their reconstructions right below them.
    The PNG and the logged picture follow SampleGrid's conventions (folder ``key``, step).
    """

    needs_model = (Reconstructs,)

    def __init__(
        self,
        num_images: PositiveInt = 32,
        every_n_epochs: PositiveInt = 1,
        key: str = "reconstructions",
        nrow: PositiveInt = 8,
    ):
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.key = key
        self.nrow = nrow
        self._images: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not due(trainer, self.every_n_epochs):
            return
        originals, labels = self._fixed_images(trainer)
        given = {"labels": labels} if getattr(pl_module, "num_classes", None) else {}
        reconstructions = pl_module.reconstruct(originals.to(pl_module.device), **given).cpu()
        nrow = min(self.nrow, len(originals))
        pairs = _interleave(to_uint8(originals), to_uint8(reconstructions), nrow)
        save_and_log(trainer, self.key, grid_picture(pairs, nrow=nrow))

    def _fixed_images(self, trainer) -> tuple[torch.Tensor, torch.Tensor]:
        """The first validation images and their labels (a conditional model reconstructs with them)."""
        if self._images is None:
            loader = trainer.val_dataloaders
            loader = loader[0] if isinstance(loader, (list, tuple)) else loader
            images, labels, count = [], [], 0
            for batch in loader:  # not shuffled: the first images are always the same
                images.append(batch[0])
                labels.append(batch[1])
                count += len(batch[0])
                if count >= self.num_images:
                    break
            self._images = torch.cat(images)[: self.num_images], torch.cat(labels)[: self.num_images]
        return self._images


def _interleave(originals: torch.Tensor, reconstructions: torch.Tensor, nrow: int) -> torch.Tensor:
    """(N, C, H, W) twice -> rows of ``nrow`` originals, each followed by the row of their reconstructions."""
    rows = -(-len(originals) // nrow)
    blank = originals.new_zeros(rows * nrow - len(originals), *originals.shape[1:])  # fills the last row
    shape = (rows, nrow, *originals.shape[1:])
    halves = [torch.cat([images, blank]).view(shape) for images in (originals, reconstructions)]
    return torch.stack(halves, dim=1).flatten(0, 2)
