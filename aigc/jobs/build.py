"""One way from a composed config to what Lightning runs: the model, the data, the callbacks, the
tracker and the Trainer. Training (``aigc.jobs.training``) and both kinds of evaluation
(``aigc.evaluate``: a run's checkpoint, or a model as configured) build here; nothing here knows
which model or dataset it builds.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from aigc.common.capabilities import Contract, MissingCapability
from aigc.common.stored import instantiate_stored
from aigc.config.validation import within_memory
from aigc.tracking.run.logger import MLflowLogger
from aigc.tracking.run.record import recorded_config
from aigc.tracking.run.tracker import NullTracker, Tracker, tracker_for
from aigc.trainer.precision import trainer_precision


@dataclass
class Job:
    datamodule: L.LightningDataModule
    model: L.LightningModule
    trainer: L.Trainer
    tracker: Tracker | NullTracker
    precision: str  # what the Trainer computes in, and why (trainer.precision=auto chooses)
    config: dict  # resolved, env secrets as text, plain containers: what params, artifacts and checkpoints record


def build(
    cfg: DictConfig,
    callbacks: Sequence[L.Callback] = (),
    config: dict | None = None,
    stored_in: str | None = None,
    applicable_only: bool = False,
) -> Job:
    """Instantiate every group of ``cfg``, with ``callbacks`` after the configured ones.

    ``config``: what the run records (``recorded_config(cfg)`` unless given).
    ``stored_in``: ``cfg.model`` and ``cfg.data`` were read from this checkpoint, so they are
    untrusted and rebuilt only from allowed classes (``aigc.common.stored``).
    ``applicable_only``: leave out the configured callbacks whose needs the model and the data
    don't meet (``aigc.common.capabilities``), instead of refusing them.

    Only rank zero talks to MLflow: processes that torchrun or SLURM start as other ranks know
    their rank from the environment and get no logger; workers that Lightning spawns get rank
    zero's logger (run id included) and log nothing through it.
    """
    with within_memory():  # first: a stored model config is checked before anything else of it is read
        model = _instantiate(cfg.model, stored_in, "model")
    datamodule = _instantiate(cfg.data, stored_in, "data")
    config = recorded_config(cfg) if config is None else config
    configured = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    if applicable_only:
        configured = [callback for callback in configured if applies(callback, model, datamodule)]
    # Weight averaging (callbacks=[default,ema]) swaps the average in when validation starts and
    # out when it ends, each time in callback order: last, so that the callbacks that score and
    # draw at the end of validation see the average that validation's loss and the checkpoints see.
    every = sorted([*configured, *callbacks], key=lambda callback: isinstance(callback, WeightAveraging))
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()] if rank_zero_only.rank == 0 else []
    precision, why = trainer_precision(cfg.trainer, model)
    trainer = instantiate(cfg.trainer, callbacks=every, logger=loggers or False, precision=precision)
    return Job(
        datamodule=datamodule,
        model=model,
        trainer=trainer,
        tracker=tracker_for(next((lg for lg in loggers if isinstance(lg, MLflowLogger)), None)),
        precision=f"{precision} ({why})",
        config=config,
    )


def family_callbacks(overrides: Sequence[str], config_name: str) -> DictConfig:
    """Every model family's callbacks as today's configs define them (``conf/callbacks/family/*``),
    composed from ``config_name`` with this command's ``overrides``; a run's are picked by name."""
    families = GlobalHydra.instance().config_loader().get_group_options("callbacks/family")
    every_family = f"+callbacks/family@family_callbacks=[{','.join(families)}]"
    return compose(config_name=config_name, overrides=[*overrides, every_family]).family_callbacks


def applies(callback: L.Callback, model, datamodule) -> bool:
    """Whether the model and the data meet what ``callback`` needs (a callback that declares nothing applies)."""
    if not isinstance(callback, Contract):
        return True
    try:
        callback.check(model, datamodule)
    except MissingCapability:
        return False
    return True


def _instantiate(node: DictConfig, stored_in: str | None, group: str):
    if stored_in is None:
        return instantiate(node, _convert_="all")
    return instantiate_stored(node, f"{stored_in}: {group}", _convert_="all")
