"""Train a model composed from Hydra configs and track it in MLflow.

    python -m aigc.run model=gan data=mnist
    python -m aigc.run --cfg job            # print the composed config
    python -m aigc.run debug=fast           # a smoke run, logged like a real one

Returns the objective (``objective.metric``, a run-level setting: ``conf/objective/``) so Hydra
sweepers can optimise it (for a job an Optuna sweep's pruner stopped: ``optuna.TrialPruned``).
Training itself is ``aigc.jobs.training``, imported only to train.
"""

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from aigc.common.collector import started
from aigc.common.errors import Preempted, one_line
from aigc.jobs.console import entry_point
from aigc.tracking.run.signals import RunInterrupted


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | Exception | None:
    # in a sweep a job's failure goes back to the sweeper (which records it), not straight to exit
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    from aigc.jobs.training import PRUNED, USER_ERRORS, train  # torch, Lightning, MLflow: only when training

    started()
    try:
        return train(cfg)
    except Preempted as stop:
        if stop.requeued:
            print(
                f"\nPreempted ({stop.signal_name}) at step {stop.step}: checkpoint {stop.checkpoint}; the MLflow run "
                f"ends KILLED until SLURM job {stop.requeued}, requeued, continues it",
                file=sys.stderr,
            )
        else:
            print(
                f"\nPreempted ({stop.signal_name}) at step {stop.step}: checkpoint {stop.checkpoint}; the MLflow run "
                "ends KILLED: continue it with the same command and resume=<its run id>",
                file=sys.stderr,
            )
        if in_sweep:
            raise
        sys.exit(0 if stop.requeued else 130)
    except RunInterrupted as stop:
        print(f"\nStopped by {stop.signal_name}; the MLflow run ends KILLED.", file=sys.stderr)
        if in_sweep:
            raise
        sys.exit(130)
    except PRUNED as pruned:  # only in an Optuna sweep
        print(f"\n{pruned}; its MLflow run ends KILLED, tagged aigc.sweep.pruned=true")
        return pruned  # the job did its part: the sweeper records the trial PRUNED, not failed
    except Exception as raised:
        # Hydra's instantiate wraps what a constructor raised, naming only the class: the cause says what to fix
        error = raised.__cause__ if isinstance(raised, InstantiationException) and raised.__cause__ else raised
        if isinstance(error, USER_ERRORS):
            print(f"\nError: {error}", file=sys.stderr)
            if in_sweep:
                raise
            sys.exit(1)
        where = traceback.extract_tb(error.__traceback__)[-1]
        log = Path(HydraConfig.get().runtime.output_dir) / "error.log"
        try:
            log.write_text("".join(traceback.format_exception(raised)))
            full = f"full traceback: {log}"
        except OSError as unwritable:  # a full disk, say: the one line below still says what happened
            full = f"no traceback file: {unwritable.strerror}"
        print(
            f"\nError: {type(error).__name__}: {one_line(error)}\n"
            f"  at {where.filename}:{where.lineno} in {where.name} ({full})",
            file=sys.stderr,
        )
        if in_sweep:
            raise
        sys.exit(1)


if __name__ == "__main__":
    entry_point(main)
