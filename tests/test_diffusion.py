"""The diffusion model: its samplers end where the exact prediction leads, guidance combines the
conditional and unconditional predictions as it should, labels are dropped as often as asked,
a seed fixes the images, and what a request asks for is checked in one line. A tiny UNet on the
real configs, in this process."""

import math

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from aigc.jobs.training import train
from aigc.models.diffusion import Diffusion
from aigc.serving.generator import Generator
from aigc.trainer.precision import cpu_has_amx
from tests.conftest import client_for, composed, only_run

TINY = (
    "model=diffusion",
    "model.net.channels=[8,16]",
    "model.net.norm_groups=4",
    "model.net.attention=false",
    "model.steps=4",
)


def tiny(compose_cfg, *overrides: str) -> Diffusion:
    return instantiate(compose_cfg(*TINY, *overrides).model, _convert_="all").eval()


def exact_prediction(model: Diffusion, clean: torch.Tensor):
    """What a perfect denoiser of ``clean`` predicts at timestep ``t``, whatever the noise in ``noisy``."""

    def predict(noisy, t, labels, guidance, null=None):
        if model.prediction == "flow":
            sigma = float(t) / model.num_train_timesteps
            return (noisy - clean) / sigma  # the velocity e - x0 of the straight path through noisy
        alpha = model.noise_schedule.alphas_cumprod[int(t)]
        noise = (noisy - alpha.sqrt() * clean) / (1 - alpha).sqrt()
        return noise if model.prediction == "epsilon" else alpha.sqrt() * noise - (1 - alpha).sqrt() * clean

    return predict


@pytest.mark.parametrize(
    ("prediction", "sampler"),
    [("epsilon", "ddpm"), ("epsilon", "ddim"), ("epsilon", "dpm++"), ("v_prediction", "dpm++"), ("flow", "euler")],
)
def test_every_sampler_fed_the_exact_prediction_ends_at_the_clean_image(compose_cfg, monkeypatch, prediction, sampler):
    model = tiny(compose_cfg, f"model.prediction={prediction}", f"model.sampler={sampler}")
    clean = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    monkeypatch.setattr(model, "guided", exact_prediction(model, clean))
    drawn = model.sample(3, seed=1, labels=torch.tensor([0, 1, 2]), steps=5)
    assert torch.allclose(drawn, clean, atol=1e-4), (drawn - clean).abs().max()


def test_noise_added_in_training_is_what_the_schedule_says(compose_cfg):
    model = tiny(compose_cfg)
    clean, noise, t = torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28), torch.tensor([999])
    noisy = model.noise_schedule.add_noise(clean, noise, t)
    assert torch.allclose(noisy, (1 - model.noise_schedule.alphas_cumprod[999]).sqrt() * noise)


def test_guidance_combines_one_batched_pass_of_the_conditional_and_the_null_label(compose_cfg):
    model = tiny(compose_cfg)
    noisy, t = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2)), torch.tensor(500)
    labels, null = torch.tensor([3, 1, 4, 1]), torch.full((4,), model.num_classes)
    timesteps = t.expand(4)
    with torch.no_grad():
        conditional, unconditional = model.net(noisy, timesteps, labels), model.net(noisy, timesteps, null)
        assert torch.allclose(model.guided(noisy, t, labels, 0.0, null), unconditional, atol=1e-6)
        assert torch.allclose(model.guided(noisy, t, labels, 1.0, null), conditional, atol=1e-6)
        expected = unconditional + 2.5 * (conditional - unconditional)
        assert torch.allclose(model.guided(noisy, t, labels, 2.5, null), expected, atol=1e-5)


def test_labels_are_dropped_as_often_as_label_dropout_says(compose_cfg):
    model = tiny(compose_cfg, "model.label_dropout=0.1")
    torch.manual_seed(0)
    labels = torch.randint(0, 10, (200_000,))
    after = model.drop_labels(labels)
    dropped = after == model.num_classes
    assert abs(dropped.float().mean().item() - 0.1) < 0.003  # 5 sd of a binomial at n = 200,000
    assert torch.equal(after[~dropped], labels[~dropped])  # the rest untouched
    assert not (tiny(compose_cfg, "model.label_dropout=0").drop_labels(labels) == 10).any()


