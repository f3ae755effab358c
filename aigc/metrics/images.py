"""Image conversions shared by sample grids and image metrics."""

import torch


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 in [0, 255], rounded to nearest (the one place this conversion happens)."""
    return images.detach().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
