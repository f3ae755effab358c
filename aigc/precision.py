"""``trainer.precision=auto``: bf16-mixed where the hardware computes bf16 faster than float32,
float32 elsewhere.

bf16 pays off with matrix units that take it: CUDA GPUs that support bf16 (Ampere and later)
and CPUs with AMX (Intel Sapphire Rapids and later, flag ``amx_bf16``). On other CPUs bf16
autocast converts on every op and runs slower than float32, so ``auto`` keeps 32-true there.
The choice and its reason are the run's tag ``aigc.precision``. It looks at the hardware only:
on an AMX CPU the default GPT (0.8M parameters) is 1.25x slower in bf16 while the conv nets are
1.2-1.6x faster (``experiments/precision.py``), so it is not the default.
"""

from pathlib import Path


def choose_precision(requested, accelerator: str | None = "auto") -> tuple[str | int, str]:
    """(the Trainer's precision, why): ``requested`` as it is unless it is ``auto`` (or None,
    Lightning's default: 32-true)."""
    if requested is None:
        return "32-true", "Lightning's default"
    if requested != "auto":
        return requested, "as configured"
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        # emulated bf16 (V100, T4) counts as none: it is slower than float32 there
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", "auto: a CUDA GPU with bf16"
        return "32-true", "auto: a CUDA GPU without bf16"
    if cpu_has_amx():
        return "bf16-mixed", "auto: a CPU with AMX bf16 units"
    return "32-true", "auto: a CPU without AMX (bf16 would be slower)"


def trainer_precision(trainer_cfg) -> tuple[str | int, str]:
    """``choose_precision`` for a ``trainer`` config: what to pass the Trainer as ``precision=``, and why."""
    return choose_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"))


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        return "amx_bf16" in cpuinfo.read_text()
    except OSError:  # not Linux: no way to tell, so no
        return False
