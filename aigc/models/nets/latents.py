"""Latent space (Rombach et al., 2022): a pretrained ``AutoencoderKL``, frozen, in front of a
diffusion model, which then denoises latents of a factor smaller per side instead of pixels.

``distribution(images)`` is the encoder's diagonal Gaussian (mean, std) in the diffusion model's
scale (times the VAE's ``scaling_factor``): a training step draws a latent from it, and a cache
of it gives the same draws as encoding every time. ``decode(latents)`` maps back to images.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from aigc.common.hub import load_pretrained


class Latents(nn.Module):
    """A frozen VAE: images in [-1, 1] <-> latents."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        self.scale = float(vae.config.scaling_factor)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.channels = int(vae.config.latent_channels)

    @classmethod
    def pretrained(cls, name: str, what: str) -> "Latents":
        """From a hub name or folder: an ``AutoencoderKL``'s own, or a pipeline's ``vae/``."""

        def load(folder: str) -> AutoencoderKL:
            layout = {"subfolder": "vae"} if (Path(folder) / "vae").is_dir() else {}
            return AutoencoderKL.from_pretrained(folder, **layout)

        return cls(load_pretrained(load, name, what))

    def train(self, mode: bool = True) -> "Latents":
        return super().train(False)  # frozen: always as pretrained

    def shape(self, image_shape: Sequence[int], what: str = "data.resolution") -> tuple[int, int, int]:
        """The latents' (C, H, W) of images of ``image_shape``; sides the encoder can't divide are refused."""
        _, height, width = (int(side) for side in image_shape)
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"images of {height}x{width}: the VAE encodes {self.factor}x{self.factor} pixels into one latent, "
                f"so {what} must be a multiple of {self.factor}"
            )
        return self.channels, height // self.factor, width // self.factor

    @torch.no_grad()
    def distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's Gaussian of each image's latent, (mean, std), scaled for the diffusion model."""
        encoded = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return encoded.mean * self.scale, encoded.std * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample.float()
