"""A variational autoencoder (Kingma & Welling, 2014) as a LightningModule, beta optional.

All quantities are in nats per image (summed over pixels, averaged over the batch):

- ``recon``  = -log p(x|z), z drawn from q(z|x) (one sample, reparameterised);
- ``kl``     = KL(q(z|x) || N(0, I)), in closed form;
- ``loss``   = recon + beta * kl, what training minimises (beta = 1: the negative ELBO);
- ``val/elbo`` = -(recon + kl), the evidence lower bound with beta = 1 whatever beta
  trains, so runs with different betas compare on one scale. Higher is better.

Class-conditional (``num_classes``, read by both nets): a conditional VAE, whose posterior and
likelihood see the label; ``sample`` draws the labels it is given, else every class in turn.
"""

from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningModule
from torch import nn

from aigc.common.constraints import NonNegativeFloat, PositiveInt, nets_agree
from aigc.models.batches import real_labelled
from aigc.models.conditioning import drawn_labels
from aigc.models.modes import evaluating
from aigc.models.training_log import TrainingLog


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)


class VAE(LightningModule):
    # trainer.precision=auto: conv nets train faster in bf16 on a CPU with AMX (experiments/precision.md)
    faster_in_bf16_on_cpu = True
    # what it logs while fitting (what may be monitored: aigc.common.capabilities); its callbacks declare theirs
    logged_metrics = (
        *TrainingLog.names("train/loss", "train/recon", "train/kl"),
        "val/elbo",
        "val/recon",
        "val/kl",
    )

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        latent_dim: PositiveInt,
        beta: NonNegativeFloat = 1.0,
        num_classes: PositiveInt | None = None,
    ):
        super().__init__()
        # Only plain values go into checkpoints; the nets are rebuilt from the run's config.
        self.save_hyperparameters(ignore=["encoder", "decoder", "likelihood", "optimizer"], logger=False)
        self.check_arguments(encoder=encoder, decoder=decoder, latent_dim=latent_dim, num_classes=num_classes)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood  # a module: a learned scale is trained and checkpointed with the nets
        self.optimizer = optimizer
        self.latent_dim = latent_dim
        self.beta = beta
        self.num_classes = num_classes
        self._training_log = TrainingLog()

    @staticmethod
    def check_arguments(encoder: Any, decoder: Any, latent_dim: int, num_classes: int | None = None, **_) -> None:
        nets_agree({"encoder": encoder, "decoder": decoder}, latent_dim=latent_dim, num_classes=num_classes)

    def forward(self, images: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        """Decoder outputs for z ~ q(z|images), with the posterior's mean and log-variance."""
        mu, logvar = self.encoder(images, labels)
        noise = torch.randn_like(mu) if noise is None else noise
        return self.decoder(mu + noise * torch.exp(0.5 * logvar), labels), mu, logvar

    def losses(
        self, images: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Batch means of ``recon``, ``kl`` and ``loss`` (see the module docstring)."""
        outputs, mu, logvar = self(images, noise, labels)
        recon = -self.likelihood.log_prob(outputs, images).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    def configure_optimizers(self):
        return self.optimizer(params=self.parameters())

    def training_step(self, batch, batch_idx):
        losses = self.losses(batch[0], labels=self._conditioning(batch[1]))
        self._training_log.step(self, {f"train/{name}": value for name, value in losses.items()}, len(batch[0]))
        return losses["loss"]

    def on_train_epoch_end(self) -> None:
        self._training_log.epoch_end(self)

    def validation_step(self, batch, batch_idx):
        self._score(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._score(batch, batch_idx, "test")

    def _score(self, batch, batch_idx: int, stage: str) -> None:
        images, labels = real_labelled(batch)
        if not len(images):
            return
        # Noise fixed by the batch index: the score depends on the weights only, and scoring
        # leaves the training random stream alone.
        noise = torch.randn(images.shape[0], self.latent_dim, generator=torch.Generator().manual_seed(batch_idx))
        losses = self.losses(images, noise.to(self.device), self._conditioning(labels))
        self.log_dict(
            {
                f"{stage}/elbo": -(losses["recon"] + losses["kl"]),
                f"{stage}/recon": losses["recon"],
                f"{stage}/kl": losses["kl"],
            },
            batch_size=images.shape[0],
            sync_dist=True,  # under DDP: the mean over every process's share of the data
        )

    @torch.no_grad()
    def sample(self, num_samples: int, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] decoded from prior latents fixed by ``seed`` (the same on every device);
        a conditional model draws ``labels`` (N,), by default every class in turn."""
        latent = torch.randn(num_samples, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        labels = drawn_labels(self.num_classes, num_samples, labels, self.device)
        with evaluating(self.decoder):
            return self.likelihood.mean(self.decoder(latent.to(self.device), labels))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] (and, for a conditional model, their labels) -> their reconstructions in
        [-1, 1], decoded from the posterior mean."""
        labels = None if labels is None else labels.to(self.device)
        with evaluating(self.encoder, self.decoder):
            mu, _ = self.encoder(images.to(self.device), self._conditioning(labels))
            return self.likelihood.mean(self.decoder(mu, self._conditioning(labels)))

    def _conditioning(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        if self.num_classes is not None and labels is None:
            raise ValueError("a conditional VAE reconstructs images of known labels: give their labels")
        return None if self.num_classes is None else labels
