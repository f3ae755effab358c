"""One Optuna study worked on by several sweep commands ("machines") at once: on PostgreSQL and on
a journal file; a sweeper SIGKILLed mid-trial has its trial failed and tried again."""

import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from hydra_plugins.aigc_optuna_sweeper.optuna_sweeper import NOT_RUN, study_storage
from tests.conftest import all_runs, client_for, interrupt_when, run_aigc, start_aigc, user_env
from tests.servers import Postgres

pytestmark = pytest.mark.slow

STUDY = "transformer_pydocs_loss"  # hparams_search=transformer_optuna's
SWEEP = ("-m", "hparams_search=transformer_optuna", "debug=fast")


def sweep_tree(client: MlflowClient) -> tuple[list, list]:
    runs = all_runs(client)
    parents = [run for run in runs if run.data.tags.get("aigc.sweep.role") == "parent"]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    return parents, children


@pytest.fixture
def postgres():
    server = Postgres().start()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_two_sweep_commands_share_one_study_and_one_parent_run(kind, tmp_path: Path, request):
    shared = tmp_path / "shared"  # what both machines reach: the study, and the MLflow store
    shared.mkdir()
    if kind == "postgresql":
        storage = request.getfixturevalue("postgres").database("studies")
    else:
        storage = f"journal:///{shared}/studies.log"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{shared}/mlflow.db"}
    command = [sys.executable, "-m", "aigc.run", *SWEEP, "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}"]
    machines = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        machines.append(
            subprocess.Popen(command, cwd=tmp_path / name, env=user_env(env), stdout=subprocess.PIPE, text=True)
        )
    outputs = [machine.communicate(timeout=300)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], outputs

    trials = optuna.load_study(study_name=STUDY, storage=study_storage(storage)).trials
    trials = [t for t in trials if not t.user_attrs.get(NOT_RUN)]  # asked for with the last one: given up
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # distinct points, none run twice
    parents, children = sweep_tree(MlflowClient(env["MLFLOW_TRACKING_URI"]))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(int(c.data.tags["aigc.sweep.job"]) for c in children) == [0, 1, 2, 3]
    # both machines worked on it: each ran trials in its own output folder
    assert {Path(c.data.tags["aigc.sweep.dir"]).relative_to(tmp_path).parts[0] for c in children} == {"a", "b"}


def test_a_sigkilled_sweepers_trial_fails_and_its_parameters_are_tried_again(tmp_path: Path):
    command = (*SWEEP, "hydra.sweeper.n_trials=2", "hydra.sweeper.heartbeat_s=1", "trainer.limit_train_batches=40")
    process = start_aigc(tmp_path, *command)

    def first_trial_training(client) -> bool:
        return any(run.data.metrics.get("train/loss") is not None for run in sweep_tree(client)[1])

    interrupt_when(process, tmp_path, first_trial_training, signal.SIGKILL, "the first trial training")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (killed,) = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert killed.state.name == "RUNNING"  # nobody is left to say otherwise

    result = run_aigc(tmp_path, *command)  # the same command, later (after the 2 s grace period)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == killed.params and trials[1].system_attrs["failed_trial"] == 0
    assert trials[2].params != killed.params  # and the count made up with a new point
    parents, children = sweep_tree(client_for(tmp_path))
    assert len(parents) == 1 and sorted(c.data.tags["aigc.sweep.job"] for c in children) == ["0", "1", "2"]
