"""`resume=<run id>`: a run killed mid-way (SIGKILL) continues from its last checkpoint in the same
MLflow run, on the same step axis, and ends where an uninterrupted run ends. The killed run is a
process of its own; the others train in this one."""

from collections import Counter
from pathlib import Path

import pytest

from aigc.jobs.training import train
from tests.conftest import client_for, composed, only_run, run_aigc

pytestmark = pytest.mark.slow
COMMAND = ("model=transformer", "data=pydocs", "debug=fast", "trainer.max_epochs=4")
KILL_IN_EPOCH_2 = (
    "+callbacks.kill._target_=failures.KillAtBatch",
    "+callbacks.kill.epoch=2",
    "+callbacks.kill.batch=1",
)


def history(client, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def train_here(folder: Path, *overrides: str) -> float | None:
    """What `python -m aigc.run <overrides>` does in ``folder``, in this process."""
    with composed("train", folder, *overrides) as cfg:
        return train(cfg)


def test_killed_run_resumes_into_the_same_run_and_ends_as_if_never_stopped(tmp_path: Path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    uninterrupted.mkdir(), interrupted.mkdir()
    train_here(uninterrupted, *COMMAND)
    killed = run_aigc(interrupted, *COMMAND, *KILL_IN_EPOCH_2)
    assert killed.returncode == -9  # SIGKILL: no handler ran, the run was left RUNNING
    client = client_for(interrupted)
    run_id = only_run(client).info.run_id

    with pytest.raises(ValueError, match=r"resume with the run's own overrides \(model=transformer data=pydocs"):
        train_here(interrupted, f"resume={run_id}")  # without the run's overrides: another model

    train_here(interrupted, *COMMAND, f"resume={run_id}")
    run = only_run(client)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    reference = only_run(client_for(uninterrupted))
    expected = history(client_for(uninterrupted), reference, "val/loss")
    assert [step for step, _ in history(client, run, "val/loss")] == [step for step, _ in expected]
    assert [value for _, value in history(client, run, "val/loss")] == pytest.approx([v for _, v in expected], rel=1e-5)
    # the steps between the last checkpoint and the kill were trained twice, and logged once
    steps = [step for step, _ in history(client, run, "train/loss")]
    assert Counter(steps).most_common(1)[0][1] == 1
    assert steps == [step for step, _ in history(client_for(uninterrupted), reference, "train/loss")]
    # what the resumed command changed is a tag, not a changed param
    assert "callbacks.kill._target_: failures.KillAtBatch -> (none)" in run.data.tags["aigc.resume.changed"]
    assert run.data.params["callbacks.kill._target_"] == "failures.KillAtBatch"
