"""Image-shape checks shared by the convolutional nets."""

from collections.abc import Sequence


def image_dims(image_shape: Sequence[int], net: str) -> tuple[int, int, int]:
    """(channels, height, width), for nets that halve the image twice: sides must divide by 4."""
    channels, height, width = (int(d) for d in image_shape)
    if height % 4 or width % 4:
        raise ValueError(f"{net} nets need image sides divisible by 4, got {height}x{width}")
    return channels, height, width
