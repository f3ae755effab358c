"""Lightning's ``ModelCheckpoint``, saving the best on the metric callbacks' schedule and the last
after every epoch."""

from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from aigc.callbacks.schedule import is_last_epoch


class ModelCheckpoint(LightningModelCheckpoint):
    """With ``every_n_epochs=n`` Lightning saves the best and the last checkpoint after every
    n-th epoch only. The image and text metrics score every n-th epoch and the last one
    (``aigc.callbacks.schedule``), so this saves the best after the last one too: a run's best
    checkpoint (what its MLflow model serves) is never older than its last scores. And it saves
    ``last.ckpt`` after every epoch, whatever n: a killed run resumes losing at most one epoch.
    The private methods it calls are listed in ``aigc.trainer.internals``."""

    def logged_metrics(self, model, datamodule) -> list[str]:
        """Lightning's checkpoints may also monitor the epoch and the step (``_monitor_candidates``)."""
        return ["epoch", "step"]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):  # no validation: Lightning saves here
            self._save_off_the_schedule(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_off_the_schedule(trainer)

    def _save_off_the_schedule(self, trainer) -> None:
        # skipped when Lightning saved at this step already (an n-th epoch), and in sanity checks
        if self._every_n_epochs < 1 or self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if is_last_epoch(trainer):
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
