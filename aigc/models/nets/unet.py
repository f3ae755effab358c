"""The denoiser of a diffusion model: diffusers' ``UNet2DModel``, built from config values.

It is never loaded with ``from_pretrained``: every size is a constructor argument here, so a
run's config rebuilds it, checkpoints hold its weights, and a stored config names this class
(which the allow-list of ``aigc.common.stored`` admits) rather than one of diffusers'.

The net maps noisy images ``x_t`` (N, C, H, W), their timesteps (N,) and, for a
class-conditional model, labels (N,) to a prediction of the same shape as ``x_t`` (the noise,
the velocity or the flow, as the model trains it). Label ``num_classes`` is the null label: the
unconditional prediction that classifier-free guidance needs.
"""

from collections.abc import Sequence

import torch
from diffusers import UNet2DModel
from torch import nn

from aigc.common.constraints import PositiveInt


class UNet(nn.Module):
    """Args:
    image_shape: (C, H, W) of the data.
    channels: the width of each resolution, finest first; each level but the last halves the
        image, so H and W must be divisible by 2 ** (levels - 1).
    layers_per_block: residual blocks per level (each way).
    attention: self-attention in the middle block, at the coarsest resolution.
    norm_groups: groups of the group norms; every width must be a multiple of it.
    num_classes: the labels it is conditioned on (None: unconditional); it learns one more
        embedding, the null label's.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[PositiveInt] = (32, 64, 64),
        layers_per_block: PositiveInt = 1,
        attention: bool = True,
        norm_groups: PositiveInt = 16,
        num_classes: PositiveInt | None = None,
    ):
        super().__init__()
        image_channels, height, width = (int(side) for side in image_shape)
        self.check_arguments(image_shape=image_shape, channels=channels, norm_groups=norm_groups)
        self.num_classes = num_classes
        levels = len(channels)
        self.unet = UNet2DModel(
            sample_size=(height, width),
            in_channels=image_channels,
            out_channels=image_channels,
            block_out_channels=tuple(channels),
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            layers_per_block=layers_per_block,
            add_attention=attention,
            attention_head_dim=channels[-1] // 2 if attention else None,
            norm_num_groups=norm_groups,
            num_class_embeds=None if num_classes is None else num_classes + 1,
        )

    @staticmethod
    def check_arguments(image_shape: Sequence[int], channels: Sequence[int], norm_groups: int, **_) -> None:
        """Every level halves the image but the last; group norms split every width evenly."""
        halvings = 2 ** (len(channels) - 1)
        if any(side % halvings for side in list(image_shape)[1:]):
            raise ValueError(
                f"channels has {len(channels)} levels, which halve the image {len(channels) - 1} times: "
                f"its sides {list(image_shape)[1:]} must be divisible by {halvings}"
            )
        if any(width % norm_groups for width in channels):
            raise ValueError(
                f"every width of channels={list(channels)} must be a multiple of norm_groups={norm_groups}"
            )

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(noisy, timesteps, class_labels=labels).sample
