"""``python -m aigc.push``: runs made offline copied into another store, indistinguishable from
runs logged there live, and pushing again adds nothing."""

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from aigc import push
from aigc.common import tags
from tests.conftest import all_runs, client_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vae_sweep")]


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    paths = []
    for artifact in client.list_artifacts(run_id, folder):
        paths += artifact_paths(client, run_id, artifact.path) if artifact.is_dir else [artifact.path]
    return sorted(paths)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple]:
    return [(p.step, p.timestamp, p.value) for p in client.get_metric_history(run_id, key)]


def without_links(run_tags: dict) -> dict:
    """A run's tags but those naming another run."""
    return {k: v for k, v in run_tags.items() if k not in ("mlflow.parentRunId", tags.PUSHED_FROM)}


def test_a_sweep_is_copied_whole_and_a_second_push_adds_nothing(vae_sweep: Path, tmp_path: Path, capsys):
    source = client_for(vae_sweep)
    sweep_folder = next((vae_sweep / "logs").rglob("multiruns/*"))
    target_uri = f"sqlite:///{tmp_path}/team.db"
    push.main([str(sweep_folder), f"to={target_uri}"])
    target = MlflowClient(target_uri)
    originals = {run.info.run_id: run for run in all_runs(source)}
    copies = {run.data.tags[tags.PUSHED_FROM]: run for run in all_runs(target)}
    assert set(copies) == set(originals) and len(copies) == 3  # the parent and its two jobs
    for run_id, original in originals.items():
        copy = copies[run_id]
        assert (
            target.get_experiment(copy.info.experiment_id).name
            == source.get_experiment(original.info.experiment_id).name
        )
        assert (copy.info.run_name, copy.info.status, copy.info.start_time, copy.info.end_time) == (
            original.info.run_name,
            original.info.status,
            original.info.start_time,
            original.info.end_time,
        )
        assert copy.data.params == original.data.params
        parent = original.data.tags.get("mlflow.parentRunId")
        assert copy.data.tags.get("mlflow.parentRunId") == (parent and copies[parent].info.run_id)
        assert without_links(copy.data.tags) == without_links(original.data.tags)
        for key in original.data.metrics:
            assert history(target, copy.info.run_id, key) == history(source, run_id, key), key
        assert artifact_paths(target, copy.info.run_id) == artifact_paths(source, run_id)
    job = next(run for run_id, run in copies.items() if "mlflow.parentRunId" in originals[run_id].data.tags)
    mlflow.set_tracking_uri(target_uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{job.info.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.metadata.run_id == job.info.run_id
    assert "3 runs pushed" in capsys.readouterr().out

    push.main([str(vae_sweep / "mlflow.db"), f"to={target_uri}"])  # the whole store: the sweep is there already
    assert "0 runs pushed" in capsys.readouterr().out
    assert len(all_runs(target)) == 3

    target.log_batch(job.info.run_id, metrics=[Metric("val/elbo", 0.0, 0, 99)])  # someone logged into the copy
    with pytest.raises(SystemExit) as refused:
        push.main([str(sweep_folder), f"to={target_uri}"])
    assert refused.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("Error: PushConflict: run ") and "metric val/elbo" in error and "\n" not in error
