"""A benchmark-only callback: how much of a run's fit is spent validating, written as JSON.

Added to a run with `+callbacks.evaluation_time._target_=evaluation_time.EvaluationTime
+callbacks.evaluation_time.out=<file>` (experiments/helpers on PYTHONPATH). Validation is
everything between Lightning's validation start and end: the validation loss and every
callback's scoring at the epoch's end (drawing and scoring the samples, the grids).
"""

import json
import time
from pathlib import Path

from lightning import Callback


class EvaluationTime(Callback):
    def __init__(self, out: str, warmup_batches: int = 0):
        self.out = Path(out)
        self.validation_s = 0.0

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module):
        self.validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validation_s += time.perf_counter() - self.validation_start

    def on_fit_end(self, trainer, pl_module):
        fit_s = time.perf_counter() - self.fit_start
        self.out.write_text(
            json.dumps({"fit_s": fit_s, "validation_s": self.validation_s, "steps": trainer.global_step})
        )
