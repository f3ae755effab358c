"""A small CNN that reads a shapes scene (``aigc.data.scenes``) back: what is in each grid cell.

Prompt accuracy needs to know what a generated image shows; GenEval asks a detector trained on
photographs, which needs weights from the internet and a GPU. The scenes here are simple enough
for a 30k-parameter net trained on them by ``experiments/train_shapes_verifier.py`` (on every
combination, the held-out ones included: it is the measuring instrument, not a generator), whose
weights ship in the package. It reads each of the 3x3 cells as empty or a shape, and the colour
of the shape; ``experiments/train_shapes_verifier.md`` publishes how often it reads real scenes
right, clean and blurred and noisy.

It is also a torch-fidelity feature extractor (``shapes-verifier``): its 144-d penultimate
activations (16 per cell) feed ``fid_shapes`` and ``kid_shapes``. It has no class posterior, so
no IS.
"""

import functools
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from aigc.common.scenes import COLOURS, GRID, SHAPES, Thing
from aigc.metrics.digests import load_shipped, state_dict_digest

NAME = "shapes-verifier"
WEIGHTS_PATH = Path(__file__).parent / "weights" / "shapes_verifier.pt"
RESOLUTION = 32  # the scenes it was trained on (aigc.data.scenes.MIN_RESOLUTION)
INPUT = 36  # what the net reads: every image is scaled to it (12 px a cell)
FEATURES = "144"  # 9 cells x 16: torch-fidelity names feature layers by their width
CELLS = GRID * GRID
EMPTY = 0  # shape class 0 is an empty cell; shape i + 1 is SHAPES[i]


class ShapesVerifier(nn.Module):
    """Images (N, 3, 36, 36) in [-1, 1] -> logits of each cell's shape (N, 9, 1 + len(SHAPES):
    empty or a shape) and colour (N, 9, len(COLOURS)), cells in reading order.

    At 36 px a cell is 12 px, which the two poolings make 3x3 feature positions: each cell is read
    from its own positions by one head shared by all nine, so what is learnt in one cell serves
    every cell.
    """

    def __init__(self, width: int = 64, cell_features: int = 16):
        super().__init__()
        # fmt: off
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 18 x 18
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 9 x 9
            nn.Conv2d(32, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3),  # width x 3 x 3: a cell each
        )
        # fmt: on
        self.cell = nn.Sequential(nn.Linear(width, cell_features), nn.ReLU())
        self.shapes = nn.Linear(cell_features, 1 + len(SHAPES))
        self.colours = nn.Linear(cell_features, len(COLOURS))
        # the root mean square of the features over real scenes, set by the training script: FID and
        # KID read the features divided by it (unscaled, KID's cubic kernel is swamped: two samples
        # of the same scenes scored in the thousands)
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 9, cell_features): what each cell holds, as the heads read it."""
        return self.cell(self.trunk(images).flatten(2).transpose(1, 2))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)
        return self.shapes(features), self.colours(features)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 144): the features FID and KID compare, every cell's, at unit RMS over real scenes."""
        return self.features(images).flatten(1) / self.feature_scale


def load_verifier(path: str | Path = WEIGHTS_PATH) -> ShapesVerifier:
    """The shipped verifier, in eval mode."""
    return load_shipped(ShapesVerifier(), path, "experiments/train_shapes_verifier.py")


def weights_digest(path: str | Path = WEIGHTS_PATH) -> str:
    """A short hash of the verifier's weights (``digests.state_dict_digest``)."""
    return state_dict_digest(path)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> what the net reads: [-1, 1], scaled to 36 px (antialiased, so a 64 px
    scene reads like the same scene drawn at 32 px)."""
    vassert(torch.is_tensor(images) and images.dtype == torch.uint8, "Expecting uint8 images")
    vassert(images.dim() == 4 and images.shape[1] == 3, f"Expecting images (N, 3, H, W), got {tuple(images.shape)}")
    pixels = images.float() / 127.5 - 1
    return F.interpolate(pixels, size=(INPUT, INPUT), mode="bilinear", antialias=True)


def read_cells(shape_logits: torch.Tensor, colour_logits: torch.Tensor) -> list[list[Thing]]:
    """The things the logits say, per image, in reading order."""
    shapes, colours = shape_logits.argmax(dim=-1).tolist(), colour_logits.argmax(dim=-1).tolist()
    names = list(COLOURS)
    return [
        [
            Thing(SHAPES[shape - 1], names[colour], cell // GRID, cell % GRID)
            for cell, (shape, colour) in enumerate(zip(cells, tints, strict=True))
            if shape != EMPTY
        ]
        for cells, tints in zip(shapes, colours, strict=True)
    ]


@torch.no_grad()
def detect(images: torch.Tensor, batch_size: int = 500, verifier: ShapesVerifier | None = None) -> list[list[Thing]]:
    """What the verifier (the shipped one unless given) sees in each uint8 image (N, 3, H, W), on
    the CPU: its things, in reading order."""
    net = verifier or _shipped()
    found = []
    for start in range(0, len(images), batch_size):
        found += read_cells(*net(to_input(images[start : start + batch_size].cpu())))
    return found


@functools.cache  # loaded once per process
def _shipped() -> ShapesVerifier:
    return load_verifier()


class ShapesVerifierExtractor(FeatureExtractorBase):
    """torch-fidelity's view of the verifier: uint8 scenes in, its 144-d features (float64, so
    that torch-fidelity's statistics are float64) out."""

    def __init__(self, name: str, features_list: list[str], **kwargs):
        super().__init__(name, features_list)
        self.verifier = load_verifier()

    @staticmethod
    def get_provided_features_list():
        return (FEATURES,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": FEATURES, "kid": FEATURES, "prc": FEATURES}.get(metric)  # no "isc": no posterior

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, RESOLUTION, RESOLUTION, dtype=torch.uint8)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.verifier.embed(to_input(images)).double(),)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:  # registering twice is an error in torch-fidelity
    register_feature_extractor(NAME, ShapesVerifierExtractor)
