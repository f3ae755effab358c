"""Lightning callbacks: sample grids, loss guards, config snapshots. None is tied to one logger."""

from aigc.callbacks.config_snapshot import ConfigSnapshot
from aigc.callbacks.finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from aigc.callbacks.sample_grid import SampleGrid

__all__ = ["ConfigSnapshot", "NonFiniteLossError", "SampleGrid", "StopOnNonFiniteLoss"]
