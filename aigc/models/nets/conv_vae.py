"""Convolutional encoder and decoder for a VAE on small images (28x28 or 32x32).

Like the DCGAN nets, both work on any image whose side is divisible by 4: the
encoder halves twice and reads the result with one linear layer; the decoder
starts from a (2w, H/4, W/4) feature map and doubles twice. No batch norm, so
a reconstruction or an ELBO does not depend on what else is in the batch.

Class-conditional (``num_classes``: a conditional VAE, Sohn et al., 2015): the encoder reads a
learned embedding of the label beside the image's features, the decoder beside ``z``.
"""

from collections.abc import Sequence

import torch
from torch import nn

from aigc.common.constraints import PositiveInt
from aigc.models.nets.shapes import image_dims


class Encoder(nn.Module):
    """Maps images in [-1, 1] (and their labels (N,) when conditional) to the mean and
    log-variance of q(z|x), each (N, latent_dim)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: PositiveInt,
        width: PositiveInt = 32,
        num_classes: PositiveInt | None = None,
    ):
        super().__init__()
        channels, height, width_px = image_dims(image_shape, "conv VAE")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.embed = None if num_classes is None else nn.Embedding(num_classes, latent_dim)
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
        )
        features = 2 * width * (height // 4) * (width_px // 4) + (0 if num_classes is None else latent_dim)
        self.posterior = nn.Linear(features, 2 * latent_dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)
        if self.embed is not None:
            features = torch.cat([features, self.embed(labels)], dim=1)
        mu, logvar = self.posterior(features).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """Maps latent vectors (N, latent_dim) to one unbounded value per pixel and channel.

    What the values mean (Bernoulli logits, Gaussian means) is up to the
    likelihood (aigc.models.vae_likelihoods), which also turns them into images.
    """

    def __init__(
        self,
        latent_dim: PositiveInt,
        image_shape: Sequence[int],
        width: PositiveInt = 32,
        num_classes: PositiveInt | None = None,
    ):
        super().__init__()
        channels, height, width_px = image_dims(image_shape, "conv VAE")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.embed = None if num_classes is None else nn.Embedding(num_classes, latent_dim)
        self.start = (2 * width, height // 4, width_px // 4)
        inputs = latent_dim if num_classes is None else 2 * latent_dim
        self.project = nn.Sequential(nn.Linear(inputs, 2 * width * (height // 4) * (width_px // 4)), nn.SiLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.upsample(self.project(z).view(-1, *self.start))
