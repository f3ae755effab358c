"""`python -m aigc.evaluate` scores every model family: a run's checkpoint, logged into that run,
and a model as configured, logged as a new run. In-process, on the real configs, with tiny limits."""

from pathlib import Path

import pytest

from aigc.evaluate import evaluate
from aigc.jobs.training import train
from tests.conftest import MODELS, all_runs, client_for, composed, model_overrides, uses_images

SCORED_QUICKLY = ["metrics.num_samples=20", "metrics.inception=false", "metrics.num_prompts=2"]


def evaluate_here(folder: Path, *overrides: str) -> dict[str, float]:
    """What `python -m aigc.evaluate <overrides>` does, run in `folder`."""
    with composed("evaluate", folder, *overrides) as cfg:
        return evaluate(cfg)


@pytest.mark.parametrize("model", MODELS)
def test_every_family_is_scored_from_its_run_and_as_configured(compose_cfg, tmp_path, model):
    family = model_overrides(model) + (["data.download=false"] if uses_images(model) else [])
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
