"""A diffusion model that draws what a prompt says (Rombach et al., 2022; Saharia et al., 2022), as a
LightningModule: the diffusion model of ``aigc.models.diffusion`` with a sentence in place of a label.

The net (``aigc.models.nets.prompt_unet.PromptUNet``) encodes the prompt with a CLIP text encoder
and its UNet attends to the hidden states. Training is the diffusion model's (the same
predictions, noise schedule and samplers); a caption is replaced by the empty prompt with
probability ``prompt_dropout``, which teaches the unconditional prediction that classifier-free
guidance (Ho & Salimans, 2022) contrasts the prompt with. At sampling, guidance pushes away from
the empty prompt, or from a ``negative_prompt``.

Latent space (Rombach et al., 2022): a net with ``latents`` (a frozen ``AutoencoderKL``,
``aigc.models.nets.latents``) denoises the images' latents, drawn from the encoder's Gaussian each
step (its mean for validation, so that ``val/loss`` stays fixed); samples are decoded. With
``cache_latents`` the encoder's Gaussian of each distinct image and a frozen text encoder's hidden states
of each distinct caption are computed once: the same draws as without, in less time.

Checkpoints hold what trains: frozen pretrained weights (a VAE, a frozen text encoder, a UNet
under LoRA adapters) are left out and loaded again from where the net found them.

Batches are the captioned datamodules' ``(images, labels, captions)``: the labels only mark the
blank padding of evaluation batches under DDP.
"""

import contextlib
import hashlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from aigc.common.constraints import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from aigc.models.batches import BLANK_LABEL
from aigc.models.diffusion import BetaSchedule, Diffusion, Prediction, Sampler


