"""The VAE: its nets on MNIST and CIFAR shapes, its ELBO terms, and a short run of the real configs."""

import math

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from aigc.jobs.training import build_training
from aigc.models.vae import gaussian_kl
from aigc.models.vae_likelihoods import Bernoulli, Gaussian

SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def images_like(shape, n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("data", SHAPES)
def test_shapes_and_ranges_follow_the_data_config(compose_cfg, data):
    shape = SHAPES[data]
    model = build_training(compose_cfg("model=vae", f"data={data}", "logger=none")).model
    images = images_like(shape)
    mu, logvar = model.encoder(images)
    assert mu.shape == logvar.shape == (4, model.latent_dim)
    assert model.decoder(mu).shape == (4, *shape)
    for produced in (model.sample(5, seed=1), model.reconstruct(images)):
        assert produced.shape[1:] == shape
        assert produced.min() >= -1 and produced.max() <= 1
    assert torch.equal(model.sample(3, seed=1), model.sample(3, seed=1))
    assert not torch.equal(model.sample(3, seed=1), model.sample(3, seed=2))


def test_latent_dim_is_set_once(compose_cfg):
    model = build_training(compose_cfg("model=vae", "model.latent_dim=5", "logger=none")).model
    assert model.encoder.latent_dim == model.decoder.latent_dim == model.latent_dim == 5
    with pytest.raises(InstantiationException, match="set model.latent_dim only"):
        build_training(compose_cfg("model=vae", "model.decoder.latent_dim=7", "logger=none"))


def test_kl_of_the_prior_is_zero_and_grows_away_from_it():
    zeros = torch.zeros(2, 8)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(2))
    assert torch.allclose(gaussian_kl(torch.ones(2, 8), zeros), torch.full((2,), 4.0))  # 0.5 * mu^2 per dim
    assert (gaussian_kl(torch.randn(3, 8), torch.randn(3, 8)) > 0).all()


def test_likelihoods_are_log_densities_in_nats_per_image():
    images = images_like((1, 28, 28))
    pixels = images.add(1).div(2)
    assert (Bernoulli().log_prob(torch.randn_like(images), images) <= 0).all()
    assert torch.allclose(Bernoulli().mean(torch.logit(pixels.clamp(1e-4, 1 - 1e-4))), images, atol=1e-3)
    gaussian = Gaussian(scale=0.1)
    at_the_mean = gaussian.log_prob(pixels, images)
    expected = -784 * (math.log(0.1) + 0.5 * math.log(2 * math.pi))
    assert torch.allclose(at_the_mean, torch.full((4,), expected))
    assert torch.allclose(gaussian.mean(pixels), images, atol=1e-6)


def test_a_learned_gaussian_scale_is_trained_with_the_nets(compose_cfg):
    target = "model.likelihood._target_=aigc.models.vae_likelihoods.Gaussian"
    fixed = build_training(compose_cfg("model=vae", target, "logger=none")).model
    learned = build_training(
        compose_cfg("model=vae", target, "+model.likelihood.learn_scale=true", "logger=none")
    ).model
    assert "likelihood.log_scale" not in dict(fixed.named_parameters())
    assert "likelihood.log_scale" in fixed.state_dict()
    assert "likelihood.log_scale" in dict(learned.named_parameters())
    (group,) = learned.configure_optimizers().param_groups
    assert any(p is learned.likelihood.log_scale for p in group["params"])


def test_beta_weighs_the_kl_term(compose_cfg):
    model = build_training(compose_cfg("model=vae", "logger=none")).model
    images = images_like((1, 28, 28))
    noise = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(0))
    model.beta = 1.0
    plain = model.losses(images, noise)
    model.beta = 4.0
    weighted = model.losses(images, noise)
    assert torch.equal(plain["recon"], weighted["recon"]) and torch.equal(plain["kl"], weighted["kl"])
    assert torch.allclose(plain["loss"], plain["recon"] + plain["kl"])
    assert torch.allclose(weighted["loss"], plain["recon"] + 4 * plain["kl"]) and weighted["loss"] > plain["loss"]


def test_a_short_run_logs_the_elbo_terms_and_checkpoints_by_val_elbo(compose_cfg):
    cfg = compose_cfg("model=vae", "debug=fast", "logger=none", "data.download=false")
    job = build_training(cfg)
    job.trainer.fit(job.model, datamodule=job.datamodule)
    metrics = job.trainer.callback_metrics
    for key in ("train/loss", "train/recon", "train/kl", "train/loss_epoch", "val/elbo", "val/recon", "val/kl"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert torch.allclose(metrics["val/elbo"], -(metrics["val/recon"] + metrics["val/kl"]))
    assert metrics["val/elbo"] < 0  # Bernoulli: log p(x|z) <= 0 and KL >= 0
    assert {"train/loss", "train/recon", "train/kl"} <= set(job.trainer.logged_metrics)

    checkpoint = job.trainer.checkpoint_callback
    assert (checkpoint.monitor, checkpoint.mode) == ("val/elbo", "max") == tuple(cfg.objective.values())
    saved = torch.load(checkpoint.best_model_path, weights_only=True)  # plain values only
    assert saved["hyper_parameters"]["beta"] == 1.0 and saved["hyper_parameters"]["latent_dim"] == 16


@pytest.mark.parametrize("every", [1, 2])
def test_step_values_are_written_where_lightning_writes_and_epoch_means_cover_every_batch(compose_cfg, tmp_path, every):
    import csv

    from lightning.pytorch.loggers import CSVLogger

    cfg = compose_cfg(
        "model=vae", "debug=fast", "logger=none", "data.download=false", f"trainer.log_every_n_steps={every}"
    )
    job = build_training(cfg)
    only_csv = dict(logger=CSVLogger(tmp_path), callbacks=[], enable_checkpointing=False)
    job.trainer = instantiate(cfg.trainer, precision=job.trainer.precision, **only_csv)
    seen = []
    losses = job.model.losses
    job.model.losses = lambda images, noise=None, labels=None: (
        seen.append(loss := losses(images, noise, labels)) or loss
    )
    job.trainer.fit(job.model, datamodule=job.datamodule)
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert steps == [s for s in range(6) if (s + 1) % every == 0]
    training = [float(s["loss"].detach()) for s in seen if s["loss"].requires_grad]  # not validation's
    epochs = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert epochs == pytest.approx([sum(training[:3]) / 3, sum(training[3:]) / 3], rel=1e-5)
