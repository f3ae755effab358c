"""Convolutional encoder and decoder for a VAE on small images (28x28 or 32x32).

Like the DCGAN nets, both work on any image whose side is divisible by 4: the
encoder halves twice and reads the result with one linear layer; the decoder
starts from a (2w, H/4, W/4) feature map and doubles twice. No batch norm, so
a reconstruction or an ELBO does not depend on what else is in the batch.
"""

from collections.abc import Sequence

import torch
from torch import nn

from aigc.common.constraints import PositiveInt
from aigc.models.nets.shapes import image_dims


class Encoder(nn.Module):
    """Maps images in [-1, 1] to the mean and log-variance of q(z|x), each (N, latent_dim)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: PositiveInt, width: PositiveInt = 32):
        super().__init__()
        channels, height, width_px = image_dims(image_shape, "conv VAE")
        self.latent_dim = latent_dim
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
        )
        self.posterior = nn.Linear(2 * width * (height // 4) * (width_px // 4), 2 * latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(self.features(images)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """Maps latent vectors (N, latent_dim) to one unbounded value per pixel and channel.

    What the values mean (Bernoulli logits, Gaussian means) is up to the
    likelihood (aigc.models.vae_likelihoods), which also turns them into images.
    """

    def __init__(self, latent_dim: PositiveInt, image_shape: Sequence[int], width: PositiveInt = 32):
        super().__init__()
        channels, height, width_px = image_dims(image_shape, "conv VAE")
        self.latent_dim = latent_dim
        self.start = (2 * width, height // 4, width_px // 4)
        self.project = nn.Sequential(nn.Linear(latent_dim, 2 * width * (height // 4) * (width_px // 4)), nn.SiLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z).view(-1, *self.start))
