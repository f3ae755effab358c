"""Reconstruction likelihoods p(x|z) for the VAE, chosen in config (``model.likelihood._target_``).

Each reads the decoder's outputs and gives, per image, the log-likelihood of the
pixels in nats (summed over pixels and channels), and the image the outputs
stand for. Both model pixels rescaled to [0, 1] (images arrive in [-1, 1]), so
their nats are on the scale the VAE literature reports for MNIST.

They are ``nn.Module``s so that a learned parameter (the Gaussian's scale) is
trained with the nets and saved in the checkpoint's state dict.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from aigc.common.constraints import PositiveFloat


def _unit_interval(images: torch.Tensor) -> torch.Tensor:
    return images.add(1).div(2)


class Bernoulli(nn.Module):
    """Outputs are logits. For grey-level pixels this is the usual cross-entropy "likelihood"
    (not a normalised density on [0, 1]): fine for MNIST-like data, not for natural images."""

    def log_prob(self, outputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        nll = F.binary_cross_entropy_with_logits(outputs, _unit_interval(images), reduction="none")
        return -nll.flatten(1).sum(1)

    def mean(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(outputs).mul(2).sub(1)


class Gaussian(nn.Module):
    """Outputs are means on [0, 1]; one standard deviation ``scale`` shared by all pixels,
    fixed, or learned with the nets when ``learn_scale`` (as in the sigma-VAE, Rybkin et al. 2021).

    A small fixed scale weighs reconstruction against the KL term like a low beta does.
    """

    def __init__(self, scale: PositiveFloat = 0.1, learn_scale: bool = False):
        super().__init__()
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def log_prob(self, outputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        z = (_unit_interval(images) - outputs) * torch.exp(-self.log_scale)
        log_density = -0.5 * z.square() - self.log_scale - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(1)

    def mean(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.clamp(0, 1).mul(2).sub(1)
