"""A tracking write as JSON and staged files, and back: what the spool's journal holds.

Decoding trusts nothing it reads: an operation must be one of ``WRITES`` (the client's write
methods), MLflow entities are rebuilt from their protobuf messages (data only), and a file a
record names must lie inside the spool's ``files/`` folder.
"""

import base64
import inspect
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.protos import service_pb2

ARTIFACT_WRITES = {"log_text", "log_dict", "log_image", "log_artifact", "log_artifacts"}
METADATA_WRITES = {
    "log_batch",
    "log_metric",
    "log_param",
    "set_tag",
    "delete_tag",
    "log_inputs",
    "set_terminated",
    "update_run",
}
WRITES = ARTIFACT_WRITES | METADATA_WRITES
# the MLflow entities writes carry, and their protobuf messages (data only) for the spool
ENTITIES = {cls.__name__: (cls, getattr(service_pb2, cls.__name__)) for cls in (Metric, Param, RunTag, DatasetInput)}


def write_name(record: dict) -> str:
    """The client method a record calls: one of ``WRITES``, or an error for anything else."""
    if record.get("op") not in WRITES:
        raise ValueError(f"not a tracking write: {record.get('op')!r}")
    return record["op"]


def encode(name: str, method: Callable, args: tuple, kwargs: dict, files: Path, record_id: str) -> dict:
    """A write as JSON, with the files it uploads copied into ``files`` now (a caller's temporary
    folder is gone by the time the write is sent); times filled in now, not at replay."""
    bound = inspect.signature(method).bind(*args, **kwargs).arguments
    bound.pop("synchronous", None)
    if name == "set_terminated" and bound.get("end_time") is None:
        bound["end_time"] = int(time.time() * 1000)
    if name == "log_image" and bound.get("key") is not None and bound.get("timestamp") is None:
        bound["timestamp"] = int(time.time() * 1000)
    staged = files / record_id  # the file keeps its name: the artifact is named after it
    for key in ("local_path", "local_dir"):
        if key in bound:
            source = Path(bound[key])
            staged.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, staged / source.name)
            bound[key] = f"{record_id}/{source.name}"
    if name == "log_image":
        staged.mkdir(parents=True, exist_ok=True)
        np.save(staged / "image.npy", np.asarray(bound["image"]), allow_pickle=False)
        bound["image"] = f"{record_id}/image.npy"
    return {"id": record_id, "op": name, "args": _to_json(bound), "files": [record_id] if staged.exists() else []}


def decode(record: dict, files: Path) -> dict:
    args = _from_json(record["args"])
    for key in ("local_path", "local_dir"):
        if key in args:
            args[key] = str(_inside(files, args[key]))
    if record["op"] == "log_image":
        args["image"] = np.load(_inside(files, args["image"]), allow_pickle=False)
    return args


def discard_files(record: dict, files: Path) -> None:
    for name in record.get("files", []):
        path = _inside(files, name)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _inside(files: Path, name: str) -> Path:
    path = (files / name).resolve()
    if not path.is_relative_to(files.resolve()) or path == files.resolve():
        raise ValueError(f"a spooled write names a file outside the spool: {name!r}")
    return path


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple(cls for cls, _ in ENTITIES.values())):
        proto = value.to_proto().SerializeToString()
        return {"__entity__": type(value).__name__, "proto": base64.b64encode(proto).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return _to_json(value.item())
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__entity__" in value:
            cls, message = ENTITIES[value["__entity__"]]  # a KeyError for anything else
            proto = message()
            proto.ParseFromString(base64.b64decode(value["proto"]))
            return cls.from_proto(proto)
        if "__float__" in value:
            return float(value["__float__"])  # "nan", "inf", "-inf"
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value
