"""The samples one evaluation scores, drawn once for every callback that scores them (FID, IS and
KID; label accuracy): drawing them is the largest part of a diffusion model's evaluation."""

from dataclasses import dataclass

import torch

from aigc.common.capabilities import ConditionedOnText
from aigc.metrics.images import to_uint8

_CACHE = "_aigc_evaluation_samples"  # on the module: (what was drawn, the samples), the last evaluation's


@dataclass(frozen=True)
class Samples:
    images: torch.Tensor  # uint8 (N, C, H, W), on the CPU
    labels: torch.Tensor | None  # (N,): the label each image was drawn for; None for an unconditional model
    prompts: list[str] | None = None  # the prompt each image was drawn for (a text-to-image model)


def evaluation_samples(trainer, pl_module, num_samples: int, seed: int, batch_size: int) -> Samples:
    """``num_samples`` images: batch ``i`` from seed ``seed + i``, so the same weights give the same
    images on any device; a class-conditional model (``num_classes``) draws every class in turn, a
    text-to-image model the data's validation captions in turn (what the reference images show).
    Generated as the model computes in training (under bf16-mixed: autocast), once per evaluation
    (the trainer's step and stage, the model's sampling options) whichever callback asks first."""
    options = getattr(pl_module, "sampling_options", None)  # a diffusion model's sampler, steps, guidance
    drawn = (trainer.global_step, str(trainer.state.stage), num_samples, seed, batch_size, repr(options))
    cached = getattr(pl_module, _CACHE, None)
    if cached is not None and cached[0] == drawn:
        return cached[1]
    classes = getattr(pl_module, "num_classes", None)
    captions = trainer.datamodule.captions("val") if isinstance(pl_module, ConditionedOnText) else None
    prompts = None if captions is None else [captions[index % len(captions)] for index in range(num_samples)]
    images, labels = [], []
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        for index, start in enumerate(range(0, num_samples, batch_size)):
            count = min(batch_size, num_samples - start)
            if classes:
                labels.append(torch.arange(start, start + count) % classes)
                batch = pl_module.sample(count, seed=seed + index, labels=labels[-1])
            elif prompts:
                batch = pl_module.sample(count, seed=seed + index, prompts=prompts[start : start + count])
            else:
                batch = pl_module.sample(count, seed=seed + index)
            images.append(to_uint8(batch).cpu())
    samples = Samples(torch.cat(images), torch.cat(labels) if labels else None, prompts)
    setattr(pl_module, _CACHE, (drawn, samples))
    return samples
