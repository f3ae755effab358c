"""A job of an Optuna sweep reports its objective to its trial after every evaluation, and stops
when the study's pruner (``hydra/sweeper/pruner=median``) finds the trial hopeless.

The step it reports at is the step of the MLflow curves (batches trained), so the
pruner compares trials where they trained as long. A pruned trial stops the way ``EarlyStopping``
stops one, after the evaluation's checkpoint is written; ``aigc.jobs.training`` then ends its MLflow run
KILLED with the tag ``aigc.sweep.pruned=true``, and the job returns ``optuna.TrialPruned`` to the
sweeper, which records the trial PRUNED.

Why not optuna-integration's ``PyTorchLightningPruningCallback``: it reports at the epoch, so a
model evaluated several times an epoch (``val_check_interval``, the language models) reports one
step many times and Optuna keeps only the first; and it raises from inside the loop.
"""

import math

import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning import Callback

from aigc.trainer.internals import batches_that_stepped
from hydra_plugins.aigc_optuna_sweeper.optuna_sweeper import TARGET as OPTUNA_SWEEPER
from hydra_plugins.aigc_optuna_sweeper.optuna_sweeper import study_storage

# Where the evaluation that pruned the trial is recorded: workers that `trainer=ddp` spawns hand
# their callback metrics back to the main process, but not their callbacks.
PRUNED_AT_STEP = "aigc/pruned_at_step"


class TrialPruning(Callback):
    def __init__(
        self, study_name: str, storage: str, trial_number: int, pruner: optuna.pruners.BasePruner, metric: str
    ):
        self.study_name, self.storage, self.trial_number = study_name, storage, trial_number
        self.pruner, self.metric = pruner, metric
        self.trial: optuna.Trial | None = None
        self._reported = None  # the objective's last reported value (a tensor), not reported twice

    @classmethod
    def for_this_job(cls, metric: str) -> "TrialPruning | None":
        """The callback for a job of aigc's Optuna sweeper (its trial number is the job's number), else None."""
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN or hydra_cfg.sweeper.get("_target_") != OPTUNA_SWEEPER:
            return None
        sweeper = hydra_cfg.sweeper
        return cls(sweeper.study_name, sweeper.storage, hydra_cfg.job.num, instantiate(sweeper.pruner), metric)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        study = optuna.load_study(study_name=self.study_name, storage=study_storage(self.storage), pruner=self.pruner)
        (frozen,) = [t for t in study.get_trials(deepcopy=False) if t.number == self.trial_number]
        self.trial = optuna.Trial(study, frozen._trial_id)  # Optuna has no public lookup by number

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        step, prune = batches_that_stepped(trainer), False
        value = trainer.callback_metrics.get(self.metric)
        # an objective measured every few epochs (metrics.every_n_epochs) stays in callback_metrics
        # between measurements: only a new value is a new result
        if self.trial is not None and value is not None and value is not self._reported:
            self._reported, number = value, float(value)
            self.trial.report(number if math.isfinite(number) else math.nan, step)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every rank stops together
            trainer.callback_metrics[PRUNED_AT_STEP] = torch.tensor(float(step))
            trainer.should_stop = True


def raise_if_pruned(trainer) -> None:
    """After ``fit``: ``optuna.TrialPruned`` if the job's trial was pruned (the sweeper records it so)."""
    pruning = next((c for c in trainer.callbacks if isinstance(c, TrialPruning)), None)
    if pruning is not None and PRUNED_AT_STEP in trainer.callback_metrics:
        step = int(trainer.callback_metrics[PRUNED_AT_STEP])
        value = float(trainer.callback_metrics.get(pruning.metric, math.nan))
        raise optuna.TrialPruned(
            f"Trial {pruning.trial_number} pruned at step {step}: {pruning.metric}={value:.6g} is worse than "
            "the pruner lets through"
        )
