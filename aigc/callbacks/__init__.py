"""Lightning callbacks: sample and reconstruction grids, image and text metrics, label accuracy, CLIP score,
loss guards, config snapshots, the float32 matmul precision. None is tied to one logger."""

from aigc.callbacks.clip_score import ClipScore
from aigc.callbacks.config_snapshot import ConfigSnapshot
from aigc.callbacks.finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from aigc.callbacks.image_metrics import ImageMetrics
from aigc.callbacks.label_accuracy import LabelAccuracy
from aigc.callbacks.learning_rates import LearningRates
from aigc.callbacks.matmul_precision import Float32MatmulPrecision
from aigc.callbacks.model_checkpoint import ModelCheckpoint
from aigc.callbacks.prompt_accuracy import PromptAccuracy
from aigc.callbacks.prompt_grid import PromptGrid
from aigc.callbacks.reconstruction_grid import ReconstructionGrid
from aigc.callbacks.sample_grid import SampleGrid
from aigc.callbacks.text_metrics import TextMetrics

__all__ = [
    "ClipScore",
    "ConfigSnapshot",
    "Float32MatmulPrecision",
    "ImageMetrics",
    "LabelAccuracy",
    "LearningRates",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "PromptAccuracy",
    "PromptGrid",
    "ReconstructionGrid",
    "SampleGrid",
    "StopOnNonFiniteLoss",
    "TextMetrics",
]
