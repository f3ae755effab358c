"""Stable Diffusion fine-tuning on a tiny random SD 1.x-shaped pipeline built here (as diffusers'
own tests build theirs): the pipeline's schedule and prediction type, adapters that alone train
and alone are kept, the LoRA files that diffusers and A1111/ComfyUI load (diffusers' pipeline draws
what aigc draws with them), min-SNR weights as the anchors compute them, the cache, and every bad
input refused in one line. The real configs, in this process."""

import json
import re
import shutil

import pytest
import torch
from hydra.utils import instantiate

from aigc.common.errors import one_line
from aigc.config.validation import validate
from aigc.models.stable_diffusion import StableDiffusion
from aigc.serving.adapters import write_adapters
from aigc.serving.generator import Generator
from aigc.serving.pyfunc import save_pyfunc
from tests.conftest import tiny_stable_diffusion
from tests.helpers.tiny_stable_diffusion import save_tiny_stable_diffusion

SD = ("model=stable_diffusion", "data=shapes", "model.steps=3")


def tiny(compose_cfg, *overrides: str, pretrained: str | None = None) -> StableDiffusion:
    cfg = compose_cfg(*SD, f"model.pretrained={pretrained or tiny_stable_diffusion()}", *overrides)
    return instantiate(cfg.model, _convert_="all").eval()


