"""Lightning callbacks: sample and reconstruction grids, image metrics, loss guards, config snapshots.
None is tied to one logger."""

from aigc.callbacks.config_snapshot import ConfigSnapshot
from aigc.callbacks.finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from aigc.callbacks.image_metrics import ImageMetrics
from aigc.callbacks.reconstruction_grid import ReconstructionGrid
from aigc.callbacks.sample_grid import SampleGrid

__all__ = [
    "ConfigSnapshot",
    "ImageMetrics",
    "NonFiniteLossError",
    "ReconstructionGrid",
    "SampleGrid",
    "StopOnNonFiniteLoss",
]
