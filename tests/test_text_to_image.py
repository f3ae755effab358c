"""The text-to-image model: CLIP's real tokenizer without a download, guidance between a prompt and
the empty or a negative prompt in one batched pass, captions dropped as often as asked, a seed
fixing the images and a prompt changing them, a frozen pretrained text encoder from a folder, and
every request it can't draw refused in one line. A tiny net on the real configs, in this process."""

import pytest
import torch
from hydra.utils import instantiate
from transformers import CLIPTextConfig, CLIPTextModel

from aigc.models.nets.prompt_unet import _coordinates
from aigc.models.nets.prompts import clip_tokenizer, token_ids
from aigc.models.text_to_image import TextToImage
from aigc.serving.generator import Generator

TINY_NET = (
    "model.net.channels=[8,16]",
    "model.net.cross_attention=[false,true]",
    "model.net.norm_groups=4",
    "model.net.attention_heads=2",
    "model.net.text_width=16",
    "model.net.text_layers=1",
    "model.net.text_heads=2",
)
TINY = ("model=text_to_image", "data=shapes", *TINY_NET, "model.steps=3")


def tiny(compose_cfg, *overrides: str) -> TextToImage:
    return instantiate(compose_cfg(*TINY, *overrides).model, _convert_="all").eval()


def test_the_tokenizer_is_clips_own_byte_pair_encoding():
    # ids of openai/clip-vit-* tokenizers (as open_clip's SimpleTokenizer gives them)
    assert clip_tokenizer()("a red circle")["input_ids"] == [49406, 320, 736, 7117, 49407]
    assert len(clip_tokenizer()) == 49408
    ids = token_ids(clip_tokenizer(), ["two red circles", ""], context_length=8)
    assert ids.tolist() == [[49406, 1237, 736, 19411, 49407, 49407, 49407, 49407], [49406] + [49407] * 7]


def test_a_prompt_longer_than_the_context_is_refused_with_the_limit_named(compose_cfg):
    model = tiny(compose_cfg, "model.net.context_length=8")
    model.check_prompts(["a blue square left of a"])  # six tokens: fits
    with pytest.raises(ValueError, match=r"is 7 tokens, more than the text encoder reads \(6\)") as refused:
        model.sample(1, prompts="a blue square left of a star")
    assert "model.net.context_length" in str(refused.value) and "\n" not in str(refused.value)


def test_guidance_combines_the_prompt_and_the_negative_prompt_in_one_pass(compose_cfg):
    model = tiny(compose_cfg)
    noisy, t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.tensor(500)
    with torch.no_grad():
        prompt, negative = model.encode(["two red circles"] * 2), model.encode(["a star"] * 2)
        conditional = model.predict(noisy, t.expand(2), prompt)
        unconditional = model.predict(noisy, t.expand(2), negative)
        expected = unconditional + 3.0 * (conditional - unconditional)
        assert torch.allclose(model.guided(noisy, t, prompt, 3.0, negative), expected, atol=1e-5)
        assert torch.allclose(model.guided(noisy, t, prompt, 0.0, negative), unconditional, atol=1e-6)


def test_captions_are_dropped_to_the_empty_prompt_as_often_as_asked(compose_cfg):
    model = tiny(compose_cfg, "model.prompt_dropout=0.25")
    torch.manual_seed(0)
    captions = [f"caption {index}" for index in range(40_000)]
    after = model.drop_prompts(captions)
    dropped = [kept == "" for kept in after]
    assert abs(sum(dropped) / len(captions) - 0.25) < 0.011  # 5 sd of a binomial at n = 40,000
    assert all(kept == caption for kept, caption in zip(after, captions, strict=True) if kept)


def test_a_seed_fixes_the_images_and_the_prompt_and_negative_prompt_change_them(compose_cfg):
    model = tiny(compose_cfg)
    first = model.sample(2, seed=5, prompts="two red circles")
    assert torch.equal(first, model.sample(2, seed=5, prompts="two red circles"))
    assert not torch.equal(first, model.sample(2, seed=6, prompts="two red circles"))
    assert not torch.equal(first, model.sample(2, seed=5, prompts="a blue square"))
    assert not torch.equal(first, model.sample(2, seed=5, prompts="two red circles", negative_prompt="a star"))
    each = model.sample(2, seed=5, prompts=["two red circles", "a blue square"])
    assert torch.equal(each[0], first[0]) and first.shape == (2, 3, 32, 32)


