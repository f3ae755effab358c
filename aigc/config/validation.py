"""Is a composed config one that can train? Checked before anything is built and before any
MLflow run exists, so a bad command line is one line and leaves no run behind.

The schema is the code: every node with a ``_target_`` becomes a call of that class, so each
of its keys is checked against the class's constructor (the argument exists, and the value
fits the argument's annotation, ranges included: ``aigc.common.constraints``), with pydantic in
strict mode (``"abc"`` is no int, ``1e8`` no batch size). On top of the annotations:

- a node that interpolates a key of another group that this choice of group lacks names the
  two choices and the options that would fit (``model=transformer needs data.block_size ...``);
- whole numbers beyond 64 bits are refused (torch can't hold them);
- ``trainer.devices`` can't exceed the CPUs or GPUs there are;
- ``EXTRA`` ranges for arguments of classes aigc does not own (Lightning's Trainer).
"""

import inspect
import os
import re
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, InterpolationToMissingValueError, MissingMandatoryValue
from pydantic import AfterValidator, ConfigDict, StringConstraints, TypeAdapter, ValidationError

from aigc.common.capabilities import Contract, is_logged, metrics_logged, trait
from aigc.common.errors import first_line
from aigc.common.stored import locate

INSTANTIATE_KEYS = {"_target_", "_partial_", "_args_", "_convert_", "_recursive_"}
LARGEST_INT = 2**63 - 1
# "abc" is no int, 1e8 no batch size, and 1e999 no float
_STRICT = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


def _epoch_limit(value: int | None) -> int | None:
    if value is not None and value not in (-1,) and value < 1:
        raise ValueError("should be at least 1 (or -1: no limit); 0 trains nothing")
    return value


# Ranges the annotations of classes aigc does not own leave open: (class or base class, argument) -> type
EXTRA: dict[tuple[str, str], Any] = {
    ("torch.optim.optimizer.Optimizer", "lr"): Annotated[float, Ge(0)],
    ("lightning.pytorch.trainer.trainer.Trainer", "max_epochs"): Annotated[int | None, AfterValidator(_epoch_limit)],
    ("lightning.pytorch.trainer.trainer.Trainer", "limit_train_batches"): Annotated[int | float, Gt(0)] | None,
    ("lightning.pytorch.trainer.trainer.Trainer", "log_every_n_steps"): Annotated[int, Gt(0)] | None,
    ("lightning.pytorch.trainer.trainer.Trainer", "gradient_clip_val"): Annotated[int | float, Ge(0)] | None,
    # Lightning's precisions, and auto (aigc/trainer/precision.py: bf16-mixed where the hardware gains from it)
    ("lightning.pytorch.trainer.trainer.Trainer", "precision"): _PRECISION_INPUT | Literal["auto"] | None,
    # a count, a list of indices, or Lightning's strings: "auto", "-1", "2", "0,1"
    ("lightning.pytorch.trainer.trainer.Trainer", "devices"): (
        int | list[int] | Annotated[str, StringConstraints(pattern=r"^(auto|-1|\d+(,\d+)*,?)$")]
    ),
}


class ConfigError(ValueError):
    """A config that can't train: the message is one line naming the key, the value and what fits."""


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first problem found in ``cfg`` (Hydra's own node aside)."""
    raw = {
        key: OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value
        for key, value in cfg.items()
        if key != "hydra"
    }
    config = {key: _resolved(cfg, key) for key in raw}
    for path, value in _leaves(config):
        if isinstance(value, int) and abs(value) > LARGEST_INT:
            raise ConfigError(f"{path} is a {len(str(abs(value)))}-digit number: whole numbers must fit in 64 bits")
    for path, node, raw_node in _instantiated(config, raw):
        _check_arguments(path, node, raw_node)
    _check_devices(config.get("trainer") or {})
    _check_registration(config)


def _check_registration(config: dict) -> None:
    """``register=<name>`` needs the run's MLflow model."""
    if not config.get("register"):
        return
    if not isinstance(config["register"], str) or not re.fullmatch(r"[\w.\- ]+", config["register"]):
        raise ConfigError(f"register={config['register']!r}: a registered model's name is letters, digits, '_.- '")
    mlflow = (config.get("logger") or {}).get("mlflow")
    if not mlflow or not mlflow.get("pyfunc", True):
        raise ConfigError("register= needs the run's MLflow model: keep logger=mlflow and logger.mlflow.pyfunc=true")


def _resolved(cfg: DictConfig, key: str) -> Any:
    try:
        value = cfg[key]
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except InterpolationKeyError as error:
        raise ConfigError(_mismatch(error)) from None
    except (MissingMandatoryValue, InterpolationToMissingValueError) as error:  # ??? in a config, or read through ${}
        missing = re.search(r"Missing mandatory value: (\S+)", str(error))
        name = missing.group(1) if missing else key
        raise ConfigError(f"{name} has no value (??? in its config): add {name}=<value> to the command") from None


def _mismatch(error: InterpolationKeyError) -> str:
    """Why a node can't resolve: the key it reads belongs to a group whose chosen option lacks it."""
    missing = re.search(r"Interpolation key '([^']+)' not found", str(error))
    where = str(error.full_key)
    if not missing:
        return f"{where}: {str(error).splitlines()[0]}"
    wanted = missing.group(1)
    choices = _choices()
    reader, owner = where.split(".")[0], wanted.split(".")[0]
    if owner not in choices or reader not in choices:
        return f"{where} reads {wanted}, which this config does not have"
    fitting = [option for option in _group_options(owner) if _option_has(owner, option, wanted.split(".", 1)[1])]
    fix = f": use {owner}={'|'.join(fitting)}" if fitting else ""
    return f"{reader}={choices[reader]} needs {wanted} ({where}), which {owner}={choices[owner]} does not have{fix}"


def _choices() -> dict[str, str]:
    return {str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items()} if HydraConfig.initialized() else {}


def _conf_dirs() -> list[Path]:
    if not HydraConfig.initialized():
        return []
    sources = HydraConfig.get().runtime.config_sources
    return [Path(s.path) for s in sources if s.schema == "file" and Path(s.path).is_dir()]


def _group_options(group: str) -> list[str]:
    return sorted({path.stem for folder in _conf_dirs() for path in (folder / group).glob("*.yaml")})


def _option_has(group: str, option: str, key: str) -> bool:
    for folder in _conf_dirs():
        path = folder / group / f"{option}.yaml"
        if path.is_file() and OmegaConf.select(OmegaConf.load(path), key, default=None) is not None:
            return True
    return False


def _leaves(value: Any, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _instantiated(value: Any, raw: Any, path: str = ""):
    """(path, node, the node as written) for every node with a ``_target_``."""
    if isinstance(value, dict):
        if "_target_" in value:
            yield path, value, raw if isinstance(raw, dict) else {}
        for key, item in value.items():
            raw_item = raw.get(key) if isinstance(raw, dict) else None
            yield from _instantiated(item, raw_item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            raw_item = raw[index] if isinstance(raw, list) and index < len(raw) else None
            yield from _instantiated(item, raw_item, f"{path}[{index}]")


def _check_arguments(path: str, node: dict, raw: dict) -> None:
    target = node["_target_"]
    cls = locate(target) if isinstance(target, str) else None
    if not callable(cls):
        raise ConfigError(f"{path}._target_={target!r}: no such class")
    if not isinstance(cls, type):
        raise ConfigError(f"{path}._target_={target!r} is a {type(cls).__name__}, not a class: name a class there")
    parameters = _parameters(cls)
    for key, value in node.items():
        if key in INSTANTIATE_KEYS:
            continue
        if key not in parameters:
            if "**" in parameters:
                continue
            names = ", ".join(parameters)
            raise ConfigError(f"{path}.{key}: {cls.__name__} takes no argument '{key}' (it takes: {names})")
        if _builds_objects(value):
            continue  # its own node is checked
        adapter = _adapter(parameters[key][1], cls, key)
        if adapter is None:
            continue
        try:
            _validate(adapter, value)
        except ValidationError as error:
            written = raw.get(key)
            source = f" (from {written})" if isinstance(written, str) and "${" in written else ""
            raise ConfigError(f"{path}.{key}={_shown(value)}{source}: {_reason(error)}") from None
    _check_relations(path, cls, node, parameters)


def _check_relations(path: str, cls: type, node: dict, parameters: dict) -> None:
    """A class whose arguments constrain one another states it in ``check_arguments``
    (``aigc.common.constraints``); it gets the configured values and the defaults of the rest."""
    check = getattr(cls, "check_arguments", None)
    if check is None:
        return
    values = {
        name: parameter.default
        for name, (parameter, _) in parameters.items()
        if parameter is not None and parameter.default is not parameter.empty
    }
    for key, value in node.items():
        if key in parameters and not _builds_objects(value):
            values[key] = value
        elif key in parameters and isinstance(value, dict):  # a net: its plain values (constraints.py)
            values[key] = {name: inner for name, inner in value.items() if not _builds_objects(inner)}
    try:
        check(**values)
    except TypeError:  # an argument it relates is given only later (a partial's): the constructor checks
        return
    except ValueError as error:
        raise ConfigError(f"{path}: {first_line(error)}") from None


def _validate(adapter: TypeAdapter, value: Any) -> None:
    """Strictly; a list also passes for a tuple (YAML has no tuples: ``betas: [0.9, 0.99]``)."""
    try:
        adapter.validate_python(value)
    except ValidationError:
        if not isinstance(value, list):
            raise
        try:
            adapter.validate_python(tuple(value))
        except ValidationError:
            pass
        else:
            return
        raise


def _check_devices(trainer: dict) -> None:
    devices = trainer.get("devices")
    if isinstance(devices, list):
        devices = len(devices) or 0
    if isinstance(devices, int) and (devices == 0 or devices < -1):
        raise ConfigError(f"trainer.devices={devices}: give a number of devices, -1 (all there are) or auto")
    if not isinstance(devices, int) or devices < 1:
        return  # -1 or "auto": every one there is
    accelerator = str(trainer.get("accelerator", "auto"))
    import torch

    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus):
        available, what = gpus, "GPUs"
    else:
        available, what = len(os.sched_getaffinity(0)), "CPUs"
    if devices > available:
        raise ConfigError(
            f"trainer.devices={devices}: this machine has {available} {what} (trainer.accelerator={accelerator}); "
            f"use at most {available}"
        )


@cache
def _parameters(cls) -> dict[str, tuple[inspect.Parameter, type]]:
    """The keyword arguments ``cls(...)`` takes: (parameter, the class whose ``__init__`` declares
    it), following ``**kwargs`` up the base classes that receive them. A name that maps to
    ``(None, None)`` stands for "anything else" (a ``**kwargs`` that goes nowhere we can see)."""
    found: dict[str, tuple[inspect.Parameter, type]] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        try:
            parameters = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]  # not self
        except (TypeError, ValueError):
            return found | {"**": (None, None)}
        for parameter in parameters:
            if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                found.setdefault(parameter.name, (parameter, klass))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return found
    return found | {"**": (None, None)}


@cache
def _adapter(owner: type, cls: type, key: str) -> TypeAdapter | None:
    annotation = next(
        (
            EXTRA[(f"{base.__module__}.{base.__qualname__}", key)]
            for base in cls.__mro__
            if (f"{base.__module__}.{base.__qualname__}", key) in EXTRA
        ),
        None,
    )
    if annotation is None:
        try:
            hints = typing.get_type_hints(vars(owner)["__init__"], include_extras=True)
        except Exception:  # annotations that don't resolve: nothing to check against
            return None
        annotation = hints.get(key)
    if annotation is None:
        return None
    try:
        return TypeAdapter(
            annotation, config=ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)
        )
    except Exception:  # a type pydantic can't express: the class checks it itself
        return None


