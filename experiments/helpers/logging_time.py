"""A benchmark-only callback: where MLflow logging spends time during training, written as JSON.

Two parts, over the training steps after warm-up:
- the training thread's wall time inside the loggers' ``log_metrics`` and ``save`` (what a
  step waits for: turning values into records and queueing them);
- the CPU time of aigc's tracking writer thread (``spool.WRITER_THREAD``, which sends the
  queued records to the store), read from the thread's own CPU clock. On a machine whose
  cores all train, that is CPU time taken from training.

Added with `+callbacks.logging_time._target_=logging_time.LoggingTime +callbacks.logging_time.out=<file>`.
"""

import json
import threading
import time
from pathlib import Path

from lightning import Callback

from aigc.tracking.store.writer import WRITER_THREAD


def thread_cpu_s(name: str) -> float:
    """CPU seconds of the live threads called ``name`` (0 when there is none)."""
    threads = [t for t in threading.enumerate() if t.name == name and t.ident is not None]
    return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in threads)


class LoggingTime(Callback):
    def __init__(self, out: str, warmup_batches: int = 5):
        self.out = Path(out)
        self.warmup_batches = warmup_batches
        self.timing = False
        self.inside_s = 0.0
        self.steps = 0

    def setup(self, trainer, pl_module, stage):
        for logger in trainer.loggers:
            logger.log_metrics = self._timed(logger.log_metrics)
            logger.save = self._timed(logger.save)

    def _timed(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                if self.timing:
                    self.inside_s += time.perf_counter() - start

        return timed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup_batches:
            self.timing = True
            self.start = time.perf_counter()
            self.writer_start_s = thread_cpu_s(WRITER_THREAD)
        self.steps += self.timing

    def on_train_epoch_end(self, trainer, pl_module):
        result = {
            "steps": self.steps,
            "wall_s": time.perf_counter() - self.start,
            "inside_s": self.inside_s,
            "writer_cpu_s": thread_cpu_s(WRITER_THREAD) - self.writer_start_s,
        }
        self.timing = False
        self.out.write_text(json.dumps(result))