def test_a_seed_fixes_the_images_and_each_label_draws_its_own(compose_cfg):
    model = tiny(compose_cfg)
    first = model.sample(4, seed=5, labels=torch.tensor(7))
    assert torch.equal(first, model.sample(4, seed=5, labels=torch.tensor(7)))
    assert not torch.equal(first, model.sample(4, seed=6, labels=torch.tensor(7)))
    assert not torch.equal(first, model.sample(4, seed=5, labels=torch.tensor(2)))
    assert first.shape == (4, 1, 28, 28) and first.min() >= -1 and first.max() <= 1
    unconditional = tiny(compose_cfg, "model.num_classes=null")
    assert unconditional.sample(2, seed=0).shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"label": 10}, "label=10: .* draws labels 0 to 9"),
        ({"label": -1}, "label=-1: .* draws labels 0 to 9"),
        ({"steps": 0}, "steps=0: give a whole number of sampling steps, at least 1"),
        ({"steps": -3}, "steps=-3: give a whole number"),
        ({"guidance": -0.5}, "guidance=-0.5: give a number at least 0"),
        ({"guidance": math.inf}, "guidance=inf: give a number at least 0"),
        ({"sampler": "heun"}, "sampler='heun': use one of ddpm, ddim, dpm\\+\\+, euler"),
        (
            {"sampler": "euler"},
            "sampler=euler does not sample a model of prediction=v_prediction: use ddpm, ddim or dpm\\+\\+",
        ),
        ({"temperature": 0.7}, "temperature: .* takes sampler, steps, guidance"),
    ],
)
def test_a_request_that_can_not_be_drawn_is_refused_in_one_line(compose_cfg, request_, message):
    generator = Generator(tiny(compose_cfg), source="the model")
    with pytest.raises(ValueError, match=message) as refused:
        generator.images(2, **request_)
    assert "\n" not in str(refused.value)


def test_an_unconditional_model_takes_no_label(compose_cfg):
    generator = Generator(tiny(compose_cfg, "model.num_classes=null"), source="the model")
    with pytest.raises(ValueError, match="label=3: the model is unconditional, it takes no label"):
        generator.images(2, label=3)
    assert generator.images(2, steps=2).shape == (2, 28, 28, 1)


def test_a_run_scores_its_samples_labels_and_grid_and_resumes_exactly(tmp_path):
    """Two epochs, then two more from its checkpoint, end as four uninterrupted epochs end."""
    quick = (*TINY, "debug=fast", "data.download=false", "metrics.inception=false", "metrics.num_samples=20")
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    with composed("train", uninterrupted, *quick, "trainer.max_epochs=4") as cfg:
        train(cfg)
    with composed("train", interrupted, *quick, "trainer.max_epochs=2") as cfg:
        train(cfg)
    run_id = only_run(client_for(interrupted)).info.run_id
    with composed("train", interrupted, *quick, "trainer.max_epochs=4", f"resume={run_id}") as cfg:
        train(cfg)
    reference, resumed = only_run(client_for(uninterrupted)), only_run(client_for(interrupted))
    key = "val/loss"
    expected = sorted(
        (m.step, m.value) for m in client_for(uninterrupted).get_metric_history(reference.info.run_id, key)
    )
    got = sorted((m.step, m.value) for m in client_for(interrupted).get_metric_history(run_id, key))
    assert [step for step, _ in got] == [step for step, _ in expected]
    assert [value for _, value in got] == pytest.approx([value for _, value in expected], rel=1e-5)
    # scored after the last epoch (the interrupted command's second epoch was its last too)
    for key in ("val/fid_mnist", "val/is_mnist", "val/acc_mnist"):
        assert resumed.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-5), key
    assert 0 <= resumed.data.metrics["val/acc_mnist"] <= 1
    (grid,) = sorted((interrupted / "logs").glob("**/samples/epoch_003.png"))
    # debug=fast's 16 samples: a row per label of 16 // 10 = 1 image, 28 pixels and 2 of padding each
    assert Image.open(grid).size == (2 + 30, 2 + 10 * 30)


@pytest.mark.slow
def test_the_diffusion_experiment_trains_an_ema_in_bf16_where_it_pays_and_scores_after_its_last_epoch(tmp_path):
    """`experiment=diffusion_mnist` (experiments/diffusion.md), shortened by debug=fast: scored once,
    at the end, with the sampler it reports with; its checkpoints keep the raw weights beside the average."""
    overrides = ("experiment=diffusion_mnist", "debug=fast", "data.download=false", "metrics.inception=false")
    with composed("train", tmp_path, *overrides) as cfg:
        train(cfg)
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["model.net.channels"], params["model.sampler"], params["model.steps"]) == (
        "[16, 32, 64]",
        "dpm++",
        "10",
    )
    assert params["model.prediction"] == "v_prediction" and params["callbacks.ema.decay"] == "0.995"
    assert run.data.tags["aigc.precision"].startswith("bf16-mixed (auto" if cpu_has_amx() else "32-true (auto")
    history = client_for(tmp_path).get_metric_history(run.info.run_id, "val/acc_mnist")
    assert [m.step for m in history] == [2 * 3 - 1]  # debug=fast: 2 epochs of 3 batches, scored after the last
    checkpoint = torch.load(f"{run.data.tags['aigc.checkpoints']}/last.ckpt", weights_only=True)
    assert set(checkpoint["state_dict"]) == set(checkpoint["current_model_state"])
