"""`python -m aigc.compare`: the table of a sweep's runs, the best run named, plots written and logged.
One comparison runs the command end to end; the others call it in this process."""

import json
from pathlib import Path

import pytest

from aigc.compare import compare
from tests.conftest import client_for, composed, run_aigc

# the tests on the session's VAE sweep share one worker, so it runs once (--dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vae_sweep")]


def sweep_runs(folder: Path):
    client = client_for(folder)
    runs = client.search_runs([client.get_experiment_by_name("vae-mnist").experiment_id])
    parent = next(run for run in runs if run.data.tags.get("aigc.sweep.role") == "parent")
    children = [run for run in runs if run is not parent]
    return client, parent, children


def compare_here(folder: Path, capsys, *overrides: str) -> tuple[str, Path]:
    """What `python -m aigc.compare <overrides>` prints in ``folder``, and the folder it writes to."""
    capsys.readouterr()
    with composed("compare", folder, *overrides) as cfg:
        compare(cfg)
    return capsys.readouterr().out, Path(cfg.hydra.runtime.output_dir)


def test_compare_a_sweep_names_the_best_run_and_logs_its_plots(vae_sweep: Path, tmp_path: Path):
    client, parent, children = sweep_runs(vae_sweep)
    result = run_aigc(vae_sweep, f"run_id={parent.info.run_id}", f"hydra.run.dir={tmp_path}", module="aigc.compare")
    assert result.returncode == 0, result.stderr[-3000:]
    best = max(children, key=lambda run: run.data.metrics["val/elbo"])  # the VAE's objective: max val/elbo
    assert f"Best run: {best.info.run_name} ({best.info.run_id})" in result.stdout
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("run "))
    assert "model.beta" in header and "final val/elbo" in header and "best val/elbo" in header
    rows = [line for line in lines if line[:8] in {c.info.run_id[:8] for c in children}]
    assert len(rows) == 2 and all("FINISHED" in row for row in rows)
    for name in ("runs.csv", "curves.png", "params.png", "parallel.png"):
        assert (tmp_path / name).stat().st_size > 0
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert logged == {"compare/runs.csv", "compare/curves.png", "compare/params.png", "compare/parallel.png"}


def test_compare_an_experiment_leaves_the_sweep_parent_out(vae_sweep: Path, capsys):
    _, parent, children = sweep_runs(vae_sweep)
    printed, _ = compare_here(vae_sweep, capsys, "experiment_name=vae-mnist")
    assert parent.info.run_id[:8] not in printed
    assert all(child.info.run_id[:8] in printed for child in children)


def test_compare_unknown_experiment_is_one_clear_error(vae_sweep: Path, capsys):
    with pytest.raises(Exception, match="no experiment named 'nope' in this store; it has: vae-mnist"):
        compare_here(vae_sweep, capsys, "experiment_name=nope")


