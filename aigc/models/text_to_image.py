"""A diffusion model that draws what a prompt says (Rombach et al., 2022; Saharia et al., 2022), as a
LightningModule: the diffusion model of ``aigc.models.diffusion`` with a sentence in place of a label.

The net (``aigc.models.nets.prompt_unet.PromptUNet``) encodes the prompt with a CLIP text encoder
and its UNet attends to the hidden states. Training is the diffusion model's (the same
predictions, noise schedule and samplers); a caption is replaced by the empty prompt with
probability ``prompt_dropout``, which teaches the unconditional prediction that classifier-free
guidance (Ho & Salimans, 2022) contrasts the prompt with. At sampling, guidance pushes away from
the empty prompt, or from a ``negative_prompt``.

Batches are the captioned datamodules' ``(images, labels, captions)``: the labels only mark the
blank padding of evaluation batches under DDP.
"""

from collections.abc import Callable, Sequence

import torch
from torch import nn

from aigc.common.constraints import NonNegativeFloat, PositiveInt, Probability
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
    The rest are the diffusion model's (``aigc.models.diffusion.Diffusion``).
    """

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
    ):
        self.check_arguments(prediction=prediction, sampler=sampler, steps=steps, captions=captions)
        super().__init__(
            net,
            optimizer,
            image_shape,
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

    @staticmethod
    def check_arguments(prediction: str, sampler: str, steps: int, captions: str | None = None, **_) -> None:
        Diffusion.check_arguments(prediction=prediction, sampler=sampler, steps=steps)
        if captions in (None, "none"):
            raise ValueError("model=text_to_image learns from captions, and this data has none: use captioned data")

    def check_data(self, datamodule) -> None:
        """Before a run exists: every training image has a caption, and every caption fits the text encoder."""
        if not getattr(datamodule, "captioned", False):
            missing = getattr(datamodule, "uncaptioned", None)
            which = f" ({missing[0]} has none)" if missing else ""
            raise ValueError(
                f"model=text_to_image learns from captions, and {datamodule.name} serves none{which}: add a "
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
        return self.net.encode(self.net.tokenize(prompts))

    def training_step(self, batch, batch_idx):
        images, captions = batch[0], batch[2]
        loss = self.losses(images, self.encode(self.drop_prompts(captions)))
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
        loss = self.losses(images, self.encode(captions), torch.Generator().manual_seed(batch_idx))
        self.log(f"{stage}/loss", loss, batch_size=images.shape[0], sync_dist=True)

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
        return self.draw(num_samples, seed, conditioning, null, sampler, steps, guidance)


def drawn_prompts(prompts: str | Sequence[str] | None, num_samples: int) -> list[str]:
    """One prompt per image: ``prompts`` given once for all, or one each; none is the empty prompt."""
    if prompts is None or isinstance(prompts, str):
        return [prompts or ""] * num_samples
    prompts = list(prompts)
    if len(prompts) != num_samples or not all(isinstance(prompt, str) for prompt in prompts):
        raise ValueError(f"give one prompt for all {num_samples} images, or one each (got {len(prompts)})")
    return prompts
