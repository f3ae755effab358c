"""The learning rate of every optimizer as a metric, in every run: Lightning's ``LearningRateMonitor``
(``lr-<optimizer>``, ``lr-<optimizer>/pg<n>`` per parameter group), which refuses to start
without a logger; here a run without one (``logger=none``) simply logs nothing."""

from lightning.pytorch.callbacks import LearningRateMonitor


class LearningRates(LearningRateMonitor):
    def logged_metrics(self, model, datamodule) -> list[str]:
        """``lr-<optimizer>...`` (``LogsMetrics``): the optimizers' names are known only once they are built."""
        return ["lr-*"]

    def on_train_start(self, trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
