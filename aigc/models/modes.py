"""Switching nets to eval mode for sampling and scoring, and back."""

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside the block (BatchNorm uses its running statistics), each module's previous mode after it."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=False):
            module.train(mode)
