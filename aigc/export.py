"""Write a fine-tuned Stable Diffusion model's LoRA adapters for other tools.

python -m aigc.export run_id=<id> format=diffusers out=pytorch_lora_weights.safetensors   # diffusers' load_lora_weights
python -m aigc.export run_id=<id> format=kohya out=my_lora.safetensors                   # A1111, ComfyUI
python -m aigc.export model_uri=models:/my-style@champion format=kohya

Only the weights are read (tensors only, ``aigc.serving.adapters``): no code from the run, and no base model.
"""

import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from aigc.common.collector import started
from aigc.common.stored import CONFIG_KEY, read_checkpoint
from aigc.jobs.console import entry_point, one_line_errors
from aigc.serving.adapters import DIFFUSERS_FILE, KOHYA_FILE, write_adapters
from aigc.serving.registry import weights_named


def export(cfg: DictConfig) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path, source = weights_named(cfg, folder, "export")
        checkpoint = read_checkpoint(path)
    model_config = checkpoint.get(CONFIG_KEY, {}).get("model", {})
    out = Path(cfg.out or (DIFFUSERS_FILE if cfg.format == "diffusers" else KOHYA_FILE)).resolve()
    try:
        written = write_adapters(checkpoint["state_dict"], model_config, cfg.format, out)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    return f"Wrote the LoRA adapters of {source} in the {cfg.format} format to {written}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    started()
    with one_line_errors():
        print(export(cfg))


if __name__ == "__main__":
    entry_point(main)
