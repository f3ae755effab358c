"""Runs copied from one tracking store into another (``python -m aigc.push``): a laptop's or an
offline node's SQLite store into the team's server.

A run is copied whole: its name, start and end times, params, every metric point with its step
and timestamp, tags, artifacts, its MLflow models (their files, with the model's run and model ids
rewritten to the copy's), its dataset inputs, and last its status. A sweep's parent is copied
before its jobs, whose ``mlflow.parentRunId`` then names the parent's copy. The copy carries one
more tag, ``aigc.pushed_from`` (the source run's id): it is how a second push finds what the first
copied, so that pushing again adds nothing; a copy whose content differs from its source (someone
logged into either since) is refused in one line, and a copy a push left unfinished (its status is
written last) is replaced.

Why not mlflow-export-import (1.2.0, measured against MLflow 3.17.2 on 2026-12-02, docs/team.md):
into a SQLite store its import stops at the experiment's creation; through a server it keeps
params, metric histories, artifacts and the parent link, but drops the runs' start and end times
and their user, leaves MLflow 3's logged models behind (``runs:/<id>/model`` does not load), and a
second import creates every run again.
"""

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param, Run, RunStatus
from mlflow.models import Model
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from aigc.common import tags
from aigc.tracking.store.client import experiment_id

METRICS_PER_BATCH = 1000  # MLflow's limits for one log_batch
PARAMS_PER_BATCH = 100
# tags that name the source store's runs and models (a copy's parent is named anew)
NOT_COPIED = {MLFLOW_PARENT_RUN_ID, "mlflow.log-model.history"}


class PushConflict(RuntimeError):
    """A run was pushed before, and the copy now differs from its source."""


@dataclass(frozen=True)
class Pushed:
    copied: list[str]  # source run ids copied now
    already: list[str]  # source run ids whose copy was there, the same


def push(source: MlflowClient, runs: Iterable[Run], target: MlflowClient, say: Callable[[str], None] = print) -> Pushed:
    """Copy ``runs`` (parents first) from ``source`` into ``target``; see the module's docstring."""
    copies: dict[str, str] = {}  # source run id -> the copy's id
    copied, already = [], []
    for run in sorted(runs, key=lambda run: MLFLOW_PARENT_RUN_ID in run.data.tags):
        if not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
            say(
                f"Skipped run {run.info.run_id} ({run.info.run_name}): still {run.info.status}; "
                "push it when it has ended"
            )
            continue
        name = source.get_experiment(run.info.experiment_id).name
        target_experiment = experiment_id(target, name)
        found = _copy_of(target, target_experiment, run.info.run_id)
        if found is not None and RunStatus.is_terminated(RunStatus.from_string(found.info.status)):
            difference = _difference(source, run, target, found)
            if difference:
                raise PushConflict(
                    f"run {run.info.run_id} ({run.info.run_name}) was pushed before as {found.info.run_id} in "
                    f"{target.tracking_uri}, and they now differ ({difference}): delete that copy to push it again"
                )
            copies[run.info.run_id] = found.info.run_id
            already.append(run.info.run_id)
            continue
        if found is not None:  # an earlier push stopped midway: its status is written last
            target.delete_run(found.info.run_id)
        parent = copies.get(run.data.tags.get(MLFLOW_PARENT_RUN_ID, ""))
        copies[run.info.run_id] = _copy(source, run, target, target_experiment, parent)
        copied.append(run.info.run_id)
        say(f"Pushed run {run.info.run_id} ({run.info.run_name}) as {copies[run.info.run_id]} into experiment '{name}'")
    return Pushed(copied, already)


def _copy_of(target: MlflowClient, experiment: str, run_id: str) -> Run | None:
    found = target.search_runs([experiment], filter_string=f"tags.`{tags.PUSHED_FROM}` = '{run_id}'", max_results=2)
    return found[0] if found else None


