"""What SLURM's environment says about the job this process is a task of."""

import os
import re


def slurm_job_id() -> str | None:
    """The SLURM job this process belongs to (an array job's task as ``<job>_<task>``), if any."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def shared_step_name() -> str | None:
    """``slurm-<job>.<step>`` for a task of a SLURM job step of several tasks (``srun`` starts each):
    the same in every task of the step, and in the step's start after the job is requeued; None
    elsewhere (one task, as in ``srun --pty bash``; the batch script's own shell; outside SLURM)."""
    job, step = slurm_job_id(), os.environ.get("SLURM_STEP_ID")
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 1)
    if job is None or step is None or tasks < 2:
        return None
    return re.sub(r"[^\w.-]", "_", f"slurm-{job}.{step}")
