"""`python -m aigc.compare`: the table of a sweep's runs, the best run named, plots written and logged."""

from pathlib import Path

import pytest

from tests.conftest import client_for, run_aigc

# the tests on the session's VAE sweep share one worker, so it runs once (--dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vae_sweep")]


def sweep_runs(folder: Path):
    client = client_for(folder)
    runs = client.search_runs([client.get_experiment_by_name("vae-mnist").experiment_id])
    parent = next(run for run in runs if run.data.tags.get("aigc.sweep.role") == "parent")
    children = [run for run in runs if run is not parent]
    return client, parent, children


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
    for name in ("runs.csv", "curves.png", "params.png"):
        assert (tmp_path / name).stat().st_size > 0
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert logged == {"compare/runs.csv", "compare/curves.png", "compare/params.png"}


def test_compare_an_experiment_leaves_the_sweep_parent_out(vae_sweep: Path, tmp_path: Path):
    _, parent, children = sweep_runs(vae_sweep)
    result = run_aigc(vae_sweep, "experiment_name=vae-mnist", f"hydra.run.dir={tmp_path}", module="aigc.compare")
    assert result.returncode == 0, result.stderr[-3000:]
    assert parent.info.run_id[:8] not in result.stdout
    assert all(child.info.run_id[:8] in result.stdout for child in children)


def test_compare_unknown_experiment_is_one_clear_error(vae_sweep: Path, tmp_path: Path):
    result = run_aigc(vae_sweep, "experiment_name=nope", f"hydra.run.dir={tmp_path}", module="aigc.compare")
    assert result.returncode == 1
    assert "no experiment named 'nope' in this store; it has: vae-mnist" in result.stderr
