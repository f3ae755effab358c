"""What the metric callbacks share: when they score, how they tag, and leaving training's RNG alone."""

from contextlib import AbstractContextManager

import torch

from aigc.callbacks.schedule import due
from aigc.common.capabilities import Contract


class ScoringCallback(Contract):
    """Calls ``score(trainer, pl_module, stage)`` after the validations of every
    ``every_n_epochs``-th epoch and of the last (``aigc.callbacks.schedule``; never the sanity
    check) as ``"val"``, and after testing as ``"test"``; what the model and
    the data must offer is declared in ``needs_model`` and ``needs_data`` (checked at set-up)."""

    every_n_epochs: int = 1

    def score(self, trainer, pl_module, stage: str) -> dict[str, float]:
        raise NotImplementedError

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not due(trainer, self.every_n_epochs):
            return
        self.score(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.score(trainer, pl_module, "test")

    @staticmethod
    def set_tags(trainer, tags: dict[str, str]) -> None:
        """Record what was measured, with every logger that takes tags (ours: MLflow run tags)."""
        for logger in trainer.loggers:
            if hasattr(logger, "set_tags"):
                logger.set_tags(tags)

    @staticmethod
    def own_random_stream(pl_module) -> AbstractContextManager:
        """Scoring draws random numbers (samplers, DataLoaders); fork the RNG so training's doesn't move."""
        return torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else [])
