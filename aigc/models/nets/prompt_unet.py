"""The denoiser of a text-to-image diffusion model: diffusers' ``UNet2DConditionModel``, which reads a
prompt through cross-attention (Rombach et al., 2022), and the text encoder that turns the prompt
into the hidden states it attends to.

The text encoder is transformers' ``CLIPTextModel``: built from config values and trained with
the UNet, or pretrained (a hub name or a folder, a Stable Diffusion folder's ``text_encoder`` and
``tokenizer`` included) and frozen. The tokenizer is CLIP's (``aigc.models.nets.prompts``), or the
pretrained encoder's own. As ``aigc.models.nets.unet``, every size is a constructor argument: a
run's config rebuilds the net and checkpoints hold its weights.

``forward(noisy, timesteps, prompt_ids)`` predicts from token ids; sampling encodes a prompt once
(``encode``) and denoises from its hidden states at every step (``denoise``).
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from aigc.common.constraints import PositiveInt
from aigc.common.hub import load_pretrained
from aigc.models.nets.latents import Latents
from aigc.models.nets.prompts import clip_tokenizer, token_ids


class PromptUNet(nn.Module):
    """Args:
    image_shape: (C, H, W) of what it denoises (the data's images, or their latents).
    channels: the width of each resolution, finest first; each level but the last halves the image.
    cross_attention: per level, whether its blocks attend to the prompt (the middle block always does).
    layers_per_block: residual blocks per level (each way).
    attention_heads: heads of every attention layer; every width must be a multiple of it.
    norm_groups: groups of the group norms; every width must be a multiple of it.
    text_width, text_layers, text_heads: the text encoder built here (CLIP's architecture).
    context_length: the tokens it reads, start and end included (CLIP's is 77).
    pretrained_text_encoder: a hub name or folder to load a frozen CLIPTextModel (and its
        tokenizer) from instead; the sizes above are then its own.
    autoencoder: a hub name or folder of a pretrained ``AutoencoderKL`` (a Stable Diffusion
        folder's ``vae/`` included): the UNet then denoises its latents (``latents``), not pixels.
    coordinates: give the UNet each pixel's row and column as two more input channels (CoordConv,
        Liu et al., 2018). Its convolutions and attention see positions only through the border's
        padding otherwise, and a prompt may say where things go ("left of", "above").
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[PositiveInt] = (32, 64, 64),
        cross_attention: Sequence[bool] = (False, True, True),
        layers_per_block: PositiveInt = 1,
        attention_heads: PositiveInt = 4,
        norm_groups: PositiveInt = 16,
        text_width: PositiveInt = 64,
        text_layers: PositiveInt = 2,
        text_heads: PositiveInt = 4,
        context_length: PositiveInt = 24,
        pretrained_text_encoder: str | None = None,
        autoencoder: str | None = None,
        coordinates: bool = False,
    ):
        super().__init__()
        self.check_arguments(
            image_shape=image_shape,
            channels=channels,
            cross_attention=cross_attention,
            attention_heads=attention_heads,
            norm_groups=norm_groups,
            text_width=text_width,
            text_heads=text_heads,
            context_length=context_length,
        )
        self.latents = None if autoencoder is None else Latents.pretrained(autoencoder, "model.net.autoencoder")
        self.latent_shape = tuple(image_shape) if self.latents is None else self.latents.shape(image_shape)
        if self.latents is not None:
            self.check_arguments(
                self.latent_shape, channels, cross_attention, attention_heads, norm_groups, text_width, text_heads, 3
            )
        image_channels, height, width = self.latent_shape
        if pretrained_text_encoder is None:
            self.tokenizer = clip_tokenizer()
            self.text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=len(self.tokenizer),
                    hidden_size=text_width,
                    intermediate_size=4 * text_width,
                    num_hidden_layers=text_layers,
                    num_attention_heads=text_heads,
                    max_position_embeddings=context_length,
                    bos_token_id=self.tokenizer.bos_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            )
        else:
            self.tokenizer, self.text_encoder = _pretrained(pretrained_text_encoder)
            self.text_encoder.requires_grad_(False)
            context_length = min(context_length, self.text_encoder.config.max_position_embeddings)
        self.context_length = context_length
        self.trains_text_encoder = pretrained_text_encoder is None
        self.coordinates = coordinates
        down = ["CrossAttnDownBlock2D" if attends else "DownBlock2D" for attends in cross_attention]
        up = ["CrossAttnUpBlock2D" if attends else "UpBlock2D" for attends in reversed(cross_attention)]
        self.unet = UNet2DConditionModel(
            sample_size=(height, width),
            in_channels=image_channels + (2 if coordinates else 0),
            out_channels=image_channels,
            block_out_channels=tuple(channels),
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_groups,
            cross_attention_dim=self.text_encoder.config.hidden_size,
            # diffusers' UNet2DConditionModel reads attention_head_dim as the number of heads
            attention_head_dim=attention_heads,
        )
        # channels-last convolutions: a training step in two thirds of the time on a CPU (measured, 32x32)
        self.unet.to(memory_format=torch.channels_last)

    @staticmethod
    def check_arguments(
        image_shape: Sequence[int],
        channels: Sequence[int],
        cross_attention: Sequence[bool],
        attention_heads: int,
        norm_groups: int,
        text_width: int,
        text_heads: int,
        context_length: int,
        **_,
    ) -> None:
        """Every level halves the image but the last; norms and heads split every width evenly."""
        if len(cross_attention) != len(channels):
            raise ValueError(
                f"cross_attention={list(cross_attention)} needs one entry per level of channels={list(channels)}"
            )
        halvings = 2 ** (len(channels) - 1)
        if any(side % halvings for side in list(image_shape)[1:]):
            raise ValueError(
                f"channels has {len(channels)} levels, which halve the image {len(channels) - 1} times: "
                f"its sides {list(image_shape)[1:]} must be divisible by {halvings}"
            )
        for what, divisor in (("norm_groups", norm_groups), ("attention_heads", attention_heads)):
            if any(width % divisor for width in channels):
                raise ValueError(f"every width of channels={list(channels)} must be a multiple of {what}={divisor}")
        if text_width % text_heads:
            raise ValueError(f"text_width={text_width} must be a multiple of text_heads={text_heads}")
        if context_length < 3:
            raise ValueError(f"context_length={context_length} holds no prompt: start and end take two tokens")

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """(N, context_length) token ids, on the net's device; a prompt too long is refused (``token_ids``)."""
        return token_ids(self.tokenizer, list(prompts), self.context_length).to(self.unet.device)

    def encode(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """The prompts' hidden states (N, context_length, width), which the UNet attends to."""
        return self.text_encoder(input_ids=prompt_ids).last_hidden_state

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        if self.coordinates:
            noisy = torch.cat([noisy, _coordinates(noisy)], dim=1)
        noisy = noisy.contiguous(memory_format=torch.channels_last)
        return self.unet(noisy, timesteps, encoder_hidden_states=hidden).sample.contiguous()

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        return self.denoise(noisy, timesteps, self.encode(prompt_ids))


def _coordinates(images: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W): each pixel's row and column, from -1 to 1."""
    n, _, height, width = images.shape
    rows = torch.linspace(-1, 1, height, device=images.device, dtype=images.dtype).view(1, 1, height, 1)
    cols = torch.linspace(-1, 1, width, device=images.device, dtype=images.dtype).view(1, 1, 1, width)
    return torch.cat([rows.expand(n, 1, height, width), cols.expand(n, 1, height, width)], dim=1)


def _pretrained(name: str) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """A CLIP text encoder and its tokenizer from a folder, the Hugging Face cache or the hub
    (``aigc.common.hub``), a Stable Diffusion pipeline's layout (``text_encoder/``, ``tokenizer/``) included."""

    def load(folder: str) -> tuple[CLIPTokenizer, CLIPTextModel]:
        layout = (Path(folder) / "text_encoder").is_dir()
        return (
            CLIPTokenizer.from_pretrained(folder, **({"subfolder": "tokenizer"} if layout else {})),
            CLIPTextModel.from_pretrained(folder, **({"subfolder": "text_encoder"} if layout else {})),
        )

    return load_pretrained(load, name, "model.net.pretrained_text_encoder")
