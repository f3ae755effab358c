"""GAN objectives, chosen in config (``model.loss._target_``).

Each takes discriminator logits and returns a scalar loss.
"""

import torch
import torch.nn.functional as F


class NonSaturatingLoss:
    """The original GAN loss with the generator's non-saturating form (Goodfellow et al., 2014)."""

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class HingeLoss:
    """Hinge loss (Lim & Ye, 2017; used by SAGAN and BigGAN)."""

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()
