"""CLIP score (Hessel et al., 2021) of images drawn for prompts, by torchmetrics' ``CLIPScore``: the
mean over image-prompt pairs of 100 x the cosine of CLIP's image and text embeddings, floored at 0.

The CLIP model is any transformers ``CLIPModel`` with its ``CLIPProcessor``, by hub name or
``save_pretrained`` folder (``aigc.common.hub``: a name is found in the local Hugging Face cache
without the network). The score depends on the CLIP model: it is part of what was measured.
"""

import functools

import torch
from torchmetrics.multimodal.clip_score import CLIPScore

from aigc.common.errors import first_line
from aigc.common.hub import PretrainedUnavailable, load_pretrained

SETTING = "metrics.clip_model"  # what a name that can't be loaded is reported as


@torch.no_grad()
def clip_score(
    images: torch.Tensor,
    prompts: list[str],
    clip_model: str,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> float:
    """The CLIP score (0-100) of uint8 ``images`` (N, C, H, W; grey or RGB) drawn for ``prompts``
    (one each), by ``clip_model`` (a hub name or folder), computed ``batch_size`` pairs at a time on ``device``."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"need uint8 images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if len(images) != len(prompts) or not len(images):
        raise ValueError(f"need a prompt for each image, got {len(images)} images and {len(prompts)} prompts")
    model, processor = load_clip(clip_model)
    # every process of a distributed run scores the same images: nothing to gather
    metric = CLIPScore(model_name_or_path=lambda: (model, processor), sync_on_compute=False).to(device)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        metric.update(batch.expand(-1, 3, -1, -1), list(prompts[start : start + batch_size]))
    return float(metric.compute())


@functools.cache
def load_clip(name: str, setting: str = SETTING) -> tuple[torch.nn.Module, object]:
    """The CLIP model (in eval mode) and processor of ``name``, loaded once per process; a name that
    is neither a folder nor cached nor reachable, or names another kind of model, is refused in one
    line naming ``setting``."""
    from transformers import AutoConfig, CLIPModel, CLIPProcessor

    def load(folder: str):
        try:
            # transformers would build another model type's folder into a CLIPModel of random weights
            if (kind := AutoConfig.from_pretrained(folder).model_type) != "clip":
                raise ValueError(f"its config is a {kind} model's")
            return CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
        except (OSError, ValueError) as error:  # another model, or a folder without all the files
            raise PretrainedUnavailable(
                f"{setting}={name}: not a CLIP model with its processor (save_pretrained of CLIPModel and "
                f"CLIPProcessor): {first_line(error)}"
            ) from None

    model, processor = load_pretrained(load, name, setting)
    return _ProjectedFeatures(model), processor


class _ProjectedFeatures(torch.nn.Module):
    """A ``CLIPModel`` whose ``get_image_features`` and ``get_text_features`` return the projected
    embeddings as tensors, as torchmetrics 1.9 reads them: transformers 5 returns them inside a
    ``ModelOutput`` (its ``pooler_output``), which torchmetrics 1.9 fails on
    (Lightning-AI/torchmetrics#3407, fixed after 1.9.0)."""

    def __init__(self, clip: torch.nn.Module):
        super().__init__()
        self.clip = clip
        self.config = clip.config  # torchmetrics reads the text encoder's context length here

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _embedding(self.clip.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return _embedding(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def _embedding(features) -> torch.Tensor:
    return features if isinstance(features, torch.Tensor) else features.pooler_output
