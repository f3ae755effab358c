"""Sweeps (`python -m aigc.run -m ...`): one MLflow parent run, a child run per job, an Optuna
study that survives an interrupt, and parallel writers that lose nothing."""

import functools
import math
import signal
from pathlib import Path

import optuna
import pytest
from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import OmegaConf

from aigc.tracking.run.sweep import SweepRun
from hydra_plugins.aigc_optuna_sweeper.optuna_sweeper import ask, beyond_n_trials, finished_trials, search_space
from tests.conftest import CONF_DIR, all_runs, client_for, composed, interrupt_when, run_aigc, start_aigc

# a GPT trial of a few batches on pydocs (ships with Python)
LM_TRIAL = ("debug=fast",)


def parents_and_children(client: MlflowClient) -> tuple[list[Run], list[Run]]:
    runs = all_runs(client)
    parents = [run for run in runs if run.data.tags.get("aigc.sweep.role") == "parent"]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) + len(children) == len(runs), "a run outside the sweep tree"
    return parents, children


def trials(folder: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{folder}/optuna.db").trials


@pytest.mark.parametrize("name", sorted(path.stem for path in (CONF_DIR / "hparams_search").glob("*.yaml")))
def test_hparams_search_configs_compose_into_an_optuna_sweep(compose_cfg, name):
    cfg = compose_cfg(f"hparams_search={name}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == cfg.objective.mode == "min"
    space, fixed = search_space([f"{key}={value}" for key, value in sweeper.params.items()])
    assert len(space) >= 3 and not fixed
    for key in space:  # every searched key exists in the composed config
        assert OmegaConf.select(cfg, key) is not None, key
    assert isinstance(instantiate(sweeper.sampler)(seed=1), optuna.samplers.TPESampler)
    assert isinstance(instantiate(sweeper.pruner), optuna.pruners.MedianPruner)


@pytest.mark.parametrize(
    "name, pruner",
    [
        ("none", optuna.pruners.NopPruner),
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
    ],
)
def test_pruners_compose_from_their_config_group(compose_cfg, name, pruner):
    cfg = compose_cfg("hparams_search=transformer_optuna", f"hydra/sweeper/pruner={name}")
    assert isinstance(instantiate(cfg.hydra.sweeper.pruner), pruner)


def test_search_space_reads_hydra_sweep_syntax():
    space, fixed = search_space(
        ["lr=tag(log, interval(1e-4, 1e-2))", "layers=range(2, 9, 2)", "act=choice(relu, gelu)", "seed=3"]
    )
    assert space["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["layers"] == optuna.distributions.IntDistribution(2, 8, step=2)
    assert space["act"] == optuna.distributions.CategoricalDistribution(["relu", "gelu"])
    assert fixed == ["seed=3"]


@pytest.mark.slow
@pytest.mark.xdist_group("vae_sweep")
def test_basic_sweep_is_one_parent_run_with_a_child_per_job(vae_sweep: Path):
    client = client_for(vae_sweep)
    (parent,), children = parents_and_children(client)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["aigc.sweep.id"] for c in children} == {parent.data.tags["aigc.sweep.id"]}
    assert sorted(c.data.tags["aigc.sweep.job"] for c in children) == ["0", "1"]
    assert sorted("model.beta=0.5" in c.info.run_name for c in children) == [False, True]  # named from overrides
    assert {c.info.experiment_id for c in children} == {parent.info.experiment_id}
    assert client.get_experiment(parent.info.experiment_id).name == "vae-mnist"
    # the parent names the best job (VAE: highest ELBO) and its value
    best = max(children, key=lambda c: c.data.metrics["val/elbo"])
    assert parent.data.tags["aigc.sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best/val/elbo"] == best.data.metrics["val/elbo"]
    # register=<name>: the best job's MLflow model, and only it, is registered, the alias on it
    assert client.get_model_version_by_alias("vae-of-a-sweep", "champion").run_id == best.info.run_id
    assert len(client.search_model_versions("name = 'vae-of-a-sweep'")) == 1
    assert parent.data.params["sweeper._target_"].endswith("BasicSweeper")
    assert any(a.path.startswith("sweep") for a in client.list_artifacts(parent.info.run_id))


def interrupt_during_second_job(folder: Path, *command: str) -> None:
    """Start the sweep, press Ctrl-C while its job 1 runs; the sweep exits 130."""
    process = start_aigc(folder, *command)

    def second_job_running(client) -> bool:
        return any(r.data.tags.get("aigc.sweep.job") == "1" and r.info.status == "RUNNING" for r in all_runs(client))

    output = interrupt_when(process, folder, second_job_running, signal.SIGINT, "the second job")
    assert process.returncode == 130, output[-3000:]


@pytest.mark.slow
def test_interrupted_optuna_sweep_resumes_the_same_study_and_parent_run(tmp_path: Path):
    # trials long enough to be interrupted in the middle
    command = (
        "-m",
        "hparams_search=transformer_optuna",
        "hydra.sweeper.n_trials=2",
        *LM_TRIAL,
        "trainer.limit_train_batches=20",
    )
    interrupt_during_second_job(tmp_path, *command)
    client = client_for(tmp_path)
    (parent,), children = parents_and_children(client)
    assert parent.info.status == "KILLED"
    assert sorted(c.info.status for c in children) == ["FINISHED", "KILLED"]
    assert [t.state.name for t in trials(tmp_path, "transformer_pydocs_loss")] == ["COMPLETE", "FAIL"]

    result = run_aigc(tmp_path, *command)  # the same command again
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 2 trials finished" in result.stdout
    (resumed,), children = parents_and_children(client)
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 2 + ["KILLED"]
    states = [t.state.name for t in trials(tmp_path, "transformer_pydocs_loss")]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    # job number = trial number, and the resumed trial is a new point, not a replay
    finished = {c.data.tags["aigc.sweep.job"]: c for c in children if c.info.status == "FINISHED"}
    assert sorted(finished) == ["0", "2"]
    assert len({c.data.params["model.optimizer.lr"] for c in finished.values()}) == 2
    best = min(finished.values(), key=lambda c: c.data.metrics["val/loss"])
    assert resumed.data.tags["aigc.sweep.best_run_id"] == best.info.run_id


@pytest.mark.slow
def test_a_pruned_sweep_prunes_hopeless_trials_keeps_their_runs_and_resumes(tmp_path: Path):
    command = [
        "-m",
        "hparams_search=transformer_optuna",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.n_trials=3",
        *LM_TRIAL,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=12",
        "+trainer.val_check_interval=4",  # three evaluations a trial: the pruner may stop it after each
    ]
    result = run_aigc(tmp_path, *command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Error" not in result.stderr
    study = trials(tmp_path, "transformer_pydocs_loss")
    states = {t.number: t.state.name for t in study}
    assert states[0] == "COMPLETE" and set(states.values()) == {"COMPLETE", "PRUNED"}, states
    assert list(study[0].intermediate_values) == [3, 7, 11]  # each evaluation, at the step of the curves
    client = client_for(tmp_path)
    (parent,), children = parents_and_children(client)
    by_job = {int(c.data.tags["aigc.sweep.job"]): c for c in children}
    for number, state in states.items():
        run = by_job[number]
        pruned = state == "PRUNED"
        assert run.info.status == ("KILLED" if pruned else "FINISHED")
        assert run.data.tags.get("aigc.sweep.pruned") == ("true" if pruned else None)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
        assert steps and (len(steps) < 3 if pruned else len(steps) == 3), steps  # what it logged stays
        if pruned:
            assert f"Trial {number} pruned at step {steps[-1]}: val/loss=" in result.stdout
    # the best job is a finished one
    best = min((c for c in children if c.info.status == "FINISHED"), key=lambda c: c.data.metrics["val/loss"])
    assert parent.info.status == "FINISHED" and parent.data.tags["aigc.sweep.best_run_id"] == best.info.run_id

    command[command.index("hydra.sweeper.n_trials=3")] = "hydra.sweeper.n_trials=4"
    result = run_aigc(tmp_path, *command)  # pruned trials count as finished: one more trial
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 of 4 trials finished" in result.stdout
    assert len(trials(tmp_path, "transformer_pydocs_loss")) == 4
    (resumed,), children = parents_and_children(client)
    assert resumed.info.run_id == parent.info.run_id and len(children) == 4


@pytest.mark.slow
def test_interrupted_grid_resumes_in_the_same_parent_run_without_redoing_finished_jobs(tmp_path: Path):
    command = ("-m", "model=transformer", "data=pydocs", *LM_TRIAL, "seed=1,2", "trainer.limit_train_batches=20")
    interrupt_during_second_job(tmp_path, *command)
    client = client_for(tmp_path)
    (parent,), children = parents_and_children(client)
    assert parent.info.status == "KILLED"
    first = next(c for c in children if c.info.status == "FINISHED")

    result = run_aigc(tmp_path, *command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"This job finished before in the same sweep (MLflow run {first.info.run_id})" in result.stdout
    (resumed,), children = parents_and_children(client)
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    jobs = sorted((c.data.tags["aigc.sweep.job"], c.info.status) for c in children)
    assert jobs == [("0", "FINISHED"), ("1", "FINISHED"), ("1", "KILLED")]


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path):
    result = run_aigc(
        tmp_path,
        "-m",
        "hparams_search=transformer_optuna",
        "hydra.sweeper.n_trials=2",
        *LM_TRIAL,
        "+callbacks.boom._target_=failures.RaiseAtBatch",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trial 0 failed: RuntimeError: injected failure" in result.stdout
    assert [t.state.name for t in trials(tmp_path, "transformer_pydocs_loss")] == ["FAIL", "FAIL"]
    (parent,), children = parents_and_children(client_for(tmp_path))
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]
    assert parent.info.status == "FINISHED" and "aigc.sweep.best_run_id" not in parent.data.tags


@pytest.mark.slow
def test_a_failed_job_fails_a_basic_sweep_and_keeps_the_others(tmp_path: Path):
    result = run_aigc(
        tmp_path,
        "-m",
        "model=transformer",
        "data=pydocs",
        *LM_TRIAL,
        "+callbacks.boom._target_=failures.RaiseAtBatch",
        "+callbacks.boom.batch=1,1000",
    )
    assert result.returncode != 0
    assert "Error: RuntimeError: injected failure" in result.stderr
    (parent,), children = parents_and_children(client_for(tmp_path))
    assert parent.info.status == "FAILED"
    status = {c.data.tags["aigc.sweep.job"]: c.info.status for c in children}
    assert status == {"0": "FAILED", "1": "FINISHED"}
    assert parent.data.tags["aigc.sweep.best_run_id"] == next(
        c.info.run_id for c in children if c.info.status == "FINISHED"
    )


@pytest.mark.slow
def test_parallel_jobs_with_joblib_lose_nothing(tmp_path: Path):
    result = run_aigc(
        tmp_path,
        "-m",
        "hparams_search=transformer_optuna",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        *LM_TRIAL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "locked" not in result.stdout + result.stderr
    client = client_for(tmp_path)
    (parent,), children = parents_and_children(client)
    assert sorted(c.data.tags["aigc.sweep.job"] for c in children) == ["0", "1", "2", "3"]
    assert all(c.info.status == "FINISHED" and math.isfinite(c.data.metrics["val/loss"]) for c in children)
    assert [e.name for e in client.search_experiments()] == ["transformer-pydocs", "Default"]
    assert not client.search_runs(["0"])  # nothing filed in Default
    assert [t.state.name for t in trials(tmp_path, "transformer_pydocs_loss")] == ["COMPLETE"] * 4


@pytest.mark.slow
def test_submitit_local_jobs_are_child_runs_of_the_sweep_as_slurm_jobs_would_be(tmp_path: Path):
    """hydra/launcher=submitit_local: each job a process of its own, started as SLURM's would be."""
    result = run_aigc(
        tmp_path,
        "-m",
        "hparams_search=transformer_optuna",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        *LM_TRIAL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,), children = parents_and_children(client_for(tmp_path))
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.tags["aigc.sweep.job"] for c in children) == ["0", "1"]
    assert {(c.info.status, c.data.tags["mlflow.parentRunId"]) for c in children} == {("FINISHED", parent.info.run_id)}
    assert [t.state.name for t in trials(tmp_path, "transformer_pydocs_loss")] == ["COMPLETE"] * 2
    assert len(list((tmp_path / "logs").rglob("*_0_log.out"))) == 2  # submitit ran each job in a process


@pytest.mark.slow
def test_two_sweeps_at_once_on_a_new_store_lose_nothing(tmp_path: Path):
    sweeps = [
        start_aigc(
            tmp_path,
            "-m",
            "model=transformer",
            "data=pydocs",
            *LM_TRIAL,
            f"seed={seed}",
            f"hydra.sweep.dir=sweep{seed}",
        )
        for seed in (1, 2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in sweeps]
    for process, output in zip(sweeps, outputs, strict=False):
        assert process.returncode == 0, output[-3000:]
        assert "locked" not in output
    client = client_for(tmp_path)
    parents, children = parents_and_children(client)
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    for parent in parents:
        (mine,) = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert mine.info.status == "FINISHED" and mine.info.experiment_id == parent.info.experiment_id
    assert not client.search_runs(["0"])  # nothing filed in Default


def sweep_starts_here(folder: Path, capsys, *overrides: str) -> str:
    """What the sweep's MLflow callback does when `python -m aigc.run -m <overrides>` starts, before
    any job: here it must stop the command. Returns what it printed on stderr."""
    capsys.readouterr()
    with composed("train", folder, *overrides) as cfg, pytest.raises(SystemExit) as stopped:
        SweepRun().on_multirun_start(cfg)
    assert stopped.value.code == 1
    return capsys.readouterr().err


def test_sweep_with_an_unreachable_server_stops_before_any_job(tmp_path: Path, capsys):
    printed = sweep_starts_here(tmp_path, capsys, "model=vae", "logger.mlflow.tracking_uri=http://127.0.0.1:9")
    assert "Error: MLflow tracking server http://127.0.0.1:9 is unreachable" in printed


@pytest.mark.parametrize(
    "override, message",
    [
        ("hydra.sweeper.pruner.n_startup_trials=-1", "Number of startup trials cannot be negative"),
        ("hydra.sweeper.storage=sqlite:////nonexistent/optuna.db", "the study's database can't be opened"),
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0: should be at least 1"),
        ("hydra.sweeper.n_jobs=-1", "hydra.sweeper.n_jobs=-1: should be at least 1"),
    ],
)
def test_a_bad_sweeper_config_stops_in_one_line_before_any_run(tmp_path: Path, capsys, override: str, message: str):
    printed = sweep_starts_here(tmp_path, capsys, "hparams_search=transformer_optuna", *LM_TRIAL, override)
    errors = [line for line in printed.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: hydra.sweeper: ") and message in errors[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_sweepers_that_open_a_study_together_draw_distinct_points_and_a_new_study_the_same_ones(tmp_path: Path):
    space, _ = search_space(["lr=tag(log, interval(1e-4, 1e-2))", "layers=range(2, 9, 2)", "act=choice(relu, gelu)"])
    sampler = functools.partial(optuna.samplers.TPESampler, n_startup_trials=2)

    def two_machines(storage: str) -> list[dict]:
        # both load the study before either asks, as two commands started in the same second do
        a, b = (optuna.create_study(study_name="s", storage=storage, load_if_exists=True) for _ in range(2))
        trials = [ask(study, space, sampler, seed=7) for study in (a, b, a, b)]
        for trial in trials:
            trial.study.tell(trial, trial.params["lr"])
        return [trial.params for trial in trials]

    first = two_machines(f"sqlite:///{tmp_path}/a.db")
    assert len({tuple(sorted(params.items())) for params in first}) == 4
    assert two_machines(f"sqlite:///{tmp_path}/b.db") == first


def test_two_sweepers_that_each_ask_for_the_last_trial_run_it_once(tmp_path: Path):
    space, _ = search_space(["lr=interval(1e-4, 1e-2)"])
    storage = f"sqlite:///{tmp_path}/studies.db"
    a, b = (optuna.create_study(study_name="s", storage=storage, load_if_exists=True) for _ in range(2))
    for _ in range(3):
        trial = ask(a, space, optuna.samplers.RandomSampler, seed=0)
        a.tell(trial, 1.0)
    # both counted 3 of 4 finished and nothing running, then asked
    last, surplus = ask(a, space, optuna.samplers.RandomSampler, 0), ask(b, space, optuna.samplers.RandomSampler, 0)
    assert not beyond_n_trials(a, last, n_trials=4)
    assert beyond_n_trials(b, surplus, n_trials=4)
    a.tell(last, 2.0)
    states = [t.state.name for t in b.get_trials()]
    assert states == ["COMPLETE"] * 4 + ["FAIL"] and finished_trials(b) == 4  # the one given up never counts
