"""The flattened config fits MLflow's limits however long a value is."""

from mlflow import MlflowClient
from mlflow.entities import Param

from aigc.tracking.run.record import MAX_PARAM_CHARS, flatten


def test_flatten_nests_with_dots_and_keeps_lists_whole():
    flat = flatten({"model": {"net": {"width": 64}, "betas": [0.5, 0.999]}, "seed": 1, "empty": {}})
    assert flat == {"model.net.width": "64", "model.betas": "[0.5, 0.999]", "seed": "1", "empty": "{}"}


def test_long_values_are_shortened_and_mlflow_accepts_them(tmp_path):
    flat = flatten({"prompt": "x" * 10_000, "k" * 300: 1})
    assert len(flat["prompt"]) == MAX_PARAM_CHARS and flat["prompt"].endswith("...")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.create_run(client.create_experiment("limits"))
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in flat.items()])
    assert client.get_run(run.info.run_id).data.params["prompt"] == flat["prompt"]
