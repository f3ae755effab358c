"""A preemption warning (SIGUSR1) becomes a checkpoint at the next step and a clean stop: under a
(simulated) SLURM the job requeues itself and its next start continues the same MLflow run; elsewhere
the run ends KILLED and resume= continues it. Either way it ends as an uninterrupted run ends."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigc.common.errors import Preempted
from aigc.jobs.training import train
from tests.conftest import client_for, composed, only_run, output_folders, user_env
from tests.servers import free_port

pytestmark = pytest.mark.slow
COMMAND = ("model=vae", "data.download=false", "debug=fast", "trainer.limit_train_batches=5")
# windows drawn at random from a text: its loader is resumable mid-epoch too
TEXT = ("model=transformer", "data=pydocs", "debug=fast", "trainer.limit_train_batches=5")
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


SLURM = Path(__file__).parent / "helpers" / "slurm"  # srun (two tasks on this machine) and scontrol
TWO_TASKS = (
    "trainer=multinode",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.num_nodes=1",
    "trainer.precision=32-true",
    "trainer.strategy.process_group_backend=gloo",
    "trainer.max_epochs=1",  # preempted in its middle
    "metrics.inception=false",
)


def srun(folder: Path, job: str, *overrides: str, restart: int = 0) -> subprocess.CompletedProcess:
    """``srun python -m aigc.run ...`` as the batch script of SLURM job ``job`` runs it: two tasks
    on one node, started by the ``srun`` of tests/helpers/slurm, which passes on the signals SLURM
    sends; ``restart``: how many times the job was requeued before this start."""
    job_env = {"SLURM_JOB_ID": job, "SLURM_JOB_NAME": "aigc-test", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2"}
    job_env |= {"SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_STEP_ID": "0"}
    job_env |= {"SLURM_RESTART_COUNT": str(restart), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    job_env |= {"PATH": f"{SLURM}{os.pathsep}{os.environ['PATH']}", "SCONTROL_CALLS": str(folder / "scontrol.calls")}
    command = ["srun", sys.executable, "-m", "aigc.run", *COMMAND, *TWO_TASKS, *overrides]
    return subprocess.run(command, cwd=folder, env=user_env(job_env), capture_output=True, text=True, timeout=300)


def test_a_preempted_slurm_job_requeues_and_continues_its_run_to_the_same_end(tmp_path: Path):
    uninterrupted, cluster = tmp_path / "uninterrupted", tmp_path / "cluster"
    for folder in (uninterrupted, cluster):
        folder.mkdir()
    whole = srun(uninterrupted, "4241")
    assert whole.returncode == 0, whole.stderr[-3000:]

    # SLURM's warning, sent to the job step (srun passes it to both tasks) when rank zero is at step 3
    warned = srun(cluster, "4242", "+callbacks.warn._target_=failures.WarnJobAtStep", "+callbacks.warn.step=3")
    assert warned.returncode == 0, warned.stderr[-3000:]  # requeued: the job's work is not lost
    assert "SLURM job 4242, requeued, continues it" in warned.stderr
    assert (cluster / "scontrol.calls").read_text() == "requeue 4242\n"  # once, by rank zero
    run = only_run(client_for(cluster))
    assert run.info.status == "KILLED" and run.data.tags["aigc.slurm.job_id"] == "4242"

    requeued = srun(cluster, "4242", restart=1)  # SLURM starts the requeued job: the same command
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    continued = only_run(client_for(cluster))
    assert continued.info.run_id == run.info.run_id and continued.info.status == "FINISHED"
    assert same_curve(losses(cluster), losses(uninterrupted))  # as if it had never stopped
    assert output_folders(cluster) == [cluster / "logs/debug/runs/slurm-4242.0"]  # one job step, one folder


@pytest.mark.parametrize(
    ("warning", "command"),
    [("SIGUSR1", COMMAND), ("SIGTERM", COMMAND), ("SIGUSR1", TEXT)],
    ids=["SIGUSR1", "SIGTERM", "text"],
)
def test_a_preempted_run_elsewhere_ends_killed_and_resume_continues_it(warning, command, tmp_path: Path):
    uninterrupted, folder = tmp_path / "uninterrupted", tmp_path / "laptop"
    for each in (uninterrupted, folder):
        each.mkdir()
    train_here(uninterrupted, *command)
    warned = (*WARNED_AT_STEP_3, f"+callbacks.warn.name={warning}", f"callbacks.preemption.signal={warning}")
    with pytest.raises(Preempted) as stopped:
        train_here(folder, *command, *warned)
    assert stopped.value.requeued is None and stopped.value.signal_name == warning
    assert stopped.value.step == 4  # the step the warning came in, finished and logged
    assert Path(stopped.value.checkpoint).is_file()
    run = only_run(client_for(folder))
    assert run.info.status == "KILLED"

    train_here(folder, *command, *warned, f"resume={run.info.run_id}")
    assert only_run(client_for(folder)).info.status == "FINISHED"
    assert same_curve(losses(folder), losses(uninterrupted))  # as if it had never stopped
