"""Find a run's checkpoint in MLflow (Lightning's MLFlowLogger logs them as ``<stem>/<stem>.ckpt``)."""

from mlflow import MlflowClient

from aigc.tracking.store.client import stored_run


def checkpoint_of_run(client: MlflowClient, run_id: str, which: str, folder: str) -> str:
    """Download the run's ``last`` or ``best`` checkpoint into ``folder``; returns its local path."""
    stored_run(client, run_id, f"run_id={run_id}")
    names = [a.path for a in client.list_artifacts(run_id) if a.is_dir]
    wanted = [n for n in names if n == "last"] if which == "last" else [n for n in names if n.startswith("best")]
    if not wanted:
        raise FileNotFoundError(f"run {run_id} has no '{which}' checkpoint artifact (it has: {names})")
    return client.download_artifacts(run_id, f"{wanted[-1]}/{wanted[-1]}.ckpt", folder)