class TextToImage(Diffusion):
    """Args:
    net: the prompt-conditioned denoiser (``PromptUNet``: ``tokenize``, ``encode``, ``denoise``).
    optimizer: a partial of the optimizer (``_partial_: true``).
    image_shape: (C, H, W) of the data.
    captions: where the data's captions come from (the data config's ``captions``); data without
        captions can't train it.
    prompt_dropout: how often a training caption is replaced by the empty prompt.
    negative_prompt: what guidance steers away from unless a request says otherwise ("" : nothing).
    snr_gamma: min-SNR-gamma loss weighting (null: off; 5 is the paper's; ``Diffusion.losses``).
    noise_offset: offset noise's scale (0: off; 0.05-0.1 is usual).
    cache_latents: compute each distinct image's latent distribution and each distinct caption's hidden
        states once (only what is frozen: a trained text encoder is run every step).
    The rest are the diffusion model's (``aigc.models.diffusion.Diffusion``).
    """

    family = "text_to_image"  # its config's name, in messages

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        image_shape: list[int],
        captions: str | None = None,
        prompt_dropout: Probability = 0.1,
        negative_prompt: str = "",
        prediction: Prediction = "v_prediction",
        num_train_timesteps: PositiveInt = 1000,
        beta_schedule: BetaSchedule = "linear",
        sampler: Sampler = "dpm++",
        steps: PositiveInt = 20,
        guidance: NonNegativeFloat = 3.0,
        snr_gamma: PositiveFloat | None = None,
        noise_offset: NonNegativeFloat = 0.0,
        cache_latents: bool = False,
    ):
        self.check_arguments(prediction=prediction, sampler=sampler, steps=steps, captions=captions)
        super().__init__(
            net,
            optimizer,
            getattr(net, "latent_shape", image_shape),
            prediction=prediction,
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            num_classes=None,
            label_dropout=0.0,
            sampler=sampler,
            steps=steps,
            guidance=guidance,
        )
        self.captions = captions
        self.prompt_dropout = prompt_dropout
        self.negative_prompt = negative_prompt
        self.snr_gamma = snr_gamma
        self.noise_offset = noise_offset
        self.cache_latents = cache_latents
        self._latent_cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
        self._hidden_cache: dict[str, torch.Tensor] = {}
        # fixed now: what requires_grad says later may be a copy's (an EMA average's) or a toggle's
        self._frozen = frozenset(name for name, weight in self.named_parameters() if not weight.requires_grad)
        self.register_load_state_dict_post_hook(_frozen_weights_not_missing)

    @classmethod
    def check_arguments(cls, prediction: str, sampler: str, steps: int, captions: str | None = None, **_) -> None:
        Diffusion.check_arguments(prediction=prediction, sampler=sampler, steps=steps)
        if captions in (None, "none"):
            raise ValueError(f"model={cls.family} learns from captions, and this data has none: use captioned data")

    def check_data(self, datamodule) -> None:
        """Before a run exists: every training image has a caption, and every caption fits the text encoder."""
        if not getattr(datamodule, "captioned", False):
            missing = getattr(datamodule, "uncaptioned", None)
            which = f" ({missing[0]} has none)" if missing else ""
            raise ValueError(
                f"model={self.family} learns from captions, and {datamodule.name} serves none{which}: add a "
                "metadata.jsonl (file_name, text) or a .txt beside each image"
            )
        self.check_prompts(sorted(set(datamodule.captions("train")) | set(datamodule.captions("val"))))

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Refuse, in one line, a prompt the text encoder can't read whole."""
        self.net.tokenize(list(prompts))

    # --- training ---------------------------------------------------------------------------

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(noisy, timesteps, hidden)

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """The prompts' hidden states, which the UNet attends to."""
        if not self.cache_latents or self.net.trains_text_encoder:
            return self.net.encode(self.net.tokenize(prompts))
        new = sorted(set(prompts) - set(self._hidden_cache))
        if new:
            with _for_training():
                self._hidden_cache.update(zip(new, self.net.encode(self.net.tokenize(new)), strict=True))
        return torch.stack([self._hidden_cache[prompt] for prompt in prompts])

    def to_latents(self, images: torch.Tensor, drawn: bool = True) -> torch.Tensor:
        """What the UNet denoises: the images, or latents drawn from the encoder's Gaussian of
        each (``drawn=False``: its mean)."""
        if getattr(self.net, "latents", None) is None:
            return images
        mean, std = self._latent_distribution(images)
        if not drawn:
            return mean
        # (randn_like would follow the strides of the encoder's output: other draws than a cached copy's)
        return mean + std * torch.randn(std.shape, device=std.device, dtype=std.dtype)

    def _latent_distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cache_latents:
            return self.net.latents.distribution(images)
        keys = [hashlib.blake2b(image.cpu().numpy().tobytes(), digest_size=16).digest() for image in images]
        new = [index for index, key in enumerate(keys) if key not in self._latent_cache]
        if new:
            with _for_training():
                mean, std = self.net.latents.distribution(images[new].clone())
            for index, row in enumerate(new):
                self._latent_cache[keys[row]] = (mean[index], std[index])
        mean, std = zip(*(self._latent_cache[key] for key in keys), strict=True)
        return torch.stack(mean), torch.stack(std)

    def from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if getattr(self.net, "latents", None) is None else self.net.latents.decode(latents)

    def training_step(self, batch, batch_idx):
        images, captions = batch[0], batch[2]
        loss = self.losses(
            self.to_latents(images),
            self.encode(self.drop_prompts(captions)),
            noise_offset=self.noise_offset,
            snr_gamma=self.snr_gamma,
        )
        self._training_log.step(self, {"train/loss": loss}, images.shape[0])
        return loss

    def drop_prompts(self, captions: Sequence[str]) -> list[str]:
        """Each caption replaced by the empty prompt with probability ``prompt_dropout``."""
        dropped = torch.rand(len(captions)) < self.prompt_dropout
        return ["" if drop else caption for caption, drop in zip(captions, dropped.tolist(), strict=True)]

    def _score(self, batch, batch_idx: int, stage: str) -> None:
        real = (batch[1] != BLANK_LABEL).tolist()
        images = batch[0][torch.tensor(real, dtype=torch.bool, device=batch[0].device)]
        if not len(images):
            return
        captions = [caption for caption, kept in zip(batch[2], real, strict=True) if kept]
        # noise and timesteps fixed by the batch: the score depends on the weights only
        latents = self.to_latents(images, drawn=False)
        loss = self.losses(latents, self.encode(captions), torch.Generator().manual_seed(batch_idx))
        self.log(f"{stage}/loss", loss, batch_size=images.shape[0], sync_dist=True)

    # --- checkpoints ------------------------------------------------------------------------

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Every weight but the frozen pretrained ones, which the net loads from where it found them."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for name in self._frozen:
            state.pop(prefix + name, None)
        return state

    # --- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        seed: int = 0,
        prompts: str | Sequence[str] | None = None,
        negative_prompt: str | None = None,
        sampler: Sampler | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Images in [-1, 1] of ``prompts`` (one for all, or one each), from noise fixed by
        ``seed``; without a prompt, the unconditional model's (the empty prompt's)."""
        sampler = self.sampler if sampler is None else sampler
        steps = self.steps if steps is None else steps
        guidance = self.guidance if guidance is None else guidance
        self._check_sampling(sampler, steps, guidance)
        prompts = drawn_prompts(prompts, num_samples)
        negative = [self.negative_prompt if negative_prompt is None else negative_prompt] * num_samples
        if not any(prompts):
            guidance = 1.0  # the empty prompt against itself: one pass a step gives the same images
        conditioning, null = self.encode(prompts), self.encode(negative)
        drawn = self.draw(num_samples, seed, conditioning, null, sampler, steps, guidance)
        return self.from_latents(drawn).clamp(-1, 1)


def drawn_prompts(prompts: str | Sequence[str] | None, num_samples: int) -> list[str]:
    """One prompt per image: ``prompts`` given once for all, or one each; none is the empty prompt."""
    if prompts is None or isinstance(prompts, str):
        return [prompts or ""] * num_samples
    prompts = list(prompts)
    if len(prompts) != num_samples or not all(isinstance(prompt, str) for prompt in prompts):
        raise ValueError(f"give one prompt for all {num_samples} images, or one each (got {len(prompts)})")
    return prompts


@contextlib.contextmanager
def _for_training():
    """What a cache computes, in validation too (Lightning's inference mode): tensors that training
    may use (an inference-mode tensor can't be saved for a backward pass)."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def _frozen_weights_not_missing(model: TextToImage, incompatible) -> None:
    """A checkpoint without the frozen weights (``state_dict``) loads strictly: they are not missing.
    (A hook, not ``load_state_dict``: it also serves a copy inside another module, an EMA average's.)"""
    incompatible.missing_keys[:] = [
        key for key in incompatible.missing_keys if not any(key.endswith(name) for name in model._frozen)
    ]
