"""A tiny random Stable Diffusion pipeline, saved as a diffusers folder (``save_pretrained``), and a
folder of captioned images to fine-tune it on.

The tests and the benchmarks use it where a user would name ``stable-diffusion-v1-5/stable-diffusion-v1-5``:
nothing is downloaded. Its parts are SD 1.x's (``UNet2DConditionModel``, ``AutoencoderKL`` with
four latent channels and a factor of 8 at ``block_out_channels`` of four levels, ``CLIPTextModel``,
CLIP's real tokenizer, a DDPM scheduler config), only small, as diffusers' own tests build them.
The images are the shapes benchmark's scenes (``aigc.data.scenes``) with their captions.

    python -m tests.helpers.tiny_stable_diffusion <pipeline folder> [<image folder>]
"""

import copy
import json
import sys
from pathlib import Path


def save_tiny_stable_diffusion(
    folder: str | Path,
    unet_channels: tuple[int, ...] = (8, 16),
    prediction_type: str = "epsilon",
    seed: int = 0,
) -> Path:
    """An SD 1.x-shaped pipeline with random weights, in ``folder``; returns it."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from aigc.models.nets.prompts import clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = copy.deepcopy(clip_tokenizer())  # (a shared, cached one)
    tokenizer.model_max_length = 77  # SD's context, which pipelines pad prompts to
    text_width = 32
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    levels = len(unet_channels)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels,
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=text_width,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8, 8, 8),  # four levels: a latent pixel per 8x8 pixels, as SD's
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=64,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        clip_sample=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return Path(folder)


def save_captioned_scenes(folder: str | Path, count: int = 24, resolution: int = 64, seed: int = 0) -> Path:
    """``count`` shapes scenes as PNGs with a ``metadata.jsonl`` of their captions (HF imagefolder's layout)."""
    import numpy as np
    from PIL import Image

    from aigc.data.scenes import render_scenes, training_scenes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = training_scenes(count, seed)
    images = render_scenes(scenes, resolution, np.random.default_rng(seed))
    lines = []
    for index, (image, scene) in enumerate(zip(images, scenes, strict=True)):
        name = f"{index:04d}.png"
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / name)
        lines.append(json.dumps({"file_name": name, "text": scene.caption}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


if __name__ == "__main__":
    print(save_tiny_stable_diffusion(sys.argv[1]))
    if len(sys.argv) > 2:
        print(save_captioned_scenes(sys.argv[2]))
