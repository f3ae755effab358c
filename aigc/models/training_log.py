"""Training values logged for a fraction of what ``self.log`` at every step costs.

Each ``self.log`` call costs Lightning a fraction of a millisecond of bookkeeping, and logging a
value both per step and per epoch is two calls: six for a VAE's three losses, several percent of
a small model's step (``experiments/bare_loop.md``). The loggers write step values only every
``log_every_n_steps`` anyway. So here a step's values are logged (one ``log_dict``) only on the
steps Lightning writes, which gives the same points, and each value's epoch mean is kept as a
running sum and logged once when the epoch ends, as ``<name>_epoch`` (the mean over every
process's batches under DDP)."""

import torch

from aigc.trainer.internals import writes_logs_now


class TrainingLog:
    @staticmethod
    def names(*names: str) -> tuple[str, ...]:
        """What it logs for step values ``names``: each, and its epoch mean (for a model's
        ``logged_metrics``: ``aigc.common.capabilities``)."""
        return (*names, *(f"{name}_epoch" for name in names))

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = {}
        self._examples = 0

    def step(self, module, values: dict[str, torch.Tensor], batch_size: int) -> None:
        """Call from ``training_step`` with the step's values (batch means)."""
        values = {name: value.detach() for name, value in values.items()}
        for name, value in values.items():
            self._sums[name] = self._sums.get(name, 0.0) + value * batch_size
        self._examples += batch_size
        if writes_logs_now(module.trainer):
            module.log_dict(values, prog_bar=True)

    def epoch_end(self, module) -> None:
        """Call from ``on_train_epoch_end``: logs the epoch means and starts the next epoch's."""
        if self._examples:
            means = {f"{name}_epoch": total / self._examples for name, total in self._sums.items()}
            module.log_dict(means, sync_dist=True)
        self._sums, self._examples = {}, 0
