"""`experiment=gan_mnist`, the ten-CPU-minute GAN: bfloat16 autocast, a wider discriminator, scored every 5th epoch."""

import math

import pytest

from tests.conftest import client_for, only_run, run_aigc

pytestmark = pytest.mark.slow


def test_gan_mnist_trains_in_bfloat16_and_scores_every_fifth_epoch(tmp_path):
    steps_per_epoch, epochs = 3, 6  # debug=fast: 3 batches an epoch
    result = run_aigc(tmp_path, "experiment=gan_mnist", "debug=fast", f"trainer.max_epochs={epochs}")
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(tmp_path)
    run = only_run(client)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["trainer.precision"], params["model.discriminator.width"]) == ("bf16-mixed", "64")

    history = client.get_metric_history(run.info.run_id, "val/is_mnist")
    assert [m.step for m in history] == [5 * steps_per_epoch - 1]  # epoch 5 only, of 6
    assert 1.0 <= history[0].value <= 10.0
    losses = client.get_metric_history(run.info.run_id, "train/loss_d")
    assert losses and all(math.isfinite(m.value) for m in losses)
    # the best checkpoint follows the objective, which exists only on scored epochs
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "best-epoch004" in artifacts, artifacts
