"""``trainer.precision=auto`` (the default): bf16-mixed where the hardware computes bf16 faster
than float32 and the model gains from it, float32 elsewhere.

bf16 pays off with matrix units that take it: CUDA GPUs that support bf16 (Ampere and later)
and CPUs with AMX (Intel Sapphire Rapids and later, flag ``amx_bf16``). On other CPUs bf16
autocast converts on every op and runs slower than float32, so ``auto`` keeps 32-true there.
On an AMX CPU it also asks the model: small matrices don't repay autocast's casts, so a
LightningModule that runs slower in bf16 on a CPU says so with the class attribute
``faster_in_bf16_on_cpu = False`` (a trait: ``aigc.common.capabilities.Traits``; measured by
``experiments/precision.py``: the conv nets run faster, the default 0.8M-parameter GPT slower).
The choice and its reason are the run's tag ``aigc.precision``.
"""

from pathlib import Path

from aigc.common.capabilities import trait


def choose_precision(requested, accelerator: str | None = "auto", model=None) -> tuple[str | int, str]:
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
    if not cpu_has_amx():
        return "32-true", "auto: a CPU without AMX (bf16 would be slower)"
    if not trait(model, "faster_in_bf16_on_cpu"):
        return "32-true", f"auto: a CPU with AMX, but {type(model).__name__} runs slower in bf16 on a CPU"
    return "bf16-mixed", "auto: a CPU with AMX bf16 units"


def trainer_precision(trainer_cfg, model=None) -> tuple[str | int, str]:
    """``choose_precision`` for a ``trainer`` config and the model it trains: what to pass the
    Trainer as ``precision=``, and why."""
    return choose_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"), model)


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        return "amx_bf16" in cpuinfo.read_text()
    except OSError:  # not Linux: no way to tell, so no
        return False
