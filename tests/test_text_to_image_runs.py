"""Text to image as a user meets it: a run on the shapes benchmark lands in MLflow with its prompt
accuracy by category and a grid per category; aigc.sample draws a typed prompt, as the run's MLflow
model does; the compare report shows the accuracy by category and the prompt grids side by side;
and one command trains on a folder of the user's own captioned images."""

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aigc.common.scenes import CATEGORIES
from aigc.compare import compare
from aigc.jobs.training import train
from aigc.sample import sample
from tests.conftest import all_runs, client_for, composed, run_aigc, tiny_image_folder
from tests.test_text_to_image import TINY_NET

pytestmark = pytest.mark.slow
TINY = (
    "model=text_to_image",
    *TINY_NET,
    "model.steps=2",
    "debug=fast",
    "trainer.max_epochs=1",
    "metrics.inception=false",
    "metrics.num_samples=20",
    "callbacks.prompt_grid.seeds=2",
)


# the tests on the shapes run share one worker, so it trains once (--dist loadgroup), not on each
ON_THE_SHAPES_RUN = pytest.mark.xdist_group("shapes_run")


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("text_to_image")
    with composed("train", folder, *TINY, "data=shapes", "data.num_train=640", "data.num_val=64") as cfg:
        train(cfg)
    (run,) = all_runs(client_for(folder))
    return folder, run.info.run_id


@ON_THE_SHAPES_RUN
def test_a_shapes_run_records_its_prompt_accuracy_by_category_and_a_grid_per_category(shapes_run):
    folder, run_id = shapes_run
    run = client_for(folder).get_run(run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert {"val/loss", "val/fid_shapes", "val/kid_shapes", "val/prompt_acc"} <= set(metrics)
    assert {f"val/prompt_acc_{category}" for category in CATEGORIES} <= set(metrics)
    assert 0 <= metrics["val/prompt_acc"] <= 1
    assert run.data.tags["metrics.prompts.verifier"] == "shapes-verifier"
    images = [artifact.path for artifact in client_for(folder).list_artifacts(run_id, "images")]
    for key in ["prompts", *(f"prompts~{category}" for category in CATEGORIES)]:
        assert any(Path(path).name.startswith(f"{key}+step+") for path in images), key


@ON_THE_SHAPES_RUN
def test_a_typed_prompt_is_drawn_by_aigc_sample_as_by_the_mlflow_model(shapes_run, tmp_path):
    folder, run_id = shapes_run
    store = f"sqlite:///{folder}/mlflow.db"
    out = tmp_path / "circles.png"
    request = ("prompt='two red circles'", "num_samples=2", "seed=3", "guidance=2.0", f"out={out}")
    with composed("sample", folder, f"run_id={run_id}", f"tracking_uri={store}", *request) as cfg:
        said = sample(cfg)
    assert "prompt 'two red circles'" in said and out.is_file()
    mlflow.set_tracking_uri(store)
    rows = pd.DataFrame([{"num_samples": 2, "prompt": "two red circles"}])
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(rows, params={"seed": 3, "guidance": 2.0})
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert served.shape == (2, 32, 32, 3) and np.array_equal(grid[2:34, 2:34], served[0])  # save_image's padding
    negative = pd.DataFrame([{"num_samples": 2, "prompt": "two red circles", "negative_prompt": "a star"}])
    steered = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(negative, params={"seed": 3, "guidance": 2.0})
    assert not np.array_equal(steered, served)


@ON_THE_SHAPES_RUN
def test_the_compare_report_shows_prompt_accuracy_by_category_and_the_grids_side_by_side(shapes_run):
    folder, run_id = shapes_run
    with composed("compare", folder, "experiment_name=text_to_image-shapes") as cfg:
        compare(cfg)
        out = Path(cfg.hydra.runtime.output_dir)
    with open(out / "prompts.csv", newline="") as file:
        header, row = csv.reader(file)
    assert header[1:] == ["prompt_acc", *sorted(CATEGORIES)]
    assert row[0] == client_for(folder).get_run(run_id).info.run_name[:40]
    grid = Image.open(next(path for path in (folder / "logs" / "train").rglob("prompts/epoch_*.png")))
    sheet = Image.open(out / "prompt_grids.png")
    assert sheet.width == grid.width and sheet.height > grid.height  # the run's grid under its name


def test_one_command_trains_on_a_folder_of_your_own_captioned_images(tmp_path):
    result = run_aigc(tmp_path, *TINY, "data=image_folder", f"data.path={tiny_image_folder()}", "data.batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(client_for(tmp_path))
    assert run.info.status == "FINISHED" and "val/loss" in run.data.metrics
    assert run.data.tags["data.name"] == "image_folder" and run.data.tags["data.captions"] == ".txt files"
    (model,) = client_for(tmp_path).search_logged_models([run.info.experiment_id])
    assert model.tags["data.caption_source"] == ".txt files"  # the model's card says where its captions came from
    assert model.tags["data.class_names"] == "['circle', 'square']"
    inputs = json.loads(run.inputs.dataset_inputs[0].dataset.profile)
    assert inputs["num_train"] + inputs["num_val"] == 6
