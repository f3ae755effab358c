"""How often a classifier names the label each generated image was drawn for: the accuracy of a
class-conditional generator, by the classifier that ships for the data (``acc_mnist``)."""

import functools

import torch

from aigc.metrics import mnist_classifier
from aigc.metrics.fidelity import SHORT_NAMES

# the classifiers that name labels, by the extractor name the datamodules give (``classifier``)
CLASSIFIERS = {mnist_classifier.NAME: mnist_classifier.load_classifier}


def accuracy_key(classifier: str) -> str:
    """``acc_<short>`` for a classifier's short name (``acc_mnist``), as FID's ``fid_<short>``."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"no label classifier {classifier!r}; known: {sorted(CLASSIFIERS)}")
    return f"acc_{SHORT_NAMES[classifier]}"


@torch.no_grad()
def label_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: str, batch_size: int = 500) -> float:
    """The fraction of uint8 ``images`` (N, C, H, W) that ``classifier`` assigns to their ``labels`` (N,)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels) or not len(images):
        raise ValueError(f"need uint8 images (N, C, H, W) and N labels, got {tuple(images.shape)} and {len(labels)}")
    net = _loaded(classifier)
    correct = 0
    for start in range(0, len(images), batch_size):
        pixels = images[start : start + batch_size].float().mean(dim=1, keepdim=True) / 127.5 - 1  # [-1, 1], grey
        correct += int((net(pixels).argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


@functools.cache
def _loaded(classifier: str) -> torch.nn.Module:
    if classifier not in CLASSIFIERS:
        raise ValueError(f"no label classifier {classifier!r}; known: {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[classifier]()
