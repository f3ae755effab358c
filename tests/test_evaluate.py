"""`python -m aigc.evaluate` scores a trained model and logs into its run."""

from pathlib import Path

import pytest

from tests.conftest import client_for, only_run, run_aigc

pytestmark = pytest.mark.slow


def test_evaluate_logs_test_metrics_into_the_trained_run(tmp_path: Path):
    trained = run_aigc(tmp_path, "model=vae", "debug=fast", "data.download=false", "metrics.inception=false")
    assert trained.returncode == 0, trained.stderr[-2000:]
    client = client_for(tmp_path)
    run_id = only_run(client).info.run_id

    result = run_aigc(tmp_path, f"run_id={run_id}", "metrics.num_samples=300", module="aigc.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    run = only_run(client)  # logged into the same run, not a new one
    assert run.info.status == "FINISHED"
    assert {"test/fid_mnist", "test/is_mnist", "test/elbo"} <= set(run.data.metrics)
    assert run.data.tags["metrics.images.num_samples"] == "300"


def test_evaluate_without_a_model_says_what_to_pass(tmp_path: Path):
    result = run_aigc(tmp_path, module="aigc.evaluate")
    assert result.returncode == 1
    assert "run_id=<mlflow run id>, ckpt_path=<checkpoint file>, or model=<name> data=<name>" in result.stderr
