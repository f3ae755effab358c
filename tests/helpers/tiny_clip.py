"""A tiny random CLIP model and its processor, saved as a pretrained folder (``save_pretrained``).

The tests use it where a user would name ``openai/clip-vit-base-patch32`` for ``metrics.clip_model``:
nothing is downloaded. Its parts are CLIP's (``CLIPModel``, CLIP's real tokenizer rebuilt from
open_clip's shipped merges, ``CLIPImageProcessor``), only small: a 32x32 image in 8x8 patches.

    python -m tests.helpers.tiny_clip <folder>
"""

import copy
import sys
from pathlib import Path


def save_tiny_clip(folder: str | Path, width: int = 16, image_size: int = 32, seed: int = 0) -> Path:
    """A CLIP model with random weights and its processor, in ``folder``; returns it."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from aigc.models.nets.prompts import clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = copy.deepcopy(clip_tokenizer())  # (a shared, cached one)
    tokenizer.model_max_length = 77
    tower = {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**tower, "image_size": image_size, "patch_size": 8},
        projection_dim=width,
    )
    images = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    folder = Path(folder)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(save_tiny_clip(sys.argv[1]))
