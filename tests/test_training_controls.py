"""Training controls as config: weight EMA, early stopping on the objective, precision=auto,
the float32 matmul precision."""

import math

import pytest
import torch
from lightning import Callback
from torch import nn

from aigc.evaluate import evaluate
from aigc.jobs.training import build_training
from aigc.models.gan import r1_penalty
from aigc.trainer.precision import choose_precision, cpu_has_amx
from tests.conftest import composed

QUICK = ("model=vae", "debug=fast", "logger=none", "data.download=false")


def test_ema_weights_are_the_ones_evaluated_and_saved(compose_cfg):
    cfg = compose_cfg(*QUICK, "callbacks=[default,ema]", "callbacks.ema.decay=0.5")
    job = build_training(cfg)
    job.trainer.fit(job.model, datamodule=job.datamodule)
    saved = torch.load(job.trainer.checkpoint_callback.last_model_path, weights_only=True)
    averaged, raw = saved["state_dict"], saved["current_model_state"]
    name = next(key for key in averaged if key.endswith("weight"))
    assert not torch.equal(averaged[name], raw[name])  # the average is not the last step's weights
    # when training ends the model holds the average: what sampling, scoring and the MLflow model use
    assert torch.equal(job.model.state_dict()[name], averaged[name])


def test_with_ema_the_image_metrics_score_the_average(tmp_path):
    """Lightning swaps the average in and out around validation in callback order: the scores
    logged at its end are the average's, as its checkpoint scores them."""
    with composed("train", tmp_path, *QUICK, "callbacks=[default,ema]", "callbacks.ema.decay=0.5") as cfg:
        job = build_training(cfg)
        job.trainer.fit(job.model, datamodule=job.datamodule)
    scored = job.trainer.callback_metrics
    checkpoint = job.trainer.checkpoint_callback.last_model_path  # saved after the last validation
    as_trained = (f"metrics.num_samples={cfg.metrics.num_samples}", "logger=none")
    with composed("evaluate", tmp_path, f"ckpt_path={checkpoint}", *as_trained) as cfg:
        rescored = evaluate(cfg)
    for name in ("fid_mnist", "is_mnist"):
        assert float(scored[f"val/{name}"]) == pytest.approx(rescored[f"test/{name}"], rel=1e-5), name


def test_early_stopping_ends_training_when_the_objective_stops_improving(compose_cfg):
    overrides = ("callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=0", "trainer.max_epochs=5")
    cfg = compose_cfg(*QUICK, *overrides, "callbacks.early_stopping.min_delta=1000")
    job = build_training(cfg)
    job.trainer.fit(job.model, datamodule=job.datamodule)
    assert job.trainer.current_epoch == 2  # the second validation did not improve val/elbo by 1000: stop
    assert job.trainer.early_stopping_callback.monitor == cfg.objective.metric == "val/elbo"


def test_precision_auto_takes_bf16_where_the_hardware_has_bf16_units(compose_cfg, tmp_path):
    assert choose_precision("32-true") == ("32-true", "as configured") and choose_precision(16)[0] == 16
    assert choose_precision(None) == ("32-true", "Lightning's default")
    with_amx, without = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("flags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu sse avx2\n")
    assert cpu_has_amx(with_amx) and not cpu_has_amx(without) and not cpu_has_amx(tmp_path / "none")

    job = build_training(compose_cfg(*QUICK, "trainer.accelerator=cpu"))  # auto is the default
    expected = "bf16-mixed" if cpu_has_amx() else "32-true"
    assert job.trainer.precision == expected and job.precision.startswith(f"{expected} (auto: a CPU")


def test_precision_auto_keeps_float32_for_a_model_that_runs_slower_in_bf16_on_a_cpu(compose_cfg, monkeypatch):
    monkeypatch.setattr("aigc.trainer.precision.cpu_has_amx", lambda: True)  # whatever this machine's CPU is
    conv = build_training(compose_cfg(*QUICK, "trainer.accelerator=cpu"))
    gpt = build_training(
        compose_cfg("model=transformer", "data=pydocs", "debug=fast", "logger=none", "trainer.accelerator=cpu")
    )
    assert conv.trainer.precision == "bf16-mixed" and conv.precision == "bf16-mixed (auto: a CPU with AMX bf16 units)"
    assert gpt.trainer.precision == "32-true"
    assert gpt.precision == "32-true (auto: a CPU with AMX, but LanguageModel runs slower in bf16 on a CPU)"
    assert choose_precision("bf16-mixed", "cpu", gpt.model) == ("bf16-mixed", "as configured")


def test_float32_matmul_precision_holds_while_training_and_is_put_back(compose_cfg):
    seen = []

    class Probe(Callback):
        def on_train_batch_start(self, *args):
            seen.append(torch.get_float32_matmul_precision())

    medium = "callbacks.float32_matmul_precision.precision=medium"
    job = build_training(compose_cfg("model=transformer", "data=pydocs", "debug=fast", "logger=none", medium))
    job.trainer.callbacks.append(Probe())
    job.trainer.fit(job.model, datamodule=job.datamodule)
    assert seen and set(seen) == {"medium"}
    assert torch.get_float32_matmul_precision() == "highest"  # torch's default again after the run


def test_r1_penalty_is_the_squared_gradient_norm_of_the_discriminator_at_real_images(compose_cfg):
    # a linear discriminator has the same gradient everywhere: its weights
    linear = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    images = torch.randn(3, 1, 2, 2, requires_grad=True)
    assert r1_penalty(linear(images), images).item() == pytest.approx(linear[1].weight.square().sum().item())

    losses = {}
    for gamma in (0.0, 1000.0):
        cfg = compose_cfg("model=gan", "debug=fast", "logger=none", "data.download=false", f"model.r1_gamma={gamma}")
        job = build_training(cfg)
        job.trainer.fit(job.model, datamodule=job.datamodule)
        losses[gamma] = float(job.trainer.callback_metrics["train/loss_d_epoch"])
    assert all(math.isfinite(loss) for loss in losses.values())
    assert losses[1000.0] > losses[0.0]  # the penalty is part of the discriminator's loss