def _builds_objects(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value
    return isinstance(value, list) and any(_builds_objects(item) for item in value)


def _reason(error: ValidationError) -> str:
    """Pydantic's messages, one line: each alternative of a union once."""
    reasons = dict.fromkeys(_located(e) + _lowered(e["msg"].removeprefix("Value error, ")) for e in error.errors())
    text = "; or ".join(reasons)
    return text if len(text) <= 400 else text[:397] + "..."


def _lowered(message: str) -> str:
    return message[0].lower() + message[1:]


def _located(error: dict) -> str:
    """Where inside a dict value the error is (``rank: ``); nothing for the value itself or a union's arm."""
    keys = [str(part) for part in error["loc"] if isinstance(part, str) and not _is_type_name(part)]
    return f"{'.'.join(keys)}: " if keys else ""


def _is_type_name(part: str) -> bool:
    return part[:1].isupper() or not part.isidentifier() or part in _TYPE_NAMES


_TYPE_NAMES = {"int", "float", "str", "bool", "list", "tuple", "dict", "none", "literal"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_trainable(datamodule, model, callbacks: list) -> None:
    """After the data is loaded: the model takes the data (a model with ``check_data(datamodule)``
    says so, e.g. a text-to-image model that every image has a caption it can read), every
    callback's needs are met by the model and the data (``aigc.common.capabilities``), and there is
    at least one training batch (a batch size beyond the training split, with its last partial batch
    dropped, trains nothing and would end FINISHED)."""
    if hasattr(model, "check_data"):
        try:
            model.check_data(datamodule)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if getattr(datamodule, "bucket_sizes", None) and not trait(model, "trains_on_any_image_size"):
        raise ConfigError(
            f"data.buckets=true batches images of {len(datamodule.bucket_sizes)} sizes, and "
            f"{type(model).__name__} trains on one (data.image_shape): use data.buckets=false, "
            "or a model that takes any size (model=stable_diffusion)"
        )
    for callback in callbacks:
        if isinstance(callback, Contract):
            callback.check(model, datamodule)
    if len(datamodule.train_dataloader()) == 0:
        source = getattr(datamodule, "source", None)
        examples = f"{source.num_train:,} training examples" if source is not None else "the training data"
        raise ConfigError(
            f"data.batch_size={datamodule.batch_size}: {examples} make no full batch, so nothing would train; "
            "use a smaller data.batch_size"
        )


def check_monitors(cfg: DictConfig, model, datamodule, callbacks: list) -> None:
    """What the run monitors (``objective.metric``: checkpoints, a sweep's pruner and result; a
    callback's ``monitor``: the best checkpoint, early stopping) is a metric that the model or one
    of its callbacks declares it logs (``aigc.common.capabilities.metrics_logged``). Otherwise the
    run fails at its first validation or early stopping never stops; a model that declares
    nothing is not checked."""
    logged = metrics_logged(model, datamodule, callbacks)
    if logged is None:
        return
    monitored = {"objective.metric": OmegaConf.select(cfg, "objective.metric", default=None)}
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and node.get("monitor") is not None:
            monitored[f"callbacks.{name}.monitor"] = node.monitor
    for key, metric in monitored.items():  # the objective first: a monitor that interpolates it is fixed there
        if metric is None or is_logged(str(metric), logged):
            continue
        # the validation metrics first: what is usually monitored
        names = ", ".join(sorted(logged, key=lambda name: not name.startswith("val/")))
        model_name = _choices().get("model")
        fix = (
            f"set objective.metric to one of them (the default: conf/objective/{model_name or '<model>'}.yaml)"
            if key == "objective.metric"
            else "monitor one of them"
        )
        raise ConfigError(
            f"{key}={metric}: neither the model ({type(model).__name__}) nor a callback logs it; "
            f"this run logs {names}: {fix}"
        )


@contextmanager
def within_memory() -> Iterator[None]:
    """Building a net too large for this machine's memory (a width of 10,000) is a config error:
    one line naming the node, not a crash."""
    try:
        yield
    except Exception as error:
        chain = [error, error.__cause__, error.__context__]
        if not any(isinstance(e, MemoryError) or "can't allocate memory" in str(e) for e in chain if e is not None):
            raise
        node = re.search(r"full_key: (\S+)", str(error))
        wanted = re.search(r"allocate (\d+) bytes", str(error))
        size = f" ({int(wanted.group(1)) / 2**30:.1f} GiB)" if wanted else ""
        where = node.group(1) if node else "the model"
        raise ConfigError(f"{where} needs more memory than this machine has{size}: make it smaller") from None
