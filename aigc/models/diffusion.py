"""A diffusion model (Ho et al., 2020) as a LightningModule, optionally class-conditional with
classifier-free guidance (Ho & Salimans, 2022). The denoiser is a net from config
(``aigc.models.nets.unet``); the noise schedule and the samplers are diffusers' schedulers.

Training. A clean image x0, noise e and a timestep t give x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e
(DDPM's schedule of ``num_train_timesteps`` steps, ``scheduler.add_noise``); the net predicts,
by ``prediction``:

- ``epsilon``: the noise e;
- ``v_prediction`` (the default): the velocity v = sqrt(a_t) e - sqrt(1 - a_t) x0 (Salimans & Ho,
  2022), which learned to sample in a tenth of the steps that epsilon had not (experiments/diffusion.md);
- ``flow``: rectified flow (Liu et al., 2023) instead of DDPM's schedule: x_t = (1 - t) x0 + t e
  for t uniform in [0, 1], and the net predicts e - x0.

The loss is the mean squared error. A conditional model (``num_classes``) sees its label
replaced by the null label (``num_classes``) with probability ``label_dropout``, which teaches
it the unconditional prediction too.

Sampling (``sample``): ``sampler`` is ``ddpm`` (ancestral), ``ddim``, ``dpm++`` (DPM-Solver++
2M) or, for flow models, ``euler``, in ``steps`` steps spaced "trailing" (the first step starts
from pure noise, which few steps need; Lin et al., 2024). A conditional model's prediction
with ``guidance`` s is unconditional + s x (conditional - unconditional), both from one batched
pass: s = 0 is the unconditional model, s = 1 the conditional one without guidance.
"""

from collections.abc import Callable
from typing import Literal, get_args

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
from lightning import LightningModule
from torch import nn
from torch.nn import functional as F

from aigc.common.constraints import NonNegativeFloat, PositiveInt, Probability
from aigc.models.batches import real_labelled
from aigc.models.conditioning import drawn_labels
from aigc.models.modes import evaluating
from aigc.models.training_log import TrainingLog

Prediction = Literal["epsilon", "v_prediction", "flow"]
Sampler = Literal["ddpm", "ddim", "dpm++", "euler"]
BetaSchedule = Literal["linear", "squaredcos_cap_v2"]


