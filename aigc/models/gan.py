"""A GAN as a LightningModule with manual optimization.

Each training batch makes one discriminator update and one generator update, so
the logging step (Lightning's count of batches) is the number of generator
updates, not the doubled ``global_step`` that counts both optimizers.

Class-conditional (``num_classes``, read by both nets): the discriminator judges real images
with their labels and generated ones with the labels they were drawn for, uniform over the
classes; ``sample`` draws the labels it is given, else every class in turn.
"""

from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningModule
from torch import nn

from aigc.common.constraints import NonNegativeFloat, PositiveFloat, PositiveInt, nets_agree
from aigc.models.batches import real_labelled
from aigc.models.conditioning import drawn_labels
from aigc.models.modes import evaluating
from aigc.models.training_log import TrainingLog


class GAN(LightningModule):
    # Each of the two backward passes per batch goes through one net only (aigc/trainer/distributed.py).
    ddp_find_unused_parameters = True
    # trainer.precision=auto: conv nets train faster in bf16 on a CPU with AMX (experiments/precision.md)
    faster_in_bf16_on_cpu = True
    # what it logs while fitting (what may be monitored: aigc.common.capabilities); its callbacks declare theirs
    logged_metrics = (*TrainingLog.names("train/loss_g", "train/loss_d"), "val/loss_d", "val/loss_g")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        loss,
        grad_clip: PositiveFloat | None = None,
        r1_gamma: NonNegativeFloat = 0.0,
        num_classes: PositiveInt | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        # Only plain values go into checkpoints; the nets are rebuilt from the run's config.
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "optimizer_g", "optimizer_d", "loss"], logger=False
        )
        self.generator = generator
        self.discriminator = discriminator
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.loss = loss
        self.grad_clip = grad_clip
        self.r1_gamma = r1_gamma
        self.num_classes = num_classes
        self.check_arguments(generator=generator, discriminator=discriminator, num_classes=num_classes)
        self._training_log = TrainingLog()

    @staticmethod
    def check_arguments(generator: Any, discriminator: Any, num_classes: int | None = None, **_) -> None:
        nets_agree({"generator": generator, "discriminator": discriminator}, num_classes=num_classes)

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, labels)

    def configure_optimizers(self):
        return (
            self.optimizer_g(params=self.generator.parameters()),
            self.optimizer_d(params=self.discriminator.parameters()),
        )

    def _update(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch, batch_idx):
        real, labels = batch[0], self._conditioning(batch[1])
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], self.latent_dim, device=self.device)
        drawn = None if labels is None else torch.randint(0, self.num_classes, labels.shape, device=self.device)
        fake = self.generator(z, drawn)

        self.toggle_optimizer(opt_d)
        real.requires_grad_(self.r1_gamma > 0)
        real_logits = self.discriminator(real, labels)
        loss_d = self.loss.discriminator(real_logits, self.discriminator(fake.detach(), drawn))
        if self.r1_gamma > 0:
            loss_d = loss_d + self.r1_gamma / 2 * r1_penalty(real_logits, real)
        self._update(opt_d, loss_d)
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        loss_g = self.loss.generator(self.discriminator(fake, drawn))
        self._update(opt_g, loss_g)
        self.untoggle_optimizer(opt_g)

        losses = {"train/loss_g": loss_g.detach(), "train/loss_d": loss_d.detach()}
        self._training_log.step(self, losses, real.shape[0])
        return losses  # the NaN guard reads them

    def on_train_epoch_end(self) -> None:
        self._training_log.epoch_end(self)

    def validation_step(self, batch, batch_idx):
        self._score_discriminator(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._score_discriminator(batch, batch_idx, "test")

    def _score_discriminator(self, batch, batch_idx: int, stage: str) -> None:
        real, labels = real_labelled(batch)
        if not len(real):
            return
        labels = self._conditioning(labels)
        fake = self.sample(real.shape[0], seed=batch_idx, **({} if labels is None else {"labels": labels}))
        fake_logits = self.discriminator(fake, labels)
        self.log_dict(
            {
                f"{stage}/loss_d": self.loss.discriminator(self.discriminator(real, labels), fake_logits),
                f"{stage}/loss_g": self.loss.generator(fake_logits),
            },
            batch_size=real.shape[0],
            sync_dist=True,  # under DDP: the mean over every process's share of the data
        )

    @torch.no_grad()
    def sample(self, num_samples: int, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from latent vectors fixed by ``seed`` (the same on every device); a
        conditional model draws ``labels`` (N,), by default every class in turn."""
        latent = torch.randn(num_samples, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        labels = drawn_labels(self.num_classes, num_samples, labels, self.device)
        with evaluating(self.generator):
            return self.generator(latent.to(self.device), labels)

    def _conditioning(self, labels: torch.Tensor) -> torch.Tensor | None:
        return None if self.num_classes is None else labels


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The mean squared norm of the discriminator's gradient at real images (Mescheder et al.,
    2018, "Which training methods for GANs do actually converge?"): it keeps D flat on the data."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return gradient.float().square().flatten(1).sum(1).mean()
