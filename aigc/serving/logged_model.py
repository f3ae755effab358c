"""The run's MLflow model: one pyfunc model named ``model``, logged when training ends and
linked to the run (the UI's Models column, ``mlflow.search_logged_models``, ``runs:/<id>/model``)."""

import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model

from aigc.serving.generator import data_facts, model_card
from aigc.serving.pyfunc import save_pyfunc
from aigc.serving.registry import MODEL_NAME, run_models


def log_run_model(client: MlflowClient, run_id: str, checkpoint: dict, source: str, step: int = 0) -> str:
    """Log ``checkpoint`` (read as ``read_checkpoint`` does) as the run's model; returns its model id.
    A model the run logged before (it was resumed) is replaced: a run has one."""
    started = time.perf_counter()
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id)
    try:
        with tempfile.TemporaryDirectory() as staging:
            folder = save_pyfunc(
                checkpoint,
                Path(staging) / MODEL_NAME,
                Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id),
            )
            size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
            client.log_model_artifacts(logged.model_id, str(folder))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    # the model's card: where its captions came from, its classes' names, the base it was fine-tuned from
    card = {f"data.{key}": str(value) for key, value in data_facts(checkpoint).items()} | model_card(checkpoint)
    if card:
        client.set_logged_model_tags(logged.model_id, card)
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    for earlier in run_models(client, run_id, experiment_id):
        if earlier.model_id != logged.model_id:
            client.delete_logged_model(earlier.model_id)
    print(
        f"MLflow model runs:/{run_id}/{MODEL_NAME} logged from {source} "
        f"({size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)"
    )
    return logged.model_id
