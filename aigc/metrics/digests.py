"""Short digests of network weights, so that numbers (and cached statistics) from different
weights never mix."""

import hashlib
import os
from functools import cache
from pathlib import Path

import torch

from aigc.common.errors import first_line


def state_dict_digest(path: str | Path) -> str:
    """A short hash of the values in a state-dict file: the same weights give the same digest
    whatever the file's name (``torch.save`` writes the name into the file).

    The file is read with ``weights_only=True``: one that holds anything but tensors is refused
    here, one clear line, before any library opens it without that guard. Computed once per
    file version (path, size, modification time) in a process.
    """
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a state dict of tensors ({first_line(error, 200)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict of tensors (it holds a {type(state).__name__})")
    h = hashlib.sha256()
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()[:12]


def load_shipped(net: torch.nn.Module, path: str | Path, trained_by: str) -> torch.nn.Module:
    """``net`` with the weights that ship at ``path`` (tensors only), in eval mode; a missing file
    names the script ``trained_by`` that writes it."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{type(net).__name__} weights not found at {path}: "
            f"run `.venv/bin/python {trained_by}` to train and write them"
        )
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()
