"""When an every-n-epochs callback acts: every n-th epoch, and the last one, so that a run always
ends measured. 45 epochs scored every 10th are scored after epochs 10, 20, 30, 40 and 45; the
scores, grids and the best checkpoint (``aigc.callbacks.ModelCheckpoint``) follow one schedule."""


def due(trainer, every_n_epochs: int) -> bool:
    """Whether this epoch (its validations, its end) is on the schedule."""
    return (trainer.current_epoch + 1) % every_n_epochs == 0 or is_last_epoch(trainer)


def is_last_epoch(trainer) -> bool:
    """Training stops after this epoch: ``max_epochs`` reached with it, or ``max_steps`` already."""
    epochs = trainer.max_epochs
    if epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs:
        return True
    return trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps
