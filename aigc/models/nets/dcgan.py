"""DCGAN-style generator and discriminator for small images (28x28 or 32x32).

Both nets work on any image whose side is divisible by 4: the generator starts
from a (4w, H/4, W/4) feature map and doubles twice; the discriminator halves
twice and reads the result with one linear layer.

Class-conditional (``num_classes``): the generator reads a learned embedding of the label beside
``z``; the discriminator is a projection discriminator (Miyato & Koyama, 2018): its logit gains
the inner product of its features with a learned embedding of the label.
"""

from collections.abc import Sequence

import torch
from torch import nn

from aigc.common.constraints import PositiveInt
from aigc.models.nets.shapes import image_dims


class Generator(nn.Module):
    """Maps latent vectors ``z`` of shape (N, latent_dim), and labels (N,) when class-conditional,
    to images in [-1, 1]."""

    def __init__(
        self,
        latent_dim: PositiveInt,
        image_shape: Sequence[int],
        width: PositiveInt = 64,
        num_classes: PositiveInt | None = None,
    ):
        super().__init__()
        channels, height, width_px = image_dims(image_shape, "DCGAN")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.embed = None if num_classes is None else nn.Embedding(num_classes, latent_dim)
        self.start = (4 * width, height // 4, width_px // 4)
        inputs = latent_dim if num_classes is None else 2 * latent_dim
        self.project = nn.Sequential(
            nn.Linear(inputs, 4 * width * (height // 4) * (width_px // 4), bias=False),
            nn.BatchNorm1d(4 * width * (height // 4) * (width_px // 4)),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.upsample(self.project(z).view(-1, *self.start))


class Discriminator(nn.Module):
    """Maps images in [-1, 1], and their labels (N,) when class-conditional, to one real/fake logit each."""

    def __init__(self, image_shape: Sequence[int], width: PositiveInt = 64, num_classes: PositiveInt | None = None):
        super().__init__()
        channels, height, width_px = image_dims(image_shape, "DCGAN")
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
        )
        features = 2 * width * (height // 4) * (width_px // 4)
        self.classify = nn.Linear(features, 1)
        self.project = None if num_classes is None else nn.Embedding(num_classes, features)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(images)
        logits = self.classify(features).squeeze(1)
        if self.project is not None:
            logits = logits + (self.project(labels) * features).sum(dim=1)
        return logits
