"""A benchmark-only callback: the wall time of each training step after warm-up, written as JSON.

Added to a run with `+callbacks.step_time._target_=step_time.StepTime +callbacks.step_time.out=<file>`
(experiments/helpers on PYTHONPATH). A step is the time from one batch's start to the next one's:
loading, forward, backward, optimizer, Lightning's hooks, logging and the progress bar all count.
"""

import json
import time
from pathlib import Path

from lightning import Callback


class StepTime(Callback):
    def __init__(self, out: str, warmup_batches: int = 5):
        self.out = Path(out)
        self.warmup_batches = warmup_batches
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module):
        # the last step ends where the epoch's own work (grids, checkpoints) begins: not counted
        starts = self.starts[self.warmup_batches :]
        self.out.write_text(json.dumps({"steps_s": [b - a for a, b in zip(starts, starts[1:], strict=False)]}))
