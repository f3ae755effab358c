"""The Lightning internals aigc relies on (aigc/trainer/internals.py) are where we expect them:
a Lightning upgrade that moves one fails here, by name, not in the middle of someone's run."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.strategies import DDPStrategy

from aigc.trainer import internals as lightning_internals


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_mlflow_logger_has_what_our_logger_extends(tmp_path):
    logger = MLFlowLogger(experiment_name="x", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    missing = [name for name in lightning_internals.MLFLOW_LOGGER if not hasattr(logger, name)]
    assert missing == [], f"Lightning's MLFlowLogger no longer has {missing}: update aigc/tracking/run/logger.py"


def test_the_ddp_strategy_has_what_ours_hooks_into():
    strategy = DDPStrategy(process_group_backend="gloo")
    missing = [name for name in lightning_internals.DDP_STRATEGY if not hasattr(strategy, name)]
    assert missing == [], f"Lightning's DDPStrategy no longer has {missing}: update aigc/trainer/distributed.py"


def test_the_model_checkpoint_has_what_ours_calls():
    missing = [name for name in lightning_internals.MODEL_CHECKPOINT if not hasattr(ModelCheckpoint(), name)]
    assert missing == [], (
        f"Lightning's ModelCheckpoint no longer has {missing}: update aigc/callbacks/model_checkpoint.py"
    )


@pytest.mark.parametrize("steps", [0, 3])
def test_the_step_axis_counts_optimizer_steps(steps):
    trainer = L.Trainer(
        max_steps=steps or 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    assert lightning_internals.batches_that_stepped(trainer) == 0
    assert lightning_internals.writes_logs_now(trainer)  # no loop running: Lightning writes what is logged
    if steps:
        trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.ones(8, 1), batch_size=1))
        assert lightning_internals.batches_that_stepped(trainer) == steps


def test_the_trainer_notes_sigterm_where_preemption_takes_it_over():
    from lightning import Trainer

    from aigc.trainer.internals import take_over_sigterm

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer._signal_connector.received_sigterm = True
    take_over_sigterm(trainer)
    assert trainer.received_sigterm is False


def test_an_interrupt_while_the_loader_starts_stays_an_interrupt():
    """Lightning's teardown raises over an interrupt that lands in ``iter(dataloader)``; the
    interrupt is what reaches the run (which ends KILLED, and a sweep stops)."""
    from aigc.tracking.run.signals import RunInterrupted

    class InterruptedLoader(torch.utils.data.DataLoader):
        def __iter__(self):
            raise RunInterrupted(2)

    def fit():
        trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.fit(Tiny(), InterruptedLoader(torch.ones(8, 1)))

    with pytest.raises(RuntimeError, match="iter"):  # Lightning's own error hides the interrupt
        fit()
    with pytest.raises(RunInterrupted), lightning_internals.interrupts_kept():
        fit()
    with pytest.raises(ValueError, match="the run's own"), lightning_internals.interrupts_kept():
        raise ValueError("the run's own error")
