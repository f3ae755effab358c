"""``val/clip_score``: torchmetrics' CLIP score of a text-to-image model's evaluation samples
against their captions, by a CLIP model named in ``metrics.clip_model``; skipped with one line
without one, and a CLIP model that can't be had stops the command before any run exists. A tiny
random CLIP model saved with save_pretrained stands in for a real one: nothing is downloaded."""

import shutil
from pathlib import Path

import pytest
import torch
from torchmetrics.multimodal.clip_score import CLIPScore
from transformers import CLIPModel, CLIPProcessor

from aigc.common.hub import PretrainedUnavailable
from aigc.jobs.training import train
from aigc.metrics.clip_score import clip_score, load_clip
from aigc.run import main
from tests.conftest import all_runs, client_for, composed
from tests.helpers.tiny_clip import save_tiny_clip
from tests.test_text_to_image import TINY_NET

PROMPTS = ["a red circle", "two blue squares", "a green star", "a circle left of a square", "three stars", "a"]
# a smoke run of the tiny text-to-image net on shapes, scored after each of its two epochs
RUN = (
    "model=text_to_image",
    "data=shapes",
    *TINY_NET,
    "model.steps=2",
    "debug=fast",
    "data.num_train=64",
    "data.num_val=32",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "metrics.every_n_epochs=1",
    "metrics.inception=false",
    "metrics.num_samples=12",
    "~callbacks.prompt_accuracy",
    "~callbacks.prompt_grid",
)
SKIPPED = "CLIP score: no CLIP model configured (metrics.clip_model=<hub name or folder>); not scored."


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def images(count: int, channels: int = 3) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, channels, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_the_score_is_torchmetrics_clip_score_of_the_images_and_their_prompts(tiny_clip: Path):
    drawn = images(len(PROMPTS))
    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        clip = model(**processor(text=PROMPTS, images=list(drawn), return_tensors="pt", padding=True))
    cosines = clip.image_embeds @ clip.text_embeds.T  # CLIP's own embeddings, unit length
    # each image with the prompt a random CLIP finds closest, so that the floor at 0 hides nothing
    closest = cosines.argmax(dim=1)
    prompts = [PROMPTS[index] for index in closest]
    # torchmetrics' definition: the mean of 100 x cos(image, text embedding) over the pairs, floored at 0
    defined = float(100 * cosines[torch.arange(len(drawn)), closest].mean())
    assert defined > 1
    scored = clip_score(drawn, prompts, str(tiny_clip), batch_size=4)  # in two batches
    assert scored == pytest.approx(defined, rel=1e-5)
    try:  # torchmetrics itself, given the model as transformers returns it
        direct = CLIPScore(model_name_or_path=lambda: (model, processor))
        direct.update(drawn, prompts)
    except AttributeError:  # torchmetrics 1.9 can't read transformers 5's features (Lightning-AI/torchmetrics#3407)
        pass
    else:
        assert scored == pytest.approx(float(direct.compute()), rel=1e-5)
    farthest = [PROMPTS[index] for index in cosines.argmin(dim=1)]
    assert clip_score(drawn, farthest, str(tiny_clip)) < scored  # the pairing counts
    grey = images(2, channels=1)
    as_rgb = grey.expand(-1, 3, -1, -1)
    assert clip_score(grey, PROMPTS[:2], str(tiny_clip)) == clip_score(as_rgb, PROMPTS[:2], str(tiny_clip))
    with pytest.raises(ValueError, match="need a prompt for each image, got 6 images and 5 prompts"):
        clip_score(drawn, PROMPTS[:5], str(tiny_clip))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One store for both runs: a new SQLite store's set-up costs about as much as a run."""
    return tmp_path_factory.mktemp("store")


def trained(folder: Path, *overrides: str):
    """The MLflow run a training of ``RUN`` in ``folder`` adds to its store."""
    earlier = {run.info.run_id for run in all_runs(client_for(folder))}
    with composed("train", folder, *RUN, *overrides) as cfg:
        train(cfg)
    (run,) = [run for run in all_runs(client_for(folder)) if run.info.run_id not in earlier]
    return run


def test_a_run_logs_the_clip_score_of_its_samples_when_a_clip_model_is_configured(store, tiny_clip: Path, capsys):
    run = trained(store, f"metrics.clip_model={tiny_clip}")
    history = client_for(store).get_metric_history(run.info.run_id, "val/clip_score")
    assert len(history) == 2 and all(0 <= point.value <= 100 for point in history)  # after each epoch
    assert run.data.tags["metrics.prompts.clip_model"] == str(tiny_clip)
    assert run.data.tags["metrics.prompts.clip_num_samples"] == "12"
    assert SKIPPED not in capsys.readouterr().out


def test_without_a_clip_model_a_run_says_so_once_and_logs_no_clip_score(store, capsys):
    run = trained(store)
    assert "val/fid_shapes" in run.data.metrics and "val/clip_score" not in run.data.metrics
    assert capsys.readouterr().out.count(SKIPPED) == 1  # two evaluations, one line


def test_a_clip_model_that_can_not_be_had_stops_the_command_in_one_line_before_any_run(tmp_path, capsys):
    absent = tmp_path / "no-such-clip"
    with composed("train", tmp_path, *RUN, f"metrics.clip_model={absent}") as cfg, pytest.raises(SystemExit) as ended:
        main(cfg)  # `python -m aigc.run`'s own function, in this process
    assert ended.value.code == 1
    assert (
        capsys.readouterr().err.strip()
        == f"Error: metrics.clip_model={absent}: no such folder (a save_pretrained folder or a hub name)"
    )
    assert not (tmp_path / "mlflow.db").exists() or all_runs(client_for(tmp_path)) == []
    another = tmp_path / "gpt2"  # transformers would build a CLIP model of random weights from it
    another.mkdir()
    (another / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(PretrainedUnavailable, match=r"=.*gpt2: not a CLIP model .*: its config is a gpt2 model's$"):
        load_clip(str(another))


def test_a_hub_name_is_read_from_the_local_cache_offline_and_one_not_there_is_refused_in_one_line(
    tmp_path, tiny_clip: Path, monkeypatch
):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--aigc-tests--tiny-clip"  # the Hugging Face cache's layout: a snapshot per commit
    shutil.copytree(tiny_clip, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert clip_score(images(2), PROMPTS[:2], "aigc-tests/tiny-clip") == clip_score(
        images(2), PROMPTS[:2], str(tiny_clip)
    )
    with pytest.raises(PretrainedUnavailable) as refused:
        load_clip("aigc-tests/not-cached")
    assert str(refused.value).startswith(
        "metrics.clip_model=aigc-tests/not-cached is not a local folder or in the Hugging Face cache, "
        "and HF_HUB_OFFLINE is set"
    )
