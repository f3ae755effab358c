"""The flattened config and the run's tags fit MLflow's limits however long a value is and however many there are."""

from mlflow import MlflowClient
from mlflow.entities import Param
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

from aigc.tracking.run.logger import MLflowLogger
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


def test_more_tags_than_one_write_takes_all_reach_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(uri, "tags", pyfunc=False)
    logger.open_run()
    tags = {f"aigc.test.{i}": str(i) for i in range(2 * MAX_PARAMS_TAGS_PER_BATCH + 1)}
    logger.set_tags(tags)
    stored = MlflowClient(uri).get_run(logger.run_id).data.tags
    assert {key: stored.get(key) for key in tags} == tags
