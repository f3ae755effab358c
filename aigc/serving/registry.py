"""Runs' MLflow models in a store: finding a run's model, resolving a model URI, registering.

A run's model is the logged model named ``model`` whose source run it is
(``aigc.serving.logged_model`` logs it). Every reader here says in one line what is missing.
"""

from pathlib import Path

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from aigc.tracking.store.checkpoints import checkpoint_of_run
from aigc.tracking.store.client import open_store, stored_run

MODEL_NAME = "model"
WEIGHTS_FILE = "artifacts/weights.pt"  # in a model's folder (aigc.serving.pyfunc)
URI_FORMS = "runs:/<run id>/model, models:/<name>@<alias>, models:/<name>/<version> or models:/<model id>"


def run_models(client: MlflowClient, run_id: str, experiment_id: str | None = None) -> list[LoggedModel]:
    """The run's logged models named ``model``, READY ones first."""
    experiment_id = experiment_id or client.get_run(run_id).info.experiment_id
    found, token = [], None
    while True:
        page = client.search_logged_models([experiment_id], filter_string=f"name = '{MODEL_NAME}'", page_token=token)
        found += [model for model in page if model.source_run_id == run_id]
        if not page.token:
            break
        token = page.token
    return sorted(found, key=lambda model: model.status != LoggedModelStatus.READY)


def model_of_run(client: MlflowClient, run_id: str) -> LoggedModel:
    stored_run(client, run_id, f"run_id={run_id}")
    ready = [model for model in run_models(client, run_id) if model.status == LoggedModelStatus.READY]
    if not ready:
        raise LookupError(
            f"run {run_id} has no MLflow model (it ran with logger.mlflow.pyfunc=false, failed, or was logged "
            "before aigc logged models): use one of its checkpoints, checkpoint=best or checkpoint=last"
        )
    return ready[0]


def logged_model(client: MlflowClient, uri: str) -> LoggedModel:
    """The logged model a URI names, in any of the forms of ``URI_FORMS``."""
    scheme, _, path = uri.partition(":/")
    parts = path.strip("/").split("/")
    if scheme == "runs" and len(parts) == 2 and parts[1] == MODEL_NAME:
        return model_of_run(client, parts[0])
    if scheme != "models" or not parts[0] or len(parts) > 2:
        raise ValueError(f"model_uri={uri} is not a model URI: give {URI_FORMS}")
    if len(parts) == 1 and parts[0].startswith("m-"):
        return _existing(lambda: client.get_logged_model(parts[0]), f"there is no logged model {parts[0]}")
    version = registered_version(client, uri)
    # the registry keeps the logged model as the version's source (models:/<model id>)
    model_id = version.model_id or version.source.removeprefix("models:/")
    return _existing(lambda: client.get_logged_model(model_id), f"{uri}: its logged model {model_id} is gone")


def registered_version(client: MlflowClient, uri: str) -> ModelVersion:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> that version."""
    path = uri.partition(":/")[2].strip("/")
    name, alias = path.split("@", 1) if "@" in path else (path.split("/")[0], None)
    names = [model.name for model in client.search_registered_models()]
    if name not in names:
        raise LookupError(f"{uri}: no registered model named '{name}' (registered: {', '.join(names) or 'none'})")
    if alias is not None:
        aliases = client.get_registered_model(name).aliases
        if alias not in aliases:
            known = ", ".join(aliases) or "none"
            raise LookupError(f"{uri}: model '{name}' has no alias '{alias}' (its aliases: {known})")
        return client.get_model_version(name, str(aliases[alias]))
    version = path.split("/")[1] if "/" in path else ""
    if not version.isdigit():
        raise ValueError(f"model_uri={uri} is not a model URI: give {URI_FORMS}")
    return _existing(lambda: client.get_model_version(name, version), f"{uri}: model '{name}' has no version {version}")


def download_weights(model: LoggedModel, folder: str, tracking_uri: str) -> Path:
    """The model's ``weights.pt``, downloaded into ``folder`` (none of the folder's code is run)."""
    uri = f"{model.artifact_location}/{WEIGHTS_FILE}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder, tracking_uri=tracking_uri))


def register(client: MlflowClient, run_id: str, name: str, alias: str | None = None) -> ModelVersion:
    """A new version of the registered model ``name`` (created if new) from the run's model; ``alias`` points at it."""
    model = model_of_run(client, run_id)
    if name not in [registered.name for registered in client.search_registered_models(f"name = '{name}'")]:
        client.create_registered_model(name)
    version = client.create_model_version(name, model.model_uri, run_id=run_id, model_id=model.model_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    where = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version.version}"
    print(f"Registered the model of run {run_id} as {name} version {version.version}: {where}")
    return version


def _existing(read, missing: str):
    try:
        return read()
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise LookupError(missing) from None
        raise


def weights_named(cfg, folder: str, purpose: str) -> tuple[Path, str]:
    """The weights file that a command's ``run_id`` (its MLflow model, or its ``checkpoint``:
    last, best), ``model_uri`` or ``ckpt_path`` names (exactly one of them), fetched into
    ``folder``, and how to name it in messages."""
    given = [key for key in ("run_id", "model_uri", "ckpt_path") if cfg.get(key)]
    if len(given) != 1:
        raise ValueError(
            f"say which model to {purpose}, once: run_id=<mlflow run id>, model_uri=<runs:/ or models:/ URI> "
            f"or ckpt_path=<checkpoint file> (given: {', '.join(given) or 'none'})"
        )
    if cfg.ckpt_path:
        return Path(cfg.ckpt_path), str(cfg.ckpt_path)
    client = open_store(cfg.tracking_uri)
    if cfg.model_uri:
        model, source = logged_model(client, cfg.model_uri), cfg.model_uri
    elif cfg.checkpoint == "model":
        model, source = model_of_run(client, cfg.run_id), f"runs:/{cfg.run_id}/model"
    else:
        path = checkpoint_of_run(client, cfg.run_id, cfg.checkpoint, folder)
        return Path(path), f"the {cfg.checkpoint} checkpoint of run {cfg.run_id}"
    return download_weights(model, folder, cfg.tracking_uri), source
