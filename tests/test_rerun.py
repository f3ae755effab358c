"""``python -m aigc.run rerun=<run id> [overrides]``: a stored run's command composed again."""

from pathlib import Path

import pytest

from aigc.common import tags
from aigc.common.stored import UnsafeConfig
from aigc.jobs.training import train
from tests.conftest import all_runs, client_for, composed, new_experiment

FAST = ("debug=fast", "data.download=false")


def losses(client, run) -> list[float]:
    return [point.value for point in client.get_metric_history(run.info.run_id, "train/loss_g")]


@pytest.mark.slow
def test_a_rerun_reproduces_the_losses_and_says_when_the_code_moved(tmp_path: Path, capsys):
    with composed("train", tmp_path, *FAST, "model.optimizer_g.lr=0.0003") as cfg:
        train(cfg)
    client = client_for(tmp_path)
    (original,) = all_runs(client)
    client.set_tag(original.info.run_id, tags.GIT_COMMIT, "0" * 40)  # trained from another commit
    capsys.readouterr()

    with composed("train", tmp_path, f"rerun={original.info.run_id}") as cfg:
        train(cfg)
    rerun = next(run for run in all_runs(client) if run.info.run_id != original.info.run_id)
    assert rerun.data.tags[tags.RERUN_OF] == original.info.run_id
    assert rerun.data.params["model.optimizer_g.lr"] == "0.0003"  # the stored overrides were composed again
    assert losses(client, rerun) == losses(client, original) and len(losses(client, original)) > 1
    said = capsys.readouterr()
    assert f"WARNING: run {original.info.run_id} was trained from git commit {'0' * 40}" in said.err
    # its own record names every override in effect: a rerun of the rerun needs nothing else
    assert "model.optimizer_g.lr=0.0003" in rerun.data.tags[tags.OVERRIDES]

    with composed("train", tmp_path, f"rerun={original.info.run_id}", "model.optimizer_g.lr=0.001", "seed=7") as cfg:
        train(cfg)  # the command line wins over the stored overrides
    latest = max(all_runs(client), key=lambda run: run.info.start_time)
    assert latest.data.params["model.optimizer_g.lr"] == "0.001" and latest.data.params["seed"] == "7"
    assert latest.data.params["trainer.max_epochs"] == rerun.data.params["trainer.max_epochs"]


def test_stored_overrides_naming_a_class_off_the_allow_list_are_refused(tmp_path: Path):
    client = client_for(tmp_path)
    run_id = client.create_run(new_experiment(client, "planted", tmp_path)).info.run_id
    client.log_text(run_id, "debug=fast\n+callbacks.evil._target_=builtins.print\n", "config/overrides.txt")
    with composed("train", tmp_path, f"rerun={run_id}") as cfg, pytest.raises(UnsafeConfig, match="builtins.print"):
        train(cfg)
    assert len(all_runs(client)) == 1  # refused before any run exists


def test_a_rerun_of_a_run_that_is_not_there_or_not_aigcs_is_one_line(tmp_path: Path):
    client = client_for(tmp_path)
    bare = client.create_run(new_experiment(client, "elsewhere", tmp_path)).info.run_id
    with composed("train", tmp_path, f"rerun={bare}") as cfg, pytest.raises(FileNotFoundError, match="overrides.txt"):
        train(cfg)
    with composed("train", tmp_path, "rerun=0123456789abcdef", "resume=0123456789abcdef") as cfg:
        with pytest.raises(ValueError, match="give one"):
            train(cfg)
