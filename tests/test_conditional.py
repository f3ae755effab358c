"""Class-conditional image models on the same footing: the GAN (a projection discriminator), the
VAE (a conditional VAE) and the diffusion model draw the label asked for, are scored by the
classifier's accuracy on it, and stay unconditional when told to."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from aigc.data.mnist import MNISTDataModule
from aigc.jobs.training import train
from aigc.metrics.label_accuracy import label_accuracy
from aigc.metrics.mnist_classifier import NAME as MNIST
from tests.conftest import client_for, composed, only_run

CONDITIONAL = {
    "gan": ("model=gan", "model.num_classes=10", "model.generator.width=8", "model.discriminator.width=8"),
    "vae": ("model=vae", "model.num_classes=10", "model.encoder.width=8", "model.decoder.width=8"),
    "diffusion": (
        *("model=diffusion", "model.net.channels=[8,16]", "model.net.norm_groups=4"),
        *("model.net.attention=false", "model.steps=3"),
    ),
}


def test_the_classifier_names_real_digits_labels(tmp_path):
    """The measure's ceiling: real held-out digits score near the classifier's own accuracy."""
    data = MNISTDataModule(str(tmp_path), image_shape=[1, 28, 28], download=False)
    data.setup()
    images = data.real_images("val")
    labels = torch.from_numpy(np.asarray(data._splits.val_labels))
    assert label_accuracy(images, labels, MNIST) > 0.95
    assert label_accuracy(images, (labels + 1) % 10, MNIST) < 0.05  # the wrong labels: almost never


@pytest.mark.parametrize("family", sorted(CONDITIONAL))
def test_a_conditional_model_draws_the_label_asked_for_and_is_scored_on_it(tmp_path, compose_cfg, family):
    model = instantiate(compose_cfg(*CONDITIONAL[family]).model, _convert_="all").eval()
    assert model.num_classes == 10
    sevens, threes = model.sample(4, seed=1, labels=torch.tensor(7)), model.sample(4, seed=1, labels=torch.tensor(3))
    assert sevens.shape == (4, 1, 28, 28) and not torch.equal(sevens, threes)  # the label steers the images
    assert torch.equal(sevens, model.sample(4, seed=1, labels=torch.tensor(7)))
    with pytest.raises(ValueError, match="a label must be between 0 and 9"):
        model.sample(2, labels=torch.tensor(10))

    quick = ("debug=fast", "trainer.max_epochs=1", "data.download=false", "metrics.inception=false")
    with composed("train", tmp_path, *CONDITIONAL[family], *quick, "metrics.num_samples=20") as cfg:
        train(cfg)
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FINISHED" and 0 <= run.data.metrics["val/acc_mnist"] <= 1
    assert run.data.params["model.num_classes"] == "10"


@pytest.mark.parametrize("family", ["gan", "vae"])
def test_unconditional_stays_the_default_of_the_gan_and_the_vae_and_takes_no_label(compose_cfg, family):
    model = instantiate(compose_cfg(f"model={family}").model, _convert_="all").eval()
    assert model.num_classes is None
    with pytest.raises(ValueError, match="this model is unconditional: it takes no label"):
        model.sample(2, labels=torch.tensor(1))


def test_the_projection_discriminator_judges_an_image_with_its_label(compose_cfg):
    gan = instantiate(compose_cfg(*CONDITIONAL["gan"]).model, _convert_="all").eval()
    images = gan.sample(3, seed=0, labels=torch.tensor([1, 2, 3]))
    with torch.no_grad():
        as_drawn = gan.discriminator(images, torch.tensor([1, 2, 3]))
        relabelled = gan.discriminator(images, torch.tensor([4, 5, 6]))
    assert not torch.allclose(as_drawn, relabelled)
