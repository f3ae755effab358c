"""Sample any trained model: a PNG grid from an image model, text from a language model.

python -m aigc.sample run_id=<id>                        # the run's MLflow model
python -m aigc.sample run_id=<id> prompt="two red circles" guidance=3 out=x.png   # a text-to-image model
python -m aigc.sample model_uri=models:/mnist-gan@champion num_samples=64 seed=0 out=samples.png
python -m aigc.sample ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt prompt="def " temperature=0

The model is read from its weights alone (``aigc.serving.generator``): none of a model folder's code runs.
"""

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from aigc.common.collector import started
from aigc.jobs.console import entry_point, one_line_errors

if TYPE_CHECKING:
    from aigc.serving.generator import Generator

# torch, Lightning, MLflow: imported by the functions that use them, so that `--help` and a
# refused override answer in about a second, as aigc.run's do (tests/test_layers.py)

# what only one kind of model takes (null when not given): the other kind refuses it (a prompt is
# both kinds': a language model continues it, a text-to-image model draws it)
IMAGE_OPTIONS = ("num_samples", "out", "label", "negative_prompt", "sampler", "steps", "guidance")
TEXT_OPTIONS = ()
DEFAULT_NUM_SAMPLES = 64
# how a model draws images, beyond the count, the seed and the label (a diffusion model's): null is the model's own
SAMPLING_OPTIONS = ("sampler", "steps", "guidance")


def load_generator(cfg: DictConfig, folder: str) -> "Generator":
    """The model that ``run_id``, ``model_uri`` or ``ckpt_path`` names (exactly one of them)."""
    from aigc.serving.generator import Generator
    from aigc.serving.registry import weights_named

    path, source = weights_named(cfg, folder, "sample")
    return Generator.from_file(path, source)


def sample(cfg: DictConfig) -> str:
    """Text, or the path of the PNG grid written."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no progress bars
    with tempfile.TemporaryDirectory() as folder:
        generator = load_generator(cfg, folder)
    wrong = [key for key in (TEXT_OPTIONS if generator.kind == "images" else IMAGE_OPTIONS) if cfg.get(key) is not None]
    if wrong:
        raise ValueError(
            f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not for {generator.source}, which generates "
            f"{generator.kind}: it takes {'num_samples, out, seed' if generator.kind == 'images' else 'a prompt'}"
        )
    if generator.kind == "text":
        return generator.text(
            "\n" if cfg.prompt is None else cfg.prompt,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            seed=cfg.seed,
        )
    import torch
    from torchvision.utils import save_image

    options = {key: cfg[key] for key in SAMPLING_OPTIONS if cfg.get(key) is not None}
    num_samples = DEFAULT_NUM_SAMPLES if cfg.num_samples is None else cfg.num_samples
    drawn = generator.images(
        num_samples, seed=cfg.seed, label=cfg.label, prompt=cfg.prompt, negative_prompt=cfg.negative_prompt, **options
    )
    images = torch.from_numpy(drawn).permute(0, 3, 1, 2)
    out = Path(cfg.out or "samples.png").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float() / 255, out, nrow=max(1, round(len(images) ** 0.5)))
    asked = [("label", cfg.label), ("prompt", cfg.prompt), ("negative prompt", cfg.negative_prompt), *options.items()]
    what = ", ".join(
        f"{key} {value!r}" if "prompt" in key else f"{key} {value}" for key, value in asked if value is not None
    )
    return f"Wrote {len(images)} samples (seed {cfg.seed}{', ' + what if what else ''}) to {out}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    started()
    with one_line_errors():
        print(sample(cfg))


if __name__ == "__main__":
    entry_point(main)
