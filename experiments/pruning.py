"""Does pruning pay? One Optuna search run twice, without a pruner and with the median pruner,
and the trials and CPU time each took to reach the same best objective.

    .venv/bin/python experiments/pruning.py [--trials 12]

The search is `hparams_search=transformer_optuna` (TPE over the GPT's learning rate, weight
decay, depth and dropout on pydocs), shortened to 300 steps a trial with an evaluation every 50.
The two sweeps run in fresh folders, A/B interleaved one trial at a time: each command asks its
sweep for one more trial (`hydra.sweeper.n_trials=k`, the study resumes), so both see the same
machine. CPU time is the user + system time of every command (start-up included), from
`resource.getrusage`. "The same best objective" is the worse of the two sweeps' final bests:
both reached it, and the table says after how many trials and how much CPU. Prints one table;
results in experiments/pruning.md.
"""

import argparse
import math
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

SEARCH = [
    "-m",
    "hparams_search=transformer_optuna",
    "trainer.max_steps=300",
    "model.scheduler.warmup_steps=30",
    "model.scheduler.decay_steps=300",
    "+trainer.val_check_interval=50",
    "+trainer.limit_val_batches=10",
]
PRUNERS = ("none", "median")
STUDY = "transformer_pydocs_loss"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_more_trial(folder: Path, pruner: str, trials: int) -> float:
    """Run the sweep's command asking for ``trials`` finished trials (one more); its CPU seconds."""
    before = children_cpu_s()
    command = [
        sys.executable,
        "-m",
        "aigc.run",
        *SEARCH,
        f"hydra/sweeper/pruner={pruner}",
        f"hydra.sweeper.n_trials={trials}",
    ]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[2:])} failed in {folder}:\n{result.stderr[-3000:]}")
    return children_cpu_s() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aigc-pruning-") as root:
        folders = {pruner: Path(root) / pruner for pruner in PRUNERS}
        cpu: dict[str, list[float]] = {pruner: [] for pruner in PRUNERS}
        for trials in range(1, args.trials + 1):
            for pruner, folder in folders.items():
                folder.mkdir(exist_ok=True)
                cpu[pruner].append(one_more_trial(folder, pruner, trials))
                print(f"  {pruner}: trial {trials} took {cpu[pruner][-1]:.0f} CPU s", flush=True)
        studies = {
            pruner: optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder}/optuna.db").trials
            for pruner, folder in folders.items()
        }
    table = summary(studies, cpu)
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        "# Does pruning pay?\n\n`.venv/bin/python experiments/pruning.py "
        f"--trials {args.trials}` (2 CPU cores, offline). {SEARCH[1]} shortened: "
        f"`{' '.join(SEARCH[2:])}`.\n\n{table}\n"
    )


def summary(studies: dict[str, list[optuna.trial.FrozenTrial]], cpu: dict[str, list[float]]) -> str:
    bests = {pruner: running_best(trials) for pruner, trials in studies.items()}
    target = max(best[-1] for best in bests.values())  # both sweeps reached it
    lines = [
        f"| pruner | trials complete / pruned | best val/loss | trials to reach {target:.4f} "
        "| CPU s to reach it | CPU s, whole sweep |",
        "|---|---|---|---|---|---|",
    ]
    for pruner, trials in studies.items():
        states = [t.state for t in trials]
        reached = next(i for i, best in enumerate(bests[pruner]) if best <= target)
        lines.append(
            f"| {pruner} | {states.count(optuna.trial.TrialState.COMPLETE)} / "
            f"{states.count(optuna.trial.TrialState.PRUNED)} | {bests[pruner][-1]:.4f} | {reached + 1} "
            f"| {sum(cpu[pruner][: reached + 1]):.0f} | {sum(cpu[pruner]):.0f} |"
        )
    return "\n".join(lines)


def running_best(trials: list[optuna.trial.FrozenTrial]) -> list[float]:
    """The best objective of the trials that ran to their end, after each trial."""
    best, out = math.inf, []
    for trial in trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            best = min(best, trial.value)
        out.append(best)
    return out


if __name__ == "__main__":
    main()
