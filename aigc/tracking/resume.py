"""Where a run left off: its last checkpoint, found from the MLflow run alone."""

from pathlib import Path

from mlflow import MlflowClient

from aigc.tracking.checkpoints import checkpoint_of_run

# set when a run starts: the folder its checkpoints are written to
CHECKPOINTS_TAG = "aigc.checkpoints"


def checkpoint_to_resume(client: MlflowClient, run_id: str, download_to: Path) -> str:
    """The run's ``last.ckpt``: in its checkpoint folder while that exists (a killed run logged no
    checkpoint artifact), else its ``last`` artifact, downloaded into ``download_to``."""
    run = client.get_run(run_id)
    local = Path(run.data.tags.get(CHECKPOINTS_TAG, "")) / "last.ckpt"
    if local.is_file():
        return str(local)
    download_to.mkdir(parents=True, exist_ok=True)
    try:
        return checkpoint_of_run(client, run_id, "last", str(download_to))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"run {run_id} has no checkpoint to resume from: neither {local} nor a 'last' artifact "
            "(a run killed before its first checkpoint can only start again)"
        ) from None
