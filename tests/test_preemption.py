"""A preemption warning (SIGUSR1) becomes a checkpoint at the next step and a clean stop: under a
(simulated) SLURM the job requeues itself and its next start continues the same MLflow run; elsewhere
the run ends KILLED and resume= continues it. Either way it ends as an uninterrupted run ends."""

import os
import stat
from pathlib import Path

import pytest

from aigc.common.errors import Preempted
from aigc.jobs.training import train
from tests.conftest import client_for, composed, only_run

pytestmark = pytest.mark.slow
COMMAND = ("model=vae", "data.download=false", "debug=fast", "trainer.limit_train_batches=5")
WARNED_AT_STEP_3 = ("+callbacks.warn._target_=tests.helpers.failures.SignalAtStep", "+callbacks.warn.step=3")


def losses(folder: Path) -> list[tuple[int, float]]:
    client = client_for(folder)
    return sorted((m.step, m.value) for m in client.get_metric_history(only_run(client).info.run_id, "train/loss"))


def same_curve(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Each step once, on the uninterrupted run's step axis, at its values."""
    return [step for step, _ in got] == [step for step, _ in expected] and [v for _, v in got] == pytest.approx(
        [v for _, v in expected], rel=1e-5
    )


def train_here(folder: Path, *overrides: str) -> None:
    with composed("train", folder, *overrides) as cfg:
        train(cfg)


@pytest.fixture
def uninterrupted(tmp_path: Path) -> list[tuple[int, float]]:
    folder = tmp_path / "uninterrupted"
    folder.mkdir()
    train_here(folder, *COMMAND)
    return losses(folder)


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch) -> Path:
    """A SLURM job's environment (one task), and an scontrol on the PATH that notes what it is asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.calls\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    job = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    job |= {"SLURM_NODEID": "0", "SLURM_JOB_NAME": "aigc-test", "SLURM_NODELIST": "localhost"}
    for key, value in job.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "scontrol.calls"


def test_a_preempted_slurm_job_requeues_and_continues_its_run_to_the_same_end(
    uninterrupted, slurm: Path, tmp_path: Path, monkeypatch
):
    folder = tmp_path / "cluster"
    folder.mkdir()
    with pytest.raises(Preempted) as stopped:
        train_here(folder, *COMMAND, *WARNED_AT_STEP_3)
    assert stopped.value.requeued == "4242" and stopped.value.checkpoint.endswith("preempted.ckpt")
    assert slurm.read_text() == "requeue 4242\n"
    run = only_run(client_for(folder))
    assert run.info.status == "KILLED" and run.data.tags["aigc.slurm.job_id"] == "4242"

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM starts the requeued job: the same command
    train_here(folder, *COMMAND, *WARNED_AT_STEP_3)
    continued = only_run(client_for(folder))
    assert continued.info.run_id == run.info.run_id and continued.info.status == "FINISHED"
    assert same_curve(losses(folder), uninterrupted)  # as if it had never stopped


@pytest.mark.parametrize("warning", ["SIGUSR1", "SIGTERM"])
def test_a_preempted_run_elsewhere_ends_killed_and_resume_continues_it(warning, uninterrupted, tmp_path: Path):
    folder = tmp_path / "laptop"
    folder.mkdir()
    warned = (*WARNED_AT_STEP_3, f"+callbacks.warn.name={warning}", f"callbacks.preemption.signal={warning}")
    with pytest.raises(Preempted) as stopped:
        train_here(folder, *COMMAND, *warned)
    assert stopped.value.requeued is None and stopped.value.signal_name == warning
    assert stopped.value.step == 4  # the step the warning came in, finished and logged
    assert Path(stopped.value.checkpoint).is_file()
    run = only_run(client_for(folder))
    assert run.info.status == "KILLED"

    train_here(folder, *COMMAND, *warned, f"resume={run.info.run_id}")
    assert only_run(client_for(folder)).info.status == "FINISHED"
    assert same_curve(losses(folder), uninterrupted)  # as if it had never stopped
