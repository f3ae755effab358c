"""`python -m aigc.evaluate` scores every model family: a run's checkpoint, logged into that run,
and a model as configured, logged as a new run. In-process, on the real configs, with tiny limits."""

from pathlib import Path

import pytest

from aigc.evaluate import evaluate
from aigc.jobs.training import train
from tests.conftest import MODELS, all_runs, client_for, composed, fitting_data, model_overrides, model_yaml
from tests.test_text_to_image import TINY_NET

SCORED_QUICKLY = [
    "metrics.num_samples=20",
    "metrics.inception=false",
    "metrics.num_prompts=2",
    "metrics.seeds_per_prompt=1",
]


def evaluate_here(folder: Path, *overrides: str) -> dict[str, float]:
    """What `python -m aigc.evaluate <overrides>` does, run in `folder`."""
    with composed("evaluate", folder, *overrides) as cfg:
        return evaluate(cfg)


@pytest.mark.parametrize("model", MODELS)
def test_every_family_is_scored_from_its_run_and_as_configured(compose_cfg, tmp_path, model):
    family = model_overrides(model) + (["data.download=false"] if fitting_data(model) == "mnist" else [])
    family += ["model.steps=2"] if "steps" in model_yaml(model) else []  # a sampler's steps: few, for speed
    # scenes are drawn anew by each of the three commands (the default 21,000: 4 s of CPU each)
    family += ["data.num_train=640", "data.num_val=64"] if fitting_data(model) == "shapes" else []
    family += list(TINY_NET) if model == "text_to_image" else []  # the default net is the 30-minute benchmark's
    cfg = compose_cfg(*family, *SCORED_QUICKLY, "debug=fast", "trainer.max_epochs=1")
    train(cfg)
    client = client_for(tmp_path)
    (trained,) = all_runs(client)
    measure = cfg.objective.metric.replace("val/", "test/")  # what the family is judged by, at test

    scores = evaluate_here(tmp_path, f"run_id={trained.info.run_id}", *SCORED_QUICKLY, "+trainer.limit_test_batches=2")
    run = client.get_run(trained.info.run_id)
    assert measure in scores and run.data.metrics[measure] == pytest.approx(scores[measure])
    assert run.info.status == "FINISHED" and run.info.end_time == trained.info.end_time  # as it ended before

    evaluate_here(tmp_path, *family, *SCORED_QUICKLY, "+trainer.limit_test_batches=2")
    (configured,) = [run for run in all_runs(client) if run.info.run_id != trained.info.run_id]
    assert configured.data.tags["aigc.task"] == "evaluate" and configured.info.status == "FINISHED"
    assert measure in configured.data.metrics
    assert configured.info.experiment_id == trained.info.experiment_id  # beside the trained runs


def test_evaluate_without_a_model_says_what_to_pass(tmp_path: Path):
    with pytest.raises(ValueError, match=r"run_id=<mlflow run id>, ckpt_path=<checkpoint file>, or model=<name>"):
        evaluate_here(tmp_path)


def test_a_diffusion_model_is_scored_with_another_sampler_and_the_run_says_which(compose_cfg, tmp_path):
    tiny = ("model=diffusion", "model.net.channels=[8,16]", "model.net.norm_groups=4", "model.net.attention=false")
    train(compose_cfg(*tiny, "data.download=false", *SCORED_QUICKLY, "debug=fast", "trainer.max_epochs=1"))
    client = client_for(tmp_path)
    (run,) = all_runs(client)
    assert run.data.tags["metrics.images.sampler"] == "dpm++"  # as trained
    evaluate_here(tmp_path, f"run_id={run.info.run_id}", *SCORED_QUICKLY, "sampler=ddim", "steps=3", "guidance=1.5")
    tags = client.get_run(run.info.run_id).data.tags
    assert (tags["metrics.images.sampler"], tags["metrics.images.steps"], tags["metrics.images.guidance"]) == (
        "ddim",
        "3",
        "1.5",
    )
    gan = ("model=gan", "data.download=false", "debug=fast", "trainer.max_epochs=1", *SCORED_QUICKLY)
    train(compose_cfg(*gan, f"paths.output_dir={tmp_path}/gan"))
    (gan_run,) = [r for r in all_runs(client) if r.info.run_id != run.info.run_id]
    with pytest.raises(ValueError, match="sampler= is for models that take it"):
        evaluate_here(tmp_path, f"run_id={gan_run.info.run_id}", "sampler=ddim")
