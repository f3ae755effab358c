"""data=shapes: the scene generator, its held-out set, the shipped verifier and prompt accuracy."""

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from aigc.common.scenes import EvaluationPrompt, Thing, satisfies
from aigc.config.validation import ConfigError, validate
from aigc.data import scenes
from aigc.data.shapes import ShapesDataModule
from aigc.metrics import shapes_verifier
from aigc.metrics.prompt_accuracy import prompt_accuracy

PROMPTS = {prompt.prompt: prompt for prompt in scenes.evaluation_prompts()}


def rendered(some: list[scenes.Scene], seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(scenes.render_scenes(some, 32, np.random.default_rng(seed)))


def test_a_seed_draws_the_same_scenes_and_pixels_every_time():
    first, again, other = (scenes.training_scenes(300, seed) for seed in (3, 3, 4))
    assert first == again and first != other
    assert torch.equal(rendered(first[:50]), rendered(again[:50]))
    assert scenes.held_out_scenes(48, 3) == scenes.held_out_scenes(48, 3)
    assert Counter(scene.category for scene in first) == {category: 50 for category in scenes.CATEGORIES}


def test_training_scenes_never_show_a_held_out_combination():
    training = scenes.training_scenes(3000, 0)
    coloured = {(thing.colour, thing.shape) for scene in training for thing in scene.things}
    counted = {(count, shape) for scene in training for shape, count in Counter(t.shape for t in scene.things).items()}
    together = {frozenset(t.shape for t in scene.things) for scene in training}
    assert not coloured & set(scenes.HELD_OUT_COLOURED)
    assert not counted & set(scenes.HELD_OUT_COUNTS)
    assert not any(set(pair) <= shapes for pair in scenes.HELD_OUT_PAIRS for shapes in together)
    # everything else does appear, in several wordings
    assert len(coloured) == len(scenes.SHAPES) * len(scenes.COLOURS) - len(scenes.HELD_OUT_COLOURED)
    assert {"a red circle", "one red circle", "red circle"} <= {scene.caption for scene in training}
    # and every evaluation prompt but single_object's asks for what training never shows
    for prompt in scenes.evaluation_prompts():
        held_out = [Thing(shape, colour or "red", 0, i) for i, (shape, colour) in enumerate(prompt.objects)]
        assert scenes.shows_held_out(held_out) == (prompt.category != "single_object"), prompt


def test_evaluation_prompts_are_fixed_a_handful_per_category_and_worded_canonically():
    prompts = scenes.evaluation_prompts()
    assert prompts == scenes.evaluation_prompts()
    assert Counter(prompt.category for prompt in prompts) == {category: 4 for category in scenes.CATEGORIES}
    assert {"a circle", "a circle and a triangle", "three triangles", "a green triangle"} <= set(PROMPTS)
    assert "a green triangle left of a red square" in PROMPTS
    hash(prompts[0])  # plain values: usable as keys


def spoiled(scene: scenes.Scene) -> list[list[Thing]]:
    """The scene with one thing wrong: an extra object, one missing, one reshaped, one recoloured
    (where the prompt names its colour), the two swapped (where a relation is asked)."""
    things = list(scene.things)
    free = next((r, c) for r in range(3) for c in range(3) if all((t.row, t.col) != (r, c) for t in things))
    first = things[0]
    other_shape = next(s for s in scenes.SHAPES if s not in {t.shape for t in things})
    variants = [
        [*things, Thing(first.shape, first.colour, *free)],
        things[1:],
        [dataclasses.replace(first, shape=other_shape), *things[1:]],
    ]
    prompt = PROMPTS[scene.caption]
    if prompt.objects[0][1] is not None:
        other_colour = next(c for c in scenes.COLOURS if c not in {t.colour for t in things})
        variants.append([dataclasses.replace(first, colour=other_colour), *things[1:]])
    if prompt.relation is not None:
        a, b = things
        variants.append([dataclasses.replace(a, row=b.row, col=b.col), dataclasses.replace(b, row=a.row, col=a.col)])
    return variants


def test_each_held_out_scene_satisfies_its_prompt_and_one_thing_wrong_does_not():
    for scene in scenes.held_out_scenes(3 * len(PROMPTS), seed=0):
        prompt = PROMPTS[scene.caption]
        assert scene.category == prompt.category
        assert satisfies(list(scene.things), prompt), scene
        assert satisfies(list(reversed(scene.things)), prompt)  # the order things are read in is free
        for wrong in spoiled(scene):
            assert not satisfies(wrong, prompt), (scene.caption, wrong)


def test_relations_follow_the_grid():
    prompt = EvaluationPrompt(
        "a red circle left of a blue star", "position", (("circle", "red"), ("star", "blue")), "left of"
    )
    left, right = Thing("circle", "red", 2, 0), Thing("star", "blue", 0, 1)
    assert satisfies([left, right], prompt)  # columns decide left and right; rows are free
    assert not satisfies([dataclasses.replace(left, col=1), right], prompt)  # same column: neither


def test_the_shipped_verifier_reads_real_held_out_scenes():
    some = scenes.held_out_scenes(240, seed=5)
    found = shapes_verifier.detect(rendered(some, seed=5))
    exact = np.mean([set(things) == set(scene.things) for things, scene in zip(found, some, strict=True)])
    assert exact >= 0.98
    # and scenes drawn at 64 px, which it reads scaled down
    some = some[:48]
    found = shapes_verifier.detect(torch.from_numpy(scenes.render_scenes(some, 64, np.random.default_rng(5))))
    assert np.mean([set(things) == set(scene.things) for things, scene in zip(found, some, strict=True)]) >= 0.95


def test_prompt_accuracy_is_about_one_on_real_scenes_and_low_on_mismatched_prompts():
    some = scenes.held_out_scenes(240, seed=6)
    images, prompts = rendered(some, seed=6), [PROMPTS[scene.caption] for scene in some]
    real = prompt_accuracy(images, prompts)
    assert set(real) == {"prompt_acc"} | {f"prompt_acc_{category}" for category in scenes.CATEGORIES}
    assert real["prompt_acc"] >= 0.97 and min(real.values()) >= 0.9, real
    shuffled = [prompts[i] for i in np.random.default_rng(0).permutation(len(prompts))]
    assert prompt_accuracy(images, shuffled)["prompt_acc"] < 0.3
    blank = torch.zeros(24, 3, 32, 32, dtype=torch.uint8)
    assert prompt_accuracy(blank, list(PROMPTS.values()))["prompt_acc"] == 0
    with pytest.raises(ValueError, match="one prompt per image"):
        prompt_accuracy(images, prompts[:-1])


def test_the_verifier_is_a_feature_extractor_for_fid_and_kid_but_not_is(tmp_path):
    from aigc.metrics.fidelity import fidelity_tags, score_images

    some = scenes.held_out_scenes(200, seed=7)
    real, other = rendered(some[:100], seed=7), rendered(some[100:], seed=8)
    noise = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def scored(fake):
        measures = ("fid", "is", "kid")
        return score_images(fake, real, "shapes-test", [shapes_verifier.NAME], tmp_path, measures=measures)

    same, far = scored(other), scored(noise)
    assert set(same) == {"fid_shapes", "kid_shapes"}  # no IS: the verifier has no class posterior
    assert far["fid_shapes"] > 10 * same["fid_shapes"] and far["kid_shapes"] > 1 > 0.05 > same["kid_shapes"]
    tags = fidelity_tags([shapes_verifier.NAME], 100, 100, "shapes-test")
    assert tags["metrics.images.shapes_verifier_weights"] == shapes_verifier.weights_digest()


def test_a_resolution_below_the_minimum_is_refused_in_one_line(compose_cfg):
    with pytest.raises(ValueError) as refused:
        ShapesDataModule(data_dir=".", image_shape=[3, 24, 24], resolution=24)
    message = str(refused.value)
    assert "data.resolution=24" in message and str(scenes.MIN_RESOLUTION) in message and "\n" not in message
    # and by config validation, before any run exists
    with pytest.raises(ConfigError) as refused:
        validate(compose_cfg("data=shapes", "data.resolution=24"))
    assert "data.resolution=24" in str(refused.value) and "\n" not in str(refused.value)
    validate(compose_cfg("data=shapes", "data.resolution=48"))


def test_the_datamodule_serves_captioned_scenes_of_the_declared_shape(compose_cfg, tmp_path):
    cfg = compose_cfg("data=shapes", "data.num_train=96", "data.num_val=48", "data.batch_size=16")
    assert list(cfg.data.image_shape) == [3, 32, 32] and cfg.data.num_classes is None
    data = instantiate(cfg.data)
    data.setup()
    assert data.captioned and data.caption_source == "grammar" and data.num_classes is None
    assert data.classifier == shapes_verifier.NAME and data.fid_metric == "val/fid_shapes"
    images, labels, captions = next(iter(data.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert -1 <= images.min() < images.max() <= 1
    assert labels.tolist() == [0] * 16 and len(captions) == 16 and all(isinstance(c, str) and c for c in captions)
    # validation: real scenes of the evaluation prompts, the FID reference
    assert data.real_images("val").shape == (48, 3, 32, 32) and data.real_images("val").dtype == torch.uint8
    assert set(data.captions("val")) == set(PROMPTS) and data.evaluation_prompts == scenes.evaluation_prompts()
    images, labels, captions = next(iter(data.val_dataloader()))
    assert images.shape == (16, 3, 32, 32) and len(captions) == 16
    assert "generated" in data.source.describe()