def with_trained_adapters(model: StableDiffusion, seed: int = 0) -> StableDiffusion:
    """Adapters as training leaves them: lora_B starts at zero (no change), so give it values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.copy_(0.5 * torch.randn(weight.shape, generator=generator))
    return model


def test_the_schedule_and_prediction_type_are_the_pipelines(compose_cfg, tmp_path):
    from diffusers import DDPMScheduler

    folder = save_tiny_stable_diffusion(tmp_path / "v", prediction_type="v_prediction")
    model = tiny(compose_cfg, pretrained=str(folder))
    theirs = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    assert model.prediction == "v_prediction"
    assert torch.allclose(model.noise_schedule.alphas_cumprod, theirs.alphas_cumprod)
    assert model.image_shape == (4, 4, 4)  # 32x32 scenes: the VAE's 4 channels at an eighth of the side


def test_only_the_adapters_train_and_checkpoints_keep_only_them(compose_cfg):
    model = tiny(compose_cfg, "model.lora.rank=2")
    trained = [name for name, weight in model.named_parameters() if weight.requires_grad]
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)
    assert all(name.startswith("net.unet.") for name in trained)
    state = with_trained_adapters(model).state_dict()
    assert sorted(state) == sorted(trained)
    fresh = tiny(compose_cfg, "model.lora.rank=2")
    fresh.load_state_dict(state)  # strict: the frozen base is not "missing"
    assert all(torch.equal(fresh.state_dict()[key], state[key]) for key in state)
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict({key: value for key, value in state.items() if key != trained[0]})
    full = tiny(compose_cfg, "model.peft=none")
    assert set(full.state_dict()) == {f"net.unet.{key}" for key in full.net.unet.state_dict()}


def test_the_diffusers_file_loads_in_a_pipeline_which_then_draws_what_aigc_draws(compose_cfg, tmp_path):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    model = with_trained_adapters(tiny(compose_cfg, "model.lora.rank=4", "model.lora.alpha=8"))
    config = {"lora": {"rank": 4, "alpha": 8}}
    path = write_adapters(model.state_dict(), config, "diffusers", tmp_path / "pytorch_lora_weights.safetensors")

    pipeline = StableDiffusionPipeline.from_pretrained(tiny_stable_diffusion())
    pipeline.set_progress_bar_config(disable=True)
    # aigc's sampler: DPM-Solver++ 2M, trailing timesteps
    pipeline.scheduler = DPMSolverMultistepScheduler.from_config(
        pipeline.scheduler.config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing"
    )
    noise = torch.randn((1, *model.image_shape), generator=torch.Generator().manual_seed(3))

    def theirs():
        images = pipeline(
            "a red circle", latents=noise, num_inference_steps=3, guidance_scale=5.0, height=32, width=32
        ).images
        return torch.from_numpy(pipeline.image_processor.pil_to_numpy(images)).permute(0, 3, 1, 2)

    base = theirs()
    pipeline.load_lora_weights(str(path))
    adapted = theirs()
    ours = (model.sample(1, seed=3, prompts="a red circle", steps=3, guidance=5.0) + 1) / 2
    assert (adapted - base).abs().max() > 0.01  # the adapters change what it draws ...
    assert (adapted - ours).abs().max() < 2 / 255  # ... into what aigc draws (alpha 8 over rank 4 included)


def test_the_kohya_file_has_the_keys_a1111_matches_and_the_runs_alpha(compose_cfg, tmp_path):
    from safetensors import safe_open

    model = with_trained_adapters(tiny(compose_cfg, "model.lora.rank=2", "model.lora.alpha=6"))
    path = write_adapters(model.state_dict(), {"lora": {"alpha": 6}}, "kohya", tmp_path / "lora.safetensors")
    with safe_open(str(path), framework="pt") as file:
        keys = list(file.keys())
        alphas = {file.get_tensor(key).item() for key in keys if key.endswith(".alpha")}
        metadata = file.metadata()
    # A1111's networks.convert_diffusers_name_to_compvis matches these
    a1111 = re.compile(r"lora_unet_(down_blocks|up_blocks)_\d+_attentions_\d+_.+|lora_unet_mid_block_attentions_\d+_.+")
    modules = {key.split(".")[0] for key in keys}
    assert modules and all(a1111.fullmatch(module) for module in modules)
    assert all(re.fullmatch(r".+_to_(q|k|v|out_0)", module) for module in modules)
    assert sorted(keys) == sorted(
        f"{m}.{part}" for m in modules for part in ("alpha", "lora_down.weight", "lora_up.weight")
    )
    assert alphas == {6.0} and metadata["ss_network_dim"] == "2"


def test_min_snr_weights_are_those_of_diffusers_scripts(compose_cfg):
    from diffusers.training_utils import compute_snr

    model = tiny(compose_cfg)
    timesteps = torch.tensor([0, 10, 300, 999])
    snr = compute_snr(model.noise_schedule, timesteps)
    expected = torch.minimum(snr, torch.full_like(snr, 5.0)) / snr  # train_text_to_image_lora.py, epsilon
    assert torch.allclose(model.snr_weights(timesteps, 5.0), expected)
    model.prediction = "v_prediction"
    assert torch.allclose(model.snr_weights(timesteps, 5.0), expected * snr / (snr + 1))


def test_the_cache_encodes_each_image_and_caption_once_and_draws_as_without(compose_cfg):
    cached, plain = tiny(compose_cfg, "model.cache_latents=true"), tiny(compose_cfg)
    calls = {"vae": 0, "text": 0}
    encode_images, encode_text = cached.net.latents.vae.encode, cached.net.text_encoder.forward

    def counted(key, function):
        def call(*args, **kwargs):
            calls[key] += 1
            return function(*args, **kwargs)

        return call

    cached.net.latents.vae.encode = counted("vae", encode_images)
    cached.net.text_encoder.forward = counted("text", encode_text)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.inference_mode():  # first seen in validation (Lightning's inference mode) ...
        cached.to_latents(images), cached.encode(["a star"])
    for _ in range(2):
        torch.manual_seed(1)
        latents = cached.to_latents(images)
        hidden = cached.encode(["a star", "a red circle", "a star"])
    cached.train()
    cached.losses(latents, hidden).backward()  # ... and then trained on
    assert calls == {"vae": 1, "text": 2}  # "a star" in validation, "a red circle" in training
    torch.manual_seed(1)
    assert torch.allclose(latents, plain.to_latents(images), atol=1e-5)
    assert torch.allclose(hidden, plain.encode(["a star", "a red circle", "a star"]), atol=1e-5)


def test_the_mlflow_models_weights_are_the_adapters_and_a_missing_base_is_refused(compose_cfg, tmp_path):
    base = shutil.copytree(tiny_stable_diffusion(), tmp_path / "base")
    cfg = compose_cfg(*SD, f"model.pretrained={base}")
    model = with_trained_adapters(instantiate(cfg.model, _convert_="all"))
    from omegaconf import OmegaConf

    from aigc.common.stored import CONFIG_KEY

    checkpoint = {
        "state_dict": model.state_dict(),
        CONFIG_KEY: {"model": OmegaConf.to_container(cfg.model, resolve=True)},
    }
    folder = save_pyfunc(checkpoint, tmp_path / "model")
    weights = folder / "artifacts" / "weights.pt"
    assert weights.stat().st_size < 200_000  # the adapters, not the base (megabytes)
    assert {"pytorch_lora_weights.safetensors", "lora_kohya.safetensors"} <= {f.name for f in folder.rglob("*")}
    generator = Generator.from_file(weights)
    assert (generator.images(1, prompt="a star") == Generator(model.eval()).images(1, prompt="a star")).all()
    shutil.rmtree(base)
    with pytest.raises(Exception, match=rf"model.pretrained={re.escape(str(base))}: no such folder") as refused:
        Generator.from_file(weights)
    assert "\n" not in str(refused.value)


def test_what_is_not_a_stable_diffusion_pipeline_is_refused_in_one_line(compose_cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="is not a diffusers pipeline \\(it has no model_index.json\\)"):
        tiny(compose_cfg, pretrained=str(tmp_path / "empty"))
    sdxl = shutil.copytree(tiny_stable_diffusion(), tmp_path / "sdxl")
    index = json.loads((sdxl / "model_index.json").read_text())
    (sdxl / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(Exception, match="is a StableDiffusionXLPipeline, which model=stable_diffusion does not"):
        tiny(compose_cfg, pretrained=str(sdxl))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("model.lora.target_modules=[to_q,to_kv]",),
            r"model.lora.target_modules=.*: the UNet has no module named to_kv",
        ),
        (("data=image_folder", "data.resolution=36"), "so data.resolution must be a multiple of 8"),
        (("model.peft=none", "model.text_encoder_lora=true"), "model.text_encoder_lora=true needs model.peft=lora"),
        (("data=mnist",), r"model=stable_diffusion needs data.captions .*, which data=mnist does not have: use data="),
    ],
)
def test_a_setting_the_pipeline_can_not_take_is_refused_in_one_line(compose_cfg, overrides, message):
    with pytest.raises(Exception, match=message) as refused:
        cfg = compose_cfg(*SD, f"model.pretrained={tiny_stable_diffusion()}", *overrides, *_path(overrides))
        validate(cfg)
        instantiate(cfg.model, _convert_="all")
    assert re.search(message, one_line(refused.value))  # what the command prints after "Error: "


def _path(overrides) -> list[str]:
    from tests.conftest import tiny_image_folder

    return [f"data.path={tiny_image_folder()}"] if "data=image_folder" in overrides else []


def test_a_text_to_image_model_denoises_a_pretrained_autoencoders_latents(compose_cfg):
    from tests.test_text_to_image import TINY

    cfg = compose_cfg(*TINY, f"model.net.autoencoder={tiny_stable_diffusion()}")
    model = instantiate(cfg.model, _convert_="all").eval()
    assert model.image_shape == (4, 4, 4) and model.net.unet.config.in_channels == 4
    assert model.sample(2, prompts="a star").shape == (2, 3, 32, 32)  # decoded
    assert not any("latents.vae" in key for key in model.state_dict())  # frozen: loaded again, not kept


def test_aspect_ratio_buckets_feed_stable_diffusion_and_are_refused_for_a_pixel_model(compose_cfg):
    from aigc.config.validation import ConfigError, check_trainable
    from tests.conftest import tiny_image_folder
    from tests.test_text_to_image import TINY_NET

    bucketed = ("data=image_folder", f"data.path={tiny_image_folder()}", "data.resolution=64", "data.buckets=true")

    def checked(*model: str):
        cfg = compose_cfg(*model, *bucketed, "data.batch_size=2")
        built, datamodule = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
        datamodule.setup("fit")
        check_trainable(datamodule, built, [])

    checked("model=stable_diffusion", f"model.pretrained={tiny_stable_diffusion()}")
    refused = "data.buckets=true batches images of .* sizes, and TextToImage trains on one"
    with pytest.raises(ConfigError, match=refused):
        checked("model=text_to_image", *TINY_NET)