def test_coordinates_give_the_unet_each_pixels_row_and_column(compose_cfg):
    model = tiny(compose_cfg, "model.net.coordinates=true")
    assert model.net.unet.conv_in.in_channels == 3 + 2
    grid = _coordinates(torch.zeros(2, 3, 4, 4))
    steps = pytest.approx([-1, -1 / 3, 1 / 3, 1])
    assert grid[1, 0, :, 2].tolist() == steps and grid[1, 0, 2, :].tolist() == [grid[1, 0, 2, 0]] * 4  # rows
    assert grid[1, 1, 2, :].tolist() == steps and grid[1, 1, :, 2].tolist() == [grid[1, 1, 0, 2]] * 4  # columns
    assert model.sample(2, seed=1, prompts="a red circle left of a star").shape == (2, 3, 32, 32)


def test_a_pretrained_text_encoder_is_loaded_from_its_folder_and_frozen(compose_cfg, tmp_path):
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=12, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2
    )
    CLIPTextModel(config).save_pretrained(tmp_path / "text_encoder")
    clip_tokenizer().save_pretrained(tmp_path / "tokenizer")  # a Stable Diffusion folder's layout
    model = tiny(compose_cfg, f"model.net.pretrained_text_encoder={tmp_path}")
    assert model.net.unet.config.cross_attention_dim == 12
    assert not any(parameter.requires_grad for parameter in model.net.text_encoder.parameters())
    assert model.sample(1, prompts="a star").shape == (1, 3, 32, 32)
    with pytest.raises(Exception, match=r"model.net.pretrained_text_encoder=\S+absent: no such folder"):
        tiny(compose_cfg, f"model.net.pretrained_text_encoder={tmp_path / 'absent'}")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"label": 3, "prompt": "a star"}, "label=3: the model draws what a prompt says: give prompt=..., not a label"),
        ({}, "the model draws what a prompt says: give a prompt"),
        ({"prompt": "  "}, "the model draws what a prompt says: give a prompt"),
        ({"prompt": "a star", "guidance": -1.0}, "guidance=-1.0: give a number at least 0"),
        ({"prompt": "a star", "steps": 0}, "steps=0: give a whole number of sampling steps, at least 1"),
        ({"prompt": "a star " * 30}, "more than the text encoder reads"),
        ({"prompt": "a star", "num_samples": 0}, "num_samples=0: ask for at least one image"),
    ],
)
def test_a_request_that_can_not_be_drawn_is_refused_in_one_line(compose_cfg, request_, message):
    generator = Generator(tiny(compose_cfg), source="the model")
    with pytest.raises(ValueError, match=message) as refused:
        generator.images(request_.pop("num_samples", 1), **request_)
    assert "\n" not in str(refused.value)


def test_a_label_model_refuses_a_prompt_and_takes_a_label_by_its_name(compose_cfg):
    model = instantiate(
        compose_cfg("model=diffusion", "model.net.channels=[8,16]", "model.net.norm_groups=4").model, _convert_="all"
    )
    names = [f"class{index}" for index in range(10)]
    generator = Generator(model, source="the model", class_names=names)
    with pytest.raises(ValueError, match=r"prompt=\.\.\.: the model draws the label it is given, it takes no prompt"):
        generator.images(1, prompt="a star")
    by_name = generator.images(2, label="class7", steps=2)
    assert (by_name == generator.images(2, label=7, steps=2)).all()
    with pytest.raises(ValueError, match="label='cat': the model draws one of class0, class1"):
        generator.images(1, label="cat")


def test_captionless_images_and_a_caption_too_long_are_refused_before_a_run_exists(compose_cfg, tmp_path):
    from PIL import Image

    from aigc.config.validation import ConfigError, check_trainable

    folder = tmp_path / "mine"
    folder.mkdir()
    for index in range(4):
        Image.new("RGB", (8, 8), (60 * index, 0, 0)).save(folder / f"{index}.png")

    def checked():
        cfg = compose_cfg("model=text_to_image", *TINY_NET, "data=image_folder", f"data.path={folder}")
        model, datamodule = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
        datamodule.setup("fit")
        check_trainable(datamodule, model, [])

    with pytest.raises(ConfigError, match="model=text_to_image learns from captions, and image_folder serves none"):
        checked()
    for index in range(4):
        (folder / f"{index}.txt").write_text("a red square")
    (folder / "3.txt").write_text("a red square " * 10)
    with pytest.raises(ConfigError, match=r"the prompt 'a red square a red .*' is 30 tokens, more than the text"):
        checked()
