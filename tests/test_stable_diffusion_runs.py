"""Fine-tuning Stable Diffusion as a user meets it, on the tiny pipeline: a run lands in MLflow with
its validation loss, its grids and a model that holds only the adapters (its card says so) in both
files other tools load; the served model draws a prompt; `aigc.export` writes kohya's file; and
`resume=<run id>` continues the same loss curve in the same run."""

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from safetensors import safe_open

from aigc.export import export
from aigc.jobs.training import train
from aigc.serving.generator import Generator
from tests.conftest import all_runs, client_for, composed, tiny_stable_diffusion

# both tests read the one fine-tuned run: one worker makes it (--dist loadgroup), not each
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fine_tuned")]


def tiny(*overrides: str) -> tuple[str, ...]:
    return (
        "model=stable_diffusion",
        f"model.pretrained={tiny_stable_diffusion()}",
        "data=shapes",
        "data.num_train=48",
        "data.num_val=8",
        "data.batch_size=8",
        "debug=fast",
        "model.steps=2",
        "callbacks.prompt_grid.seeds=1",
        "metrics.seeds_per_prompt=1",
        *overrides,
    )


def train_here(folder: Path, *overrides: str) -> None:
    with composed("train", folder, *overrides) as cfg:
        train(cfg)


def history(folder: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client_for(folder).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("stable_diffusion")
    train_here(folder, *tiny())
    (run,) = all_runs(client_for(folder))
    return folder, run.info.run_id


def test_a_run_keeps_its_adapters_in_the_files_other_tools_load_and_serves_a_prompt(fine_tuned, tmp_path):
    folder, run_id = fine_tuned
    client = client_for(folder)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "val/loss" in run.data.metrics
    assert int(run.data.params["params_trainable"]) < int(run.data.params["params_total"]) / 50
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.tags["model.holds"] == "adapters" and model.tags["model.pretrained"] == tiny_stable_diffusion()
    files = {Path(a.path).name for a in client.list_logged_model_artifacts(model.model_id, "artifacts")}
    assert {"weights.pt", "pytorch_lora_weights.safetensors", "lora_kohya.safetensors"} <= files

    store = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(store)
    rows = pd.DataFrame([{"num_samples": 2, "prompt": "a red circle"}])
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(rows, params={"seed": 1, "steps": 2})
    best = next((folder / "logs").rglob("best-*.ckpt"))
    assert (served == Generator.from_file(best).images(2, seed=1, prompt="a red circle", steps=2)).all()

    out = tmp_path / "mine.safetensors"
    with composed("export", folder, f"run_id={run_id}", f"tracking_uri={store}", "format=kohya", f"out={out}") as cfg:
        assert str(out) in export(cfg)
    with safe_open(str(out), framework="pt") as file:
        assert all(key.startswith("lora_unet_") for key in file.keys())


def test_resume_restores_the_adapters_and_continues_the_same_loss_curve(fine_tuned, tmp_path):
    reference_folder, reference = fine_tuned  # two epochs straight
    train_here(tmp_path, *tiny("trainer.max_epochs=1"))
    (first,) = all_runs(client_for(tmp_path))
    train_here(tmp_path, *tiny("trainer.max_epochs=2"), f"resume={first.info.run_id}")
    (run,) = all_runs(client_for(tmp_path))
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    for key in ("train/loss", "val/loss"):
        expected = history(reference_folder, reference, key)
        resumed = history(tmp_path, run.info.run_id, key)
        assert [step for step, _ in resumed] == [step for step, _ in expected], key
        assert [value for _, value in resumed] == pytest.approx([value for _, value in expected], rel=1e-4), key
