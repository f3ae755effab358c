"""A pretrained Stable Diffusion model fine-tuned on captioned images, with LoRA adapters or in
full, as a LightningModule: the text-to-image model of ``aigc.models.text_to_image`` on the parts of
a diffusers pipeline (``aigc.models.nets.stable_diffusion``).

    python -m aigc.run model=stable_diffusion model.pretrained=<pipeline folder or hub name> \\
        data=image_folder data.path=<captioned images> data.resolution=512

What it takes from the pipeline: the noise schedule and the prediction type (epsilon or v) of its
scheduler's config, the VAE (frozen: the UNet denoises latents), the text encoder (frozen, or
with adapters) and the tokenizer. The UNet trains through LoRA adapters (``peft=lora``) or in
full (``peft=none``). Training may weight the loss by min-SNR-gamma and add offset noise
(``Diffusion.losses``); ``val/loss`` is the plain loss at fixed noise and timesteps, comparable
between runs. Checkpoints and the MLflow model hold what trained (the adapters): the base is
loaded from ``pretrained`` again, and a base that can't be found is refused in one line.
"""

from collections.abc import Callable
from typing import Literal

import torch

from aigc.common.constraints import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from aigc.models.diffusion import Sampler
from aigc.models.nets.pretrained import LoRA
from aigc.models.nets.stable_diffusion import StableDiffusionParts
from aigc.models.text_to_image import TextToImage

# the keys of a scheduler's config that make its noise schedule
SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")


class StableDiffusion(TextToImage):
    """Args:
    pretrained: a diffusers pipeline folder or hub name (SD 1.x, 2.x).
    optimizer: a partial of the optimizer (``_partial_: true``), over what trains.
    image_shape: (C, H, W) of the data; the sides must divide by the VAE's factor (8 for SD).
    captions: where the data's captions come from (data without captions can't train it).
    peft: ``lora`` trains adapters on the UNet (``lora``: rank, alpha, dropout, target_modules);
        ``none`` (or null) trains the whole UNet.
    text_encoder_lora: adapters on the text encoder as well.
    gradient_checkpointing: recompute the UNet's activations in the backward pass.
    snr_gamma: min-SNR-gamma loss weighting (null: off; 5 is the paper's).
    noise_offset: offset noise's scale (0: off; 0.05-0.1 is usual).
    cache_latents: latents and text embeddings computed once per distinct image and caption.
    The rest are the text-to-image model's.
    """

    family = "stable_diffusion"
    trains_on_any_image_size = True  # its UNet takes latents of any size the VAE makes (data.buckets)

    def __init__(
        self,
        pretrained: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        image_shape: list[int],
        captions: str | None = None,
        peft: Literal["lora", "none"] | None = "lora",
        lora: LoRA | None = None,
        text_encoder_lora: bool = False,
        gradient_checkpointing: bool = False,
        snr_gamma: PositiveFloat | None = None,
        noise_offset: NonNegativeFloat = 0.0,
        cache_latents: bool = False,
        prompt_dropout: Probability = 0.0,
        negative_prompt: str = "",
        sampler: Sampler = "dpm++",
        steps: PositiveInt = 25,
        guidance: NonNegativeFloat = 7.5,
    ):
        self.check_arguments(captions=captions, peft=peft, text_encoder_lora=text_encoder_lora)
        net = StableDiffusionParts(
            pretrained,
            image_shape,
            lora=(lora or {}) if peft == "lora" else None,
            text_encoder_lora=text_encoder_lora,
            gradient_checkpointing=gradient_checkpointing,
        )
        if net.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"model.pretrained={pretrained} predicts {net.prediction!r}: this takes epsilon or v")
        super().__init__(
            net,
            optimizer,
            image_shape,
            captions=captions,
            prompt_dropout=prompt_dropout,
            negative_prompt=negative_prompt,
            prediction=net.prediction,
            num_train_timesteps=int(net.scheduler_config.get("num_train_timesteps", 1000)),
            sampler=sampler,
            steps=steps,
            guidance=guidance,
            snr_gamma=snr_gamma,
            noise_offset=noise_offset,
            cache_latents=cache_latents,
        )

    @classmethod
    def check_arguments(cls, captions: str | None = None, peft: str | None = "lora", text_encoder_lora=False, **_):
        if captions in (None, "none"):
            raise ValueError(f"model={cls.family} learns from captions, and this data has none: use captioned data")
        if text_encoder_lora and peft != "lora":
            raise ValueError("model.text_encoder_lora=true needs model.peft=lora (the adapters' rank and alpha)")

    def schedule_settings(self) -> dict:
        """The pipeline's own noise schedule (SD's: scaled_linear betas from 0.00085 to 0.012)."""
        config = self.net.scheduler_config
        return {key: config[key] for key in SCHEDULE_KEYS if config.get(key) is not None}

    def configure_optimizers(self):
        return self.optimizer(params=[weight for weight in self.parameters() if weight.requires_grad])

    def on_fit_start(self) -> None:
        # how much of the model trains (with LoRA, a small fraction): params of the run
        if self.logger is not None:
            weights = list(self.parameters())
            self.logger.log_hyperparams(
                {
                    "params_total": sum(w.numel() for w in weights),
                    "params_trainable": sum(w.numel() for w in weights if w.requires_grad),
                }
            )
