"""A pretrained Stable Diffusion pipeline's parts, behind the text-to-image nets' interface
(``tokenize``, ``encode``, ``denoise``, ``latents``), for fine-tuning.

The parts are read from a diffusers pipeline folder or hub name (SD 1.x and 2.x:
``StableDiffusionPipeline``): ``UNet2DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel`` with
its ``CLIPTokenizer``, and the scheduler's config, whose noise schedule and prediction type (epsilon
or v) the model trains with. The VAE and the text encoder are frozen. The UNet trains in full, or
through LoRA adapters (Hu et al., 2021; peft's ``LoraConfig``, initialised as diffusers' script
does) on its attention projections; the text encoder may get adapters of its own.

SDXL (two text encoders, size and crop conditioning) is not this code's: its folder is refused.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from aigc.common.hub import load_pretrained
from aigc.models.nets.latents import Latents
from aigc.models.nets.pretrained import LoRA
from aigc.models.nets.prompts import token_ids

PIPELINES = ("StableDiffusionPipeline",)
# the text encoder's attention projections (CLIP's names), as diffusers' scripts adapt them
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class StableDiffusionParts(nn.Module):
    """Args:
    pretrained: a diffusers pipeline folder or hub name.
    image_shape: (C, H, W) of the images it is fine-tuned on; the sides must divide by the VAE's factor.
    lora: adapters on the UNet (rank, alpha, dropout, target_modules); None: the whole UNet trains.
    text_encoder_lora: adapters on the text encoder too (the same rank and alpha).
    gradient_checkpointing: recompute the UNet's activations in the backward pass (less memory, slower).
    """

    def __init__(
        self,
        pretrained: str,
        image_shape: Sequence[int],
        lora: LoRA | None = None,
        text_encoder_lora: bool = False,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if text_encoder_lora and lora is None:
            raise ValueError("model.text_encoder_lora=true needs model.peft=lora (the adapters' rank and alpha)")
        self.pretrained = pretrained
        self.tokenizer, self.text_encoder, vae, self.unet, self.scheduler_config = load_pretrained(
            _read_pipeline, pretrained, "model.pretrained"
        )
        self.latents = Latents(vae)
        self.latent_shape = self.latents.shape(image_shape)
        self.context_length = int(self.tokenizer.model_max_length)
        self.text_encoder.requires_grad_(False)
        self.lora = None if lora is None else {"target_modules": UNET_TARGETS, **lora}
        if self.lora is not None:
            self.unet.requires_grad_(False)
            self.unet.add_adapter(_lora_config(self.lora, self.unet, "model.lora.target_modules"))
        if text_encoder_lora:
            self.text_encoder.add_adapter(_lora_config({**self.lora, "target_modules": TEXT_ENCODER_TARGETS}))
        self.trains_text_encoder = text_encoder_lora
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()

    @property
    def prediction(self) -> str:
        """What the UNet predicts, as its scheduler says: epsilon or v_prediction."""
        return self.scheduler_config.get("prediction_type", "epsilon")

    def train(self, mode: bool = True) -> "StableDiffusionParts":
        super().train(mode)
        if not self.trains_text_encoder:
            self.text_encoder.eval()
        return self

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """(N, context_length) token ids; a prompt too long is refused (``token_ids``)."""
        return token_ids(self.tokenizer, list(prompts), self.context_length).to(self.unet.device)

    def encode(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """The prompts' hidden states (N, context_length, width), which the UNet attends to."""
        return self.text_encoder(input_ids=prompt_ids).last_hidden_state

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy, timesteps, encoder_hidden_states=hidden.to(self.unet.dtype)).sample

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        return self.denoise(noisy, timesteps, self.encode(prompt_ids))


def _read_pipeline(folder: str) -> tuple[CLIPTokenizer, CLIPTextModel, object, UNet2DConditionModel, dict]:
    """The parts of the SD pipeline in ``folder``, or one line on why it is not one."""
    from diffusers import AutoencoderKL, DDPMScheduler

    index_file = Path(folder) / "model_index.json"
    if not index_file.is_file():
        raise ValueError(
            f"model.pretrained={folder} is not a diffusers pipeline (it has no model_index.json): "
            "give a Stable Diffusion 1.x/2.x pipeline's folder or hub name"
        )
    try:
        architecture = json.loads(index_file.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{index_file} is not a diffusers model index (not a JSON object)") from None
    if architecture not in PIPELINES:
        raise ValueError(
            f"model.pretrained={folder} is a {architecture}, which model=stable_diffusion does not fine-tune: "
            f"it takes {', '.join(PIPELINES)} (SD 1.x and 2.x)"
        )
    return (
        CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"),
        AutoencoderKL.from_pretrained(folder, subfolder="vae"),
        UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
        dict(DDPMScheduler.load_config(folder, subfolder="scheduler")),
    )


def _lora_config(lora: LoRA, module: nn.Module | None = None, what: str = ""):
    """peft's ``LoraConfig``, its targets checked against ``module``'s layers first (one line naming ``what``)."""
    from peft import LoraConfig

    targets = list(lora["target_modules"])
    if module is not None:
        names = [name for name, _ in module.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
        if missing:
            raise ValueError(
                f"{what}={targets}: the UNet has no module named {', '.join(missing)} "
                f"(its attention projections are {', '.join(UNET_TARGETS)})"
            )
    rank = int(lora.get("rank", 4))
    return LoraConfig(
        r=rank,
        lora_alpha=float(lora.get("alpha", rank)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        init_lora_weights="gaussian",
        target_modules=targets,
    )
