"""A benchmark-only callback: training throughput after warm-up, written as JSON by rank zero.

Added to a run with `+callbacks.throughput._target_=throughput.Throughput +callbacks.throughput.out=<file>`
(experiments/helpers on PYTHONPATH). Counts tokens for token batches and images otherwise, over
all processes (each process times its own share; rank zero's time stands for all), and on a
GPU the peak memory torch allocated on rank zero's device during training.
"""

import json
import time
from pathlib import Path

import torch
from lightning import Callback


class Throughput(Callback):
    def __init__(self, out: str, warmup_batches: int = 5):
        self.out = Path(out)
        self.warmup_batches = warmup_batches
        self.items = 0
        self.unit = "images"
        self.started = None

    def on_train_start(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup_batches and self.started is None:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.started is not None:
            first = batch[0]
            self.unit = "tokens" if first.dtype == torch.long else "images"
            self.items += first.numel() if self.unit == "tokens" else first.shape[0]

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            seconds = time.perf_counter() - self.started
            result = {
                "items_per_sec": self.items * trainer.world_size / seconds,
                "unit": self.unit,
                "processes": trainer.world_size,
            }
            if pl_module.device.type == "cuda":
                result["peak_memory_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            self.out.write_text(json.dumps(result))
