"""`experiment=gan_mnist`, the ten-CPU-minute GAN: bfloat16 where it pays, widths 32/64, R1, scored every 5th epoch."""

import math

import pytest

from aigc.jobs.training import train
from aigc.trainer.precision import cpu_has_amx
from tests.conftest import client_for, composed, only_run

pytestmark = pytest.mark.slow


def test_gan_mnist_trains_in_bfloat16_where_it_pays_and_scores_every_fifth_epoch_and_the_last(tmp_path, capsys):
    steps_per_epoch, epochs = 3, 6  # debug=fast: 3 batches an epoch
    with composed("train", tmp_path, "experiment=gan_mnist", "debug=fast", f"trainer.max_epochs={epochs}") as cfg:
        train(cfg)
    client = client_for(tmp_path)
    run = only_run(client)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["model.generator.width"], params["model.discriminator.width"], params["model.r1_gamma"]) == (
        "32",
        "64",
        "1.0",
    )
    assert run.data.tags["aigc.precision"].startswith("bf16-mixed (auto" if cpu_has_amx() else "32-true (auto")
    assert f"Precision: {run.data.tags['aigc.precision']}" in capsys.readouterr().out  # with its reason, once

    history = client.get_metric_history(run.info.run_id, "val/is_mnist")
    assert [m.step for m in history] == [5 * steps_per_epoch - 1, 6 * steps_per_epoch - 1]  # epochs 5 and 6 (the last)
    assert all(1.0 <= m.value <= 10.0 for m in history)
    losses = client.get_metric_history(run.info.run_id, "train/loss_d")
    assert losses and all(math.isfinite(m.value) for m in losses)
    # the best checkpoint follows the objective, which exists only on scored epochs
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "best-epoch004" in artifacts or "best-epoch005" in artifacts, artifacts
