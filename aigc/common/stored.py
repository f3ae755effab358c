"""What a run stored, read back as untrusted input: checkpoints and the configs inside them.

A checkpoint can come from anyone who can write a run's artifacts on a shared store. Opening
one never runs code:

- ``read_checkpoint`` loads tensors and plain containers only (``weights_only=True``) and says
  in one line what is wrong with a file that is not a checkpoint: empty, not a ``torch.save``
  archive, truncated, or holding objects that would run code;
- ``instantiate_stored`` rebuilds objects from a stored config only when every ``_target_`` in
  it names a class on the allow-list (aigc's own classes, torch's optimizers, schedulers and
  modules, Lightning's callbacks). Anything else, e.g. ``_target_: torch.load`` on a byte string
  with ``weights_only: false``, is refused before anything is imported or called.
"""

import importlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aigc.common.errors import first_line

# where aigc.callbacks.ConfigSnapshot puts the run's resolved config and its MLflow run id
CONFIG_KEY = "aigc_config"
RUN_KEY = "aigc_run_id"
# (where a class may live, the classes it must derive from): checked before and after import
ALLOWED_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aigc.", ("builtins.object",)),
    ("torch.optim.", ("torch.optim.Optimizer", "torch.optim.lr_scheduler.LRScheduler")),
    ("torch.nn.", ("torch.nn.Module",)),
    ("lightning.pytorch.callbacks.", ("lightning.pytorch.callbacks.Callback",)),
)
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_UNSAFE_DETAIL = re.compile(r"(Trying to load unsupported GLOBAL [^\n]*|Unsupported global: [^\n]*)")


class UnsafeConfig(ValueError):
    """A stored config names something outside the allow-list."""


class NotACheckpoint(ValueError):
    """A file that is not a readable Lightning checkpoint."""


def read_checkpoint(path: str | Path) -> dict:
    """The Lightning checkpoint at ``path`` (tensors and plain containers only), or one clear error."""
    checkpoint = read_torch_file(path)
    if not (isinstance(checkpoint, dict) and "state_dict" in checkpoint):
        raise NotACheckpoint(f"{path} is a torch.save file but not a Lightning checkpoint (it has no state_dict)")
    return checkpoint


def read_torch_file(path: str | Path) -> Any:
    """What ``torch.save`` wrote at ``path`` (tensors and plain containers only), or one clear error."""
    path = Path(path)
    if not path.is_file():
        raise NotACheckpoint(f"no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise NotACheckpoint(f"{path} is empty (0 bytes), not a checkpoint: a write cut short, e.g. by a full disk")
    with open(path, "rb") as file:
        starts_as_zip = file.read(4) == b"PK\x03\x04"  # a zip archive's first local header
    if not starts_as_zip:
        raise NotACheckpoint(f"{path} is not a checkpoint: not an archive written by torch.save (Lightning's format)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, KeyError, ... by the damage
        unsafe = _UNSAFE_DETAIL.search(str(error))
        if unsafe:
            raise NotACheckpoint(
                f"{path} is refused: it holds objects other than tensors and plain data, which could run code "
                f"when opened ({unsafe.group(1).rstrip('.')})"
            ) from None
        raise NotACheckpoint(f"{path} is truncated or corrupt ({first_line(error)})") from None


def check_targets(config: Any, where: str = "config") -> None:
    """Raise ``UnsafeConfig`` unless every ``_target_`` in ``config`` is an allowed class."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key == "_target_":
                _check_target(value, where)
            else:
                check_targets(value, f"{where}.{key}")
    elif isinstance(config, (list, tuple)):
        for index, value in enumerate(config):
            check_targets(value, f"{where}[{index}]")


def instantiate_stored(config: Any, where: str, **kwargs) -> Any:
    """``hydra.utils.instantiate`` for a config read back from a checkpoint or a run's artifacts."""
    check_targets(config, where)
    return instantiate(config, **kwargs)


def _check_target(target: Any, where: str) -> None:
    refused = f"refused to rebuild {where}: _target_ {str(target)[:200]!r} is not"
    if not (isinstance(target, str) and _DOTTED_NAME.fullmatch(target)):
        raise UnsafeConfig(f"{refused} a dotted class name")
    prefix, rule = next(((p, bases) for p, bases in ALLOWED_TARGETS if target.startswith(p)), (None, None))
    if rule is None:
        allowed = ", ".join(prefix + "*" for prefix, _ in ALLOWED_TARGETS)
        raise UnsafeConfig(f"{refused} on the allow-list of classes a stored config may name ({allowed})")
    cls = locate(target)  # imports only modules under an allowed prefix
    if not isinstance(cls, type):
        raise UnsafeConfig(f"{refused} a class")
    defined_there = f"{cls.__module__}.".startswith(prefix)  # not a class merely imported into such a module
    if not (defined_there and issubclass(cls, tuple(locate(base) for base in rule))):
        raise UnsafeConfig(f"{refused} an allowed class (it is {cls.__module__}.{cls.__qualname__})")


def locate(dotted: str) -> Any:
    """The object a dotted name names (the longest importable module, then attributes), or None."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name, None)
        return found
    return None
