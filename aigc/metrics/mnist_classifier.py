"""A small CNN that classifies 28x28 digits, registered as a torch-fidelity feature extractor.

FID and IS need a network that knows the data. The standard Inception network
was trained on ImageNet photographs and needs weights from the internet; this
classifier was trained on MNIST by ``experiments/train_mnist_classifier.py`` and
its weights ship in the package, so ``fid_mnist`` / ``is_mnist`` work offline.
Its 128-d penultimate activations feed FID; its logits feed IS.
"""

from pathlib import Path

import torch
import torch.nn as nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from aigc.metrics.digests import load_shipped, state_dict_digest

NAME = "mnist-classifier"
WEIGHTS_PATH = Path(__file__).parent / "weights" / "mnist_classifier.pt"
FEATURES = "128"  # torch-fidelity names feature layers by their width ("2048" for Inception)


class MNISTClassifier(nn.Module):
    """Images (N, 1, 28, 28) in [-1, 1], as the datamodules serve them -> logits (N, 10)."""

    def __init__(self, num_features: int = 128, num_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        # fmt: off
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 14 x 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 7 x 7
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 3 x 3
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, num_features), nn.ReLU(),
        )
        # fmt: on
        self.dropout = nn.Dropout(dropout)
        # No bias: the logits are then also the "unbiased" logits torch-fidelity's IS reads,
        # so IS uses exactly the posterior the classifier was trained to produce.
        self.classify = nn.Linear(num_features, num_classes, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.dropout(self.features(images)))


def load_classifier(path: str | Path = WEIGHTS_PATH) -> MNISTClassifier:
    """The shipped classifier, in eval mode."""
    return load_shipped(MNISTClassifier(), path, "experiments/train_mnist_classifier.py")


def weights_digest(path: str | Path = WEIGHTS_PATH) -> str:
    """A short hash of the classifier's weights (``digests.state_dict_digest``)."""
    return state_dict_digest(path)


class MNISTClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity's view of the classifier: uint8 images in, named float64 features out.

    Accepts (N, 1, 28, 28) or (N, 3, 28, 28); three channels are averaged, which
    gives back the digit exactly when they are copies of one grey channel.
    Features are float64 so that torch-fidelity's FID statistics are float64.
    """

    def __init__(self, name: str, features_list: list[str], **kwargs):
        super().__init__(name, features_list)
        # channels-last convolutions run about twice as fast on CPU, for the same results
        self.classifier = load_classifier().to(memory_format=torch.channels_last)

    @staticmethod
    def get_provided_features_list():
        return FEATURES, "logits_unbiased"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": FEATURES, "kid": FEATURES, "prc": FEATURES}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vassert(torch.is_tensor(images) and images.dtype == torch.uint8, "Expecting uint8 images")
        vassert(
            images.dim() == 4 and images.shape[1] in (1, 3) and tuple(images.shape[2:]) == (28, 28),
            f"Expecting images of shape (N, 1 or 3, 28, 28), got {tuple(images.shape)}",
        )
        pixels = images.float().mean(dim=1, keepdim=True) / 127.5 - 1  # the datamodules' [-1, 1]
        features = self.classifier.features(pixels.contiguous(memory_format=torch.channels_last))
        outputs = {FEATURES: features, "logits_unbiased": self.classifier.classify(features)}
        return tuple(outputs[name].double() for name in self.features_list)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:  # registering twice is an error in torch-fidelity
    register_feature_extractor(NAME, MNISTClassifierExtractor)
