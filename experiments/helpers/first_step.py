"""A benchmark-only callback: the wall-clock moment (``time.time()``) the first training step
starts, written as JSON, so that a benchmark can time a command from its launch to its first step.

Added with `+callbacks.first_step._target_=first_step.FirstStep +callbacks.first_step.out=<file>`
(experiments/helpers on PYTHONPATH).
"""

import json
import time
from pathlib import Path

from lightning import Callback


class FirstStep(Callback):
    def __init__(self, out: str):
        self.out = Path(out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.out.exists():
            self.out.write_text(json.dumps({"first_step_at": time.time()}))