class Diffusion(LightningModule):
    """Args:
    net: the denoiser, ``net(x_t, timesteps, labels)`` (``aigc.models.nets.unet.UNet``).
    optimizer: a partial of the optimizer (``_partial_: true``).
    image_shape: (C, H, W) of the data.
    prediction: what the net learns to predict (above).
    num_train_timesteps, beta_schedule: DDPM's noise schedule (not used by flow models).
    num_classes: the labels it is conditioned on (None: unconditional); the net must take as many.
    label_dropout: how often a training label is replaced by the null label.
    sampler, steps, guidance: how ``sample`` draws images unless told otherwise.
    """

    # what it logs while fitting (what may be monitored: aigc.common.capabilities); its callbacks declare theirs
    logged_metrics = (*TrainingLog.names("train/loss"), "val/loss")
    # called after every sampling step with (steps done, steps), where set (aigc.play's progress bar)
    progress: Callable[[int, int], None] | None = None

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        image_shape: list[int],
        prediction: Prediction = "v_prediction",
        num_train_timesteps: PositiveInt = 1000,
        beta_schedule: BetaSchedule = "linear",
        num_classes: PositiveInt | None = None,
        label_dropout: Probability = 0.1,
        sampler: Sampler = "dpm++",
        steps: PositiveInt = 20,
        guidance: NonNegativeFloat = 1.0,
    ):
        super().__init__()
        Diffusion.check_arguments(prediction=prediction, sampler=sampler, steps=steps)
        if getattr(net, "num_classes", num_classes) != num_classes:
            raise ValueError(
                f"model.net.num_classes={net.num_classes} but model.num_classes={num_classes}: "
                "set model.num_classes only (the net interpolates it)"
            )
        # Only plain values go into checkpoints; the net is rebuilt from the run's config.
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer = optimizer
        self.image_shape = tuple(int(d) for d in image_shape)
        self.prediction = prediction
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self.sampler, self.steps, self.guidance = sampler, steps, guidance
        self.noise_schedule = DDPMScheduler(**self.schedule_settings())
        self._training_log = TrainingLog()

    @staticmethod
    def check_arguments(prediction: str, sampler: str, steps: int, **_) -> None:
        """Flow models sample with Euler, the others with DDPM's family of samplers."""
        if (prediction == "flow") != (sampler == "euler"):
            fits = "euler" if prediction == "flow" else "ddpm, ddim or dpm++"
            raise ValueError(f"sampler={sampler} does not sample a model of prediction={prediction}: use {fits}")

    @property
    def sampling_options(self) -> dict[str, int | float | str]:
        """What ``sample`` takes besides the count, the seed and the labels, with its defaults
        (``aigc.serving`` offers them as the MLflow model's params)."""
        return {"sampler": self.sampler, "steps": self.steps, "guidance": self.guidance}

    @property
    def sampling_choices(self) -> dict[str, list[str]]:
        """The values a sampling option can take, where they are few: the samplers that sample this
        model's prediction (``aigc.play`` offers them in a list)."""
        return {
            "sampler": [sampler for sampler in get_args(Sampler) if (sampler == "euler") == (self.prediction == "flow")]
        }

    @property
    def _diffusers_type(self) -> str:
        return {"epsilon": "epsilon", "v_prediction": "v_prediction", "flow": "flow_prediction"}[self.prediction]

    def schedule_settings(self) -> dict:
        """DDPM's noise schedule, as diffusers' schedulers take it (a pretrained model: its own)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "prediction_type": self._diffusers_type,
        }

    def configure_optimizers(self):
        return self.optimizer(params=self.parameters())

    # --- training ---------------------------------------------------------------------------

    def losses(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        generator: torch.Generator | None = None,
        noise_offset: float = 0.0,
        snr_gamma: float | None = None,
    ):
        """The mean squared error of the net's prediction, for noise and timesteps drawn from
        ``generator`` (a fixed one, on the CPU: validation scores the same way every time, on any
        device) or else from the device's own stream.

        Two options of the fine-tuning scripts, for training only (validation's loss stays the plain
        mean, comparable between runs): ``noise_offset`` adds noise constant over each image and
        channel, which lets a model learn to change an image's mean brightness (Guttenberg, 2023);
        ``snr_gamma`` weights each timestep by min(SNR, gamma) / SNR for epsilon (/ (SNR + 1) for
        v), so that the easy low-noise steps no longer dominate (min-SNR, Hang et al., 2023).
        """
        n, draw = images.shape[0], _drawn_by(generator, images.device)
        noise = draw(torch.randn, images.shape).to(images.dtype)
        if noise_offset:
            noise = noise + noise_offset * draw(torch.randn, (*images.shape[:2], 1, 1)).to(images.dtype)
        if self.prediction == "flow":
            t = draw(torch.rand, (n,)).to(images.dtype)
            sigma = t.view(-1, 1, 1, 1)
            noisy, target = (1 - sigma) * images + sigma * noise, noise - images
            timesteps = t * self.num_train_timesteps
        else:
            timesteps = draw(torch.randint, 0, self.num_train_timesteps, (n,))
            noisy = self.noise_schedule.add_noise(images, noise, timesteps)
            target = (
                noise if self.prediction == "epsilon" else self.noise_schedule.get_velocity(images, noise, timesteps)
            )
        prediction = self.predict(noisy, timesteps, labels).float()
        if snr_gamma is None or self.prediction == "flow":
            return F.mse_loss(prediction, target.float())
        per_image = F.mse_loss(prediction, target.float(), reduction="none").mean(dim=tuple(range(1, images.ndim)))
        return (per_image * self.snr_weights(timesteps, snr_gamma)).mean()

    def snr_weights(self, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
        """min-SNR-gamma's weight of each timestep's loss (Hang et al., 2023), for the prediction type."""
        alphas = self.noise_schedule.alphas_cumprod.to(timesteps.device)[timesteps]
        snr = alphas / (1 - alphas)
        clipped = snr.clamp(max=gamma)
        return clipped / snr if self.prediction == "epsilon" else clipped / (snr + 1)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning) -> torch.Tensor:
        """The net's prediction for ``noisy`` at ``timesteps``, given the conditioning (labels here)."""
        return self.net(noisy, timesteps, conditioning)

    def training_step(self, batch, batch_idx):
        images, labels = batch[0], self._conditioning(batch[1])
        loss = self.losses(images, None if labels is None else self.drop_labels(labels))
        self._training_log.step(self, {"train/loss": loss}, images.shape[0])
        return loss

    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Each label replaced by the null label with probability ``label_dropout``."""
        dropped = torch.rand(labels.shape, device=labels.device) < self.label_dropout
        return labels.masked_fill(dropped, self.num_classes)

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
        # noise and timesteps fixed by the batch: the score depends on the weights only
        loss = self.losses(images, self._conditioning(labels), torch.Generator().manual_seed(batch_idx))
        self.log(f"{stage}/loss", loss, batch_size=images.shape[0], sync_dist=True)

    def _conditioning(self, labels: torch.Tensor) -> torch.Tensor | None:
        return None if self.num_classes is None else labels

    # --- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        seed: int = 0,
        labels: torch.Tensor | None = None,
        sampler: Sampler | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Images in [-1, 1] from noise fixed by ``seed`` (the same on every device). A conditional
        model draws ``labels`` (N,), by default every class in turn (0, 1, ..., 0, 1, ...)."""
        sampler = self.sampler if sampler is None else sampler
        steps = self.steps if steps is None else steps
        guidance = self.guidance if guidance is None else guidance
        self._check_sampling(sampler, steps, guidance)
        labels = drawn_labels(self.num_classes, num_samples, labels, self.device)
        null = None if labels is None else torch.full_like(labels, self.num_classes)
        return self.draw(num_samples, seed, labels, null, sampler, steps, guidance).clamp(-1, 1)

    def draw(self, num_samples: int, seed: int, conditioning, null, sampler: Sampler, steps: int, guidance: float):
        """The sampling loop: ``num_samples`` images (or latents: ``image_shape``, unclamped) from
        noise fixed by ``seed``, guided towards ``conditioning`` and away from ``null`` (each one per
        image, or None: unconditional)."""
        generator = torch.Generator().manual_seed(seed)
        noisy = torch.randn((num_samples, *self.image_shape), generator=generator).to(self.device)
        schedule = self._sampling_schedule(sampler)
        schedule.set_timesteps(steps)
        noisy = noisy * getattr(schedule, "init_noise_sigma", 1.0)  # (flow schedules start at sigma 1)
        with evaluating(self.net):
            for done, t in enumerate(schedule.timesteps, start=1):
                prediction = self.guided(noisy, t, conditioning, guidance, null)
                noisy = schedule.step(prediction, t, noisy, generator=generator).prev_sample
                if self.progress is not None:
                    self.progress(done, len(schedule.timesteps))
        return noisy

    def _check_sampling(self, sampler, steps, guidance) -> None:
        """What a request (``aigc.sample``, the MLflow model) asks for, in one line if it can't be done."""
        if sampler not in get_args(Sampler):
            raise ValueError(f"sampler={sampler!r}: use one of {', '.join(get_args(Sampler))}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r}: give a whole number of sampling steps, at least 1")
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance < float("inf"):
            raise ValueError(f"guidance={guidance!r}: give a number at least 0 (0: unconditional, 1: no guidance)")
        Diffusion.check_arguments(prediction=self.prediction, sampler=sampler, steps=steps)

    def guided(self, noisy: torch.Tensor, t: torch.Tensor, conditioning, guidance: float, null=None):
        """The net's prediction at timestep ``t``, guided by ``guidance`` towards ``conditioning``
        and away from ``null`` (the null label; a text model's empty or negative prompt)."""
        timesteps = t.to(self.device).expand(noisy.shape[0])
        if conditioning is None or guidance == 1:
            return self.predict(noisy, timesteps, conditioning).float()
        if guidance == 0:
            return self.predict(noisy, timesteps, null).float()
        both = self.predict(
            torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]), torch.cat([conditioning, null])
        )
        conditional, unconditional = both.float().chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    def _sampling_schedule(self, sampler: Sampler):
        if sampler == "euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=1.0)
        ddpm_family = self.schedule_settings()
        if sampler == "ddpm":
            return DDPMScheduler(**ddpm_family, timestep_spacing="trailing", clip_sample=False)
        if sampler == "ddim":
            return DDIMScheduler(**ddpm_family, timestep_spacing="trailing", clip_sample=False)
        return DPMSolverMultistepScheduler(
            **ddpm_family, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing"
        )


def _drawn_by(generator: torch.Generator | None, device: torch.device) -> Callable:
    """``draw(torch.randn, shape)``, ``draw(torch.randint, low, high, shape)``: on ``device``,
    from ``generator`` (a CPU one, moved) or else from the device's own random stream."""

    def draw(function: Callable, *args) -> torch.Tensor:
        if generator is None:
            return function(*args, device=device)
        return function(*args, generator=generator).to(device)

    return draw
