"""Stop at the first NaN/inf loss, instead of training on garbage until the epoch ends."""

import math

import torch
from lightning import Callback


class NonFiniteLossError(FloatingPointError):
    pass


class StopOnNonFiniteLoss(Callback):
    """Checks every tensor that ``training_step`` returns (``loss``, or a dict of losses)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        values = outputs if isinstance(outputs, dict) else {"loss": outputs}
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not math.isfinite(value.item()):
                raise NonFiniteLossError(
                    f"{name} is {value.item()} at epoch {trainer.current_epoch}, batch {batch_idx}: "
                    "lower the learning rate or set a gradient clip (model.grad_clip=...)"
                )
