"""How often generated images show what their prompts ask for, by category (GenEval's measure, on
the shapes scenes of ``aigc.data.scenes``, read by the shipped verifier)."""

from collections import defaultdict

import torch

from aigc.common.scenes import CATEGORIES, EvaluationPrompt, satisfies
from aigc.metrics import shapes_verifier


def prompt_accuracy(images: torch.Tensor, prompts: list[EvaluationPrompt]) -> dict[str, float]:
    """``{"prompt_acc": overall, "prompt_acc_<category>": ...}`` for uint8 ``images`` (N, 3, H, W),
    image i drawn for ``prompts[i]``.

    A category's accuracy is the share of its images that the verifier reads as their prompt says
    (``scenes.satisfies``: the objects, colours, count and relation, and nothing else). The
    overall accuracy is the mean over the categories present, as GenEval's: each category counts
    the same whatever its number of prompts or images.
    """
    if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4):
        raise TypeError(f"images must be a uint8 tensor (N, 3, H, W), got {getattr(images, 'dtype', type(images))}")
    if len(images) != len(prompts) or not len(prompts):
        raise ValueError(f"need one prompt per image, got {len(images)} images and {len(prompts)} prompts")
    right, total = defaultdict(int), defaultdict(int)
    for things, prompt in zip(shapes_verifier.detect(images), prompts, strict=True):
        total[prompt.category] += 1
        right[prompt.category] += satisfies(things, prompt)
    by_category = {category: right[category] / total[category] for category in CATEGORIES if category in total}
    return {"prompt_acc": sum(by_category.values()) / len(by_category)} | {
        f"prompt_acc_{category}": accuracy for category, accuracy in by_category.items()
    }
