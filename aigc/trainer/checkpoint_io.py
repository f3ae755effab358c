"""How checkpoints reach the disk and come back (a Lightning ``CheckpointIO`` plugin, set in
``conf/trainer/default.yaml``).

Writing: into a temporary file beside the target, flushed to disk, then renamed over it. A
rename within one folder is atomic, so a checkpoint file is either the old one or the new one,
never a half-written one. (Lightning's own writer stages the file in the system's temporary
folder and, when that is another file system, copies it into place: a full disk there leaves
a truncated ``last.ckpt``.)

Reading: ``aigc.common.stored.read_torch_file``: tensors and plain containers only, and one clear
error line for a file that is not a checkpoint.
"""

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from aigc.common.stored import read_torch_file


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if "://" in str(path) or storage_options is not None:  # object stores: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        serialized = io.BytesIO()  # as Lightning does: a full disk then fails the write with an OSError
        torch.save(checkpoint, serialized)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(serialized.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, weights_only=True)
        return read_torch_file(path)  # checkpoints, and the weights Lightning's spawned workers hand back