def _copy(source: MlflowClient, run: Run, target: MlflowClient, experiment: str, parent: str | None) -> str:
    copied_tags = {key: value for key, value in run.data.tags.items() if key not in NOT_COPIED}
    copied_tags[tags.PUSHED_FROM] = run.info.run_id
    if parent is not None:
        copied_tags[MLFLOW_PARENT_RUN_ID] = parent
    copy = target.create_run(experiment, start_time=run.info.start_time, tags=copied_tags, run_name=run.info.run_name)
    copy_id = copy.info.run_id
    params = [Param(key, value) for key, value in run.data.params.items()]
    for start in range(0, len(params), PARAMS_PER_BATCH):
        target.log_batch(copy_id, params=params[start : start + PARAMS_PER_BATCH])
    for key in run.data.metrics:
        history = [Metric(p.key, p.value, p.timestamp, p.step) for p in source.get_metric_history(run.info.run_id, key)]
        for start in range(0, len(history), METRICS_PER_BATCH):
            target.log_batch(copy_id, metrics=history[start : start + METRICS_PER_BATCH])
    if run.inputs and run.inputs.dataset_inputs:
        target.log_inputs(copy_id, datasets=run.inputs.dataset_inputs)
    with tempfile.TemporaryDirectory() as staging:
        if source.list_artifacts(run.info.run_id):
            target.log_artifacts(copy_id, source.download_artifacts(run.info.run_id, "", staging))
    _copy_models(source, run, target, experiment, copy_id)
    target.set_terminated(copy_id, run.info.status, end_time=run.info.end_time)
    return copy_id


def _copy_models(source: MlflowClient, run: Run, target: MlflowClient, experiment: str, copy_id: str) -> None:
    """The run's MLflow 3 logged models: each created anew on the target, its files copied, their
    MLmodel pointing at the copy (``runs:/<copy>/model`` then loads it)."""
    outputs = {output.model_id: output.step for output in (run.outputs.model_outputs if run.outputs else [])}
    for model in _models_of(source, run):
        copy = target.create_logged_model(
            experiment,
            name=model.name,
            source_run_id=copy_id,
            tags={key: value for key, value in model.tags.items() if not key.startswith("mlflow.")},
            params=model.params,
            model_type=model.model_type,
        )
        with tempfile.TemporaryDirectory() as staging:
            files = Path(_download_model(source, model.model_id, staging))
            description = files / "MLmodel"
            if description.exists():
                stored = Model.load(description)
                stored.run_id, stored.model_id, stored.artifact_path = copy_id, copy.model_id, copy.artifact_location
                stored.save(description)
            target.log_model_artifacts(copy.model_id, str(files))
        target.finalize_logged_model(copy.model_id, LoggedModelStatus.READY)
        if model.model_id in outputs:
            target.log_outputs(copy_id, [LoggedModelOutput(copy.model_id, outputs[model.model_id])])


def _models_of(client: MlflowClient, run: Run) -> list:
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    return [model for model in found if str(model.status) == str(LoggedModelStatus.READY)]


def _download_model(client: MlflowClient, model_id: str, into: str) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(
        artifact_uri=client.get_logged_model(model_id).artifact_location,
        dst_path=into,
        tracking_uri=client.tracking_uri,
    )


def _difference(source: MlflowClient, run: Run, target: MlflowClient, copy: Run) -> str:
    """What differs between a run and its copy (empty: nothing): status, params, tags, metric histories."""
    if run.info.status != copy.info.status:
        return f"status {run.info.status} against {copy.info.status}"
    for what, mine, theirs in (
        ("param", run.data.params, copy.data.params),
        ("tag", _comparable(run.data.tags), _comparable(copy.data.tags)),
    ):
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                return f"{what} {key}: {mine.get(key)!r} against {theirs.get(key)!r}"
    for key in sorted(set(run.data.metrics) | set(copy.data.metrics)):
        points = [(p.step, p.timestamp, p.value) for p in source.get_metric_history(run.info.run_id, key)]
        copied = [(p.step, p.timestamp, p.value) for p in target.get_metric_history(copy.info.run_id, key)]
        if sorted(points) != sorted(copied):
            return f"metric {key}: {len(points)} points against {len(copied)}"
    return ""


def _comparable(run_tags: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in run_tags.items() if key not in NOT_COPIED and key != tags.PUSHED_FROM}