@pytest.mark.xdist_group("seed_groups")
def test_runs_that_differ_only_in_seed_are_grouped_with_mean_and_sd(tmp_path: Path, capsys):
    """Two learning rates x three seeds in a real store: groups, their mean ± sd, the better group first."""
    import statistics

    from mlflow.entities import Metric, Param, RunTag

    client = client_for(tmp_path)
    experiment = client.create_experiment("seeds")
    finals = {}
    for lr, level in (("0.1", 2.0), ("0.01", 1.0)):
        for seed in (1, 2, 3):
            run = client.create_run(experiment).info.run_id
            curve = [level + 1.0 / (step + 1) + 0.1 * seed * step for step in range(3)]
            client.log_batch(
                run,
                metrics=[Metric("val/loss", value, 0, step) for step, value in enumerate(curve)],
                params=[Param("seed", str(seed)), Param("model.optimizer.lr", lr), Param("paths.output_dir", run)],
                tags=[RunTag("aigc.objective", "min val/loss")],
            )
            client.set_terminated(run)
            finals.setdefault(lr, []).append(curve[-1])
    printed, out = compare_here(tmp_path, capsys, "experiment_name=seeds")
    groups = printed.split("Runs that differ only in seed, best group first:")[1].splitlines()
    rows = [line.split() for line in groups if line[:1].isdigit()]
    assert [(row[0], row[1], row[3]) for row in rows] == [("1", "3", "0.01"), ("2", "3", "0.1")]  # rank, runs, lr
    for row, lr in zip(rows, ("0.01", "0.1"), strict=True):
        mean, sd = statistics.mean(finals[lr]), statistics.stdev(finals[lr])
        assert row[4:7] == [f"{mean:.5g}", "±", f"{sd:.5g}"]
    for name in ("seeds.csv", "seeds.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.xdist_group("seed_groups")
def test_a_pruned_trial_is_shown_but_never_the_best_run(tmp_path: Path, capsys):
    """A trial the pruner stopped early can end with a better-looking value than it would have reached."""
    from mlflow.entities import Metric, Param, RunTag

    client = client_for(tmp_path)
    experiment = client.create_experiment("pruning")
    ids = {}
    for job, (lr, loss, pruned) in enumerate([("0.1", 2.0, False), ("0.01", 1.5, False), ("0.3", 1.0, True)]):
        run = client.create_run(experiment).info.run_id
        tags = [RunTag("aigc.objective", "min val/loss"), RunTag("aigc.sweep.job", str(job))]
        client.log_batch(
            run,
            metrics=[Metric("val/loss", loss, 0, 10)],
            params=[Param("model.optimizer.lr", lr), Param("seed", "1")],
            tags=tags + ([RunTag("aigc.sweep.pruned", "true")] if pruned else []),
        )
        client.set_terminated(run, "KILLED" if pruned else "FINISHED")
        ids[lr] = run
    printed, out = compare_here(tmp_path, capsys, "experiment_name=pruning")
    assert f"({ids['0.01']}), final val/loss=1.5" in printed
    row = next(line for line in printed.splitlines() if line.startswith(ids["0.3"][:8]))
    assert "KILLED (pruned)" in row
    assert (out / "parallel.png").stat().st_size > 0


@pytest.mark.xdist_group("seed_groups")
def test_runs_of_several_experiments_compare_side_by_side_on_one_metric(tmp_path: Path, capsys):
    """GAN, VAE and diffusion runs on MNIST live in one experiment each: one command ranks them all."""
    from mlflow.entities import Metric, RunTag

    client = client_for(tmp_path)
    fids = {"gan-mnist": 103.0, "vae-mnist": 529.0, "diffusion-mnist": 30.0, "gan-cifar10": 1.0}
    ids = {}
    for experiment, fid in fids.items():
        run = client.create_run(client.create_experiment(experiment)).info.run_id
        tags = [RunTag("aigc.objective", "min val/fid_mnist")]
        client.log_batch(run, metrics=[Metric("val/fid_mnist", fid, 0, 1)], tags=tags)
        client.set_terminated(run)
        ids[experiment] = run
    for names in ("experiment_name=*-mnist", "experiment_name=[gan-mnist,vae-mnist,diffusion-mnist]"):
        printed, _ = compare_here(tmp_path, capsys, names)
        assert "Best run: " in printed and f"({ids['diffusion-mnist']}), final val/fid_mnist=30" in printed
        rows = [line for line in printed.splitlines() if line[:8] in {run[:8] for run in ids.values()}]
        assert sorted(row.split()[1] for row in rows) == ["diffusion-mnist", "gan-mnist", "vae-mnist"]
        experiments = sorted(client.get_experiment_by_name(name).experiment_id for name in fids if "mnist" in name)
        assert f"#/compare-experiments/s?experiments={json.dumps(experiments, separators=(',', ':'))}" in printed
    with pytest.raises(ValueError, match="no experiment named 'nope-\\*'"):
        compare_here(tmp_path, capsys, "experiment_name=[gan-mnist,nope-*]")
