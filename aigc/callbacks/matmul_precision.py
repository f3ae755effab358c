"""torch's float32 matrix-product precision for a run, set in every training process (workers
that Lightning spawns start fresh interpreters, so a setting made before ``fit`` would not reach
them) and put back when the run ends.

``highest`` (torch's default) computes float32 products in float32; ``high`` lets NVIDIA GPUs
from Ampere on use TF32 (what nanoGPT sets); ``medium`` also lets a CPU with AMX compute them in
bf16 through oneDNN, with float32 accumulation: faster products on such a CPU
(``experiments/gpt_kernels.md``), with bf16's rounding of their inputs
(``torch.set_float32_matmul_precision``).
"""

from typing import Literal

import torch
from lightning import Callback


class Float32MatmulPrecision(Callback):
    def __init__(self, precision: Literal["highest", "high", "medium"] = "highest"):
        self.precision = precision
        self._before: str | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(self.precision)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._before is not None:
            torch.set_float32_matmul_precision(self._before)
            self._before = None
