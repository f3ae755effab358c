"""Where a run left off: the newest of its checkpoints that loads, found from the MLflow run alone."""

from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

from aigc import tags
from aigc.stored import RUN_KEY, NotACheckpoint, read_checkpoint
from aigc.tracking.checkpoints import checkpoint_of_run


def checkpoint_to_resume(client: MlflowClient, run: Run, download_to: Path) -> tuple[str, dict]:
    """(path, checkpoint) of the newest checkpoint of ``run`` that loads and belongs to it.

    Looks in the run's checkpoint folder while that exists (a killed run logged no checkpoint
    artifact), else among its ``last`` and ``best`` artifacts, downloaded into ``download_to``.
    A file that does not load (cut short by a full disk, say) or that another run wrote is
    skipped, and the console says so and which checkpoint serves.
    """
    run_id = run.info.run_id
    folder = Path(run.data.tags.get(tags.CHECKPOINTS, ""))
    skipped: list[str] = []
    found = _newest(sorted(folder.glob("*.ckpt")) if folder.is_dir() else [], run_id, skipped)
    if found is None:
        download_to.mkdir(parents=True, exist_ok=True)
        downloaded = []
        for which in ("last", "best"):
            try:
                downloaded.append(Path(checkpoint_of_run(client, run_id, which, str(download_to))))
            except FileNotFoundError:
                pass
        found = _newest(downloaded, run_id, skipped)
    for reason in skipped:
        print(f"Resume: skipping {reason}")
    if found is None:
        raise FileNotFoundError(
            f"run {run_id} has no checkpoint to resume from: none in {folder} or its 'last'/'best' artifacts loads "
            "(a run killed before its first checkpoint can only start again)"
        )
    path, checkpoint = found
    print(
        f"Resume: from {path} (epoch {checkpoint.get('epoch')}, step {checkpoint.get('global_step')}), "
        f"the newest checkpoint of run {run_id} that loads"
    )
    return str(path), checkpoint


def _newest(paths: list[Path], run_id: str, skipped: list[str]) -> tuple[Path, dict] | None:
    readable = []
    for path in paths:
        try:
            checkpoint = read_checkpoint(path)
        except NotACheckpoint as error:
            skipped.append(str(error))
            continue
        owner = checkpoint.get(RUN_KEY)
        if owner != run_id:
            skipped.append(f"{path}: it belongs to run {owner}, not {run_id}")
            continue
        # the furthest training state; between equals, last.ckpt (saved after best-*.ckpt)
        readable.append(
            ((checkpoint.get("global_step", -1), checkpoint.get("epoch", -1), path.stem == "last"), path, checkpoint)
        )
    if not readable:
        return None
    _, path, checkpoint = max(readable, key=lambda item: item[0])
    return path, checkpoint
