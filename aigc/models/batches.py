"""What models take from a datamodule's evaluation batches.

Under DDP the evaluation data pads each process's share with blank examples, so that every
real example is scored exactly once (``aigc.data.sharding``): images labelled -1, and text
windows whose targets are all -100 (which ``cross_entropy`` ignores). Models score the rest.
"""

import torch

BLANK_LABEL = -1
IGNORED_TARGET = -100


def real_images(batch) -> torch.Tensor:
    """The images of an ``(images, labels)`` batch, blanks left out."""
    return real_labelled(batch)[0]


def real_labelled(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of an ``(images, labels)`` batch, blanks left out."""
    images, labels = batch[0], batch[1]
    real = labels != BLANK_LABEL
    return images[real], labels[real]
