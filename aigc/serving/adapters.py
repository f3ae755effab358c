"""A fine-tuned Stable Diffusion model's LoRA adapters as the files other tools load.

- ``diffusers``: ``pytorch_lora_weights.safetensors``, keys ``unet.…`` (and ``text_encoder.…``),
  with the LoRA config in its metadata, so that an alpha other than the rank loads right
  (``StableDiffusionPipeline.load_lora_weights``).
- ``kohya``: keys ``lora_unet_…`` / ``lora_te_…`` with ``.lora_down``, ``.lora_up`` and ``.alpha``, the
  format A1111 and ComfyUI read.

Both are converted with diffusers' own utilities from the adapters a checkpoint holds (peft's
``…lora_A.default.weight`` under ``net.unet.`` and ``net.text_encoder.``); the base model is not needed.
"""

import tempfile
from pathlib import Path

import torch

FORMATS = ("diffusers", "kohya")
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
KOHYA_FILE = "lora_kohya.safetensors"
PARTS = {"unet": "net.unet.", "text_encoder": "net.text_encoder."}


def adapters(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """peft's adapter weights of each part that has them, ``{"unet": {"down_blocks.0….lora_A.weight": …}}``."""
    found = {}
    for part, prefix in PARTS.items():
        weights = {
            key.removeprefix(prefix).replace(".default.", "."): value.detach().float().contiguous()
            for key, value in state_dict.items()
            if key.startswith(prefix) and (".lora_A." in key or ".lora_B." in key)
        }
        if weights:
            found[part] = weights
    return found


def lora_settings(model_config: dict, weights: dict[str, torch.Tensor]) -> tuple[int, float]:
    """(rank, alpha): the rank from the weights, alpha as the run configured it (peft: the rank by default)."""
    rank = next(value.shape[0] for key, value in weights.items() if ".lora_A." in key)
    alpha = (model_config.get("lora") or {}).get("alpha")
    return rank, float(rank if alpha is None else alpha)


def write_adapters(state_dict: dict, model_config: dict, form: str, out: str | Path) -> Path:
    """Write the adapters in ``form`` (``FORMATS``) to the file ``out``; one line if there are none."""
    found = adapters(state_dict)
    if "unet" not in found:
        raise ValueError("this model has no LoRA adapters to write (it was trained with model.peft=none, or is not SD)")
    if form not in FORMATS:
        raise ValueError(f"format={form!r}: use one of {', '.join(FORMATS)}")
    rank, alpha = lora_settings(model_config, found["unet"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (_write_diffusers if form == "diffusers" else _write_kohya)(found, rank, alpha, out)
    return out


def _write_diffusers(found: dict, rank: int, alpha: float, out: Path) -> None:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    layers, metadata = {}, {}
    for part, weights in found.items():
        layers[f"{part}_lora_layers"] = convert_state_dict_to_diffusers(weights)
        metadata[f"{part}_lora_adapter_metadata"] = _peft_config(weights, rank, alpha)
    with tempfile.TemporaryDirectory() as staging:
        StableDiffusionPipeline.save_lora_weights(staging, **layers, **metadata, safe_serialization=True)
        Path(staging, DIFFUSERS_FILE).replace(out)


def _peft_config(weights: dict, rank: int, alpha: float) -> dict:
    """The LoRA config as peft writes it, which ``load_lora_weights`` reads back from the metadata."""
    from peft import LoraConfig

    targets = sorted({key.split(".lora_")[0] for key in weights})  # every adapted module, by its full name
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights="gaussian").to_dict()


def _write_kohya(found: dict, rank: int, alpha: float, out: Path) -> None:
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import save_file

    peft_keys = {f"{part}.{key}": value for part, weights in found.items() for key, value in weights.items()}
    kohya = convert_state_dict_to_kohya(peft_keys)
    for key in kohya:
        if key.endswith(".alpha"):  # diffusers writes the rank here, which is right only for alpha = rank
            kohya[key] = torch.tensor(alpha)
    # SD 1.x/2.x's one text encoder is kohya's lora_te (lora_te1 is SDXL's first)
    kohya = {key.replace("lora_te1_", "lora_te_", 1): value.contiguous() for key, value in kohya.items()}
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha)}
    save_file(kohya, str(out), metadata=metadata)
