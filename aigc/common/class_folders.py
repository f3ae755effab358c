"""The classes of an image folder: its subfolders, as torchvision's ``ImageFolder`` reads them. The
configs count them when composed (``${aigc.class_count:}``) and the datamodule labels images by
them, so both read the folder the same way."""

import os
from pathlib import Path


def class_folders(folder: str | Path) -> list[str]:
    """The class subfolders of an image folder, sorted as ``ImageFolder`` sorts them (hidden ones,
    such as ``.ipynb_checkpoints``, are no classes)."""
    with os.scandir(Path(str(folder)).expanduser()) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
