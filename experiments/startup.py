"""Start-up: how long `python -m aigc.run` takes to answer, and to start training, against
`import torch, lightning`.

    .venv/bin/python experiments/startup.py [--pairs 5]

Each row's command and the anchor (`python -c "import torch, lightning"`) run alternately,
`--pairs` times each, in fresh processes in a temporary folder; the table gives the medians and
the median of the per-pair ratios (machines differ from day to day: the ratio is the result).
For the one-batch runs it gives two times: from the command's launch to its first training step
(experiments/helpers/first_step.py), and to its exit (the step, the epoch's end, the
checkpoint and, with MLflow, the run's model and the end of the run). A run into a new SQLite
store creates its tables first; "an existing store" is every run after the first in a folder.
Targets (issue 15): `--cfg job`, `--help` and a rejected override under 2 s; the first training
step within 1.3x the anchor. Prints one table; results in experiments/startup.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bare_loop import HELPERS  # the benchmark callbacks (this folder is the script's, on sys.path)

ANCHOR = ("import torch, lightning", [sys.executable, "-c", "import torch, lightning"])
ONE_BATCH = [
    "model=gan",
    "debug=fast",
    "data.download=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=0",
]
ROWS = {  # name: (overrides, trains, runs into an existing store)
    "`--cfg job` (print the config)": (["--cfg", "job"], False, False),
    "`--help`": (["--help"], False, False),
    "`model=nope` (refused by Hydra)": (["model=nope"], False, False),
    "`trainer.max_epochs=0` (refused by validation)": (["trainer.max_epochs=0"], False, False),
    "one-batch GAN run, `logger=none`": ([*ONE_BATCH, "logger=none"], True, False),
    "one-batch GAN run, MLflow, a new SQLite store": (ONE_BATCH, True, False),
    "one-batch GAN run, MLflow, an existing store": (ONE_BATCH, True, True),
}


def launch(command: list[str], folder: Path, first_step: Path | None = None) -> tuple[float | None, float]:
    """Seconds from launch to the first training step (None if not asked for) and to exit."""
    env = {**os.environ, "PYTHONPATH": str(HELPERS)}
    if first_step is not None:
        command = [
            *command,
            "+callbacks.first_step._target_=first_step.FirstStep",
            f"+callbacks.first_step.out={first_step}",
        ]
    launched = time.time()
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    exited = time.time() - launched
    if first_step is None:
        return None, exited
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(first_step.read_text())["first_step_at"] - launched, exited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    lines = [
        f"| command | aigc: first step (median of {args.pairs}) | aigc: exit | `{ANCHOR[0]}` "
        "| ratio, first step (median of pairs) | ratio, exit |",
        "|---|---|---|---|---|---|",
    ]
    for name, (overrides, trains, existing_store) in ROWS.items():
        firsts, exits, anchors = [], [], []
        for _ in range(args.pairs):
            with tempfile.TemporaryDirectory() as folder:  # a fresh store and output folder each time
                command = [sys.executable, "-m", "aigc.run", *overrides]
                if existing_store:
                    launch(command, Path(folder), Path(folder) / "untimed.json")
                first, exited = launch(command, Path(folder), Path(folder) / "first_step.json" if trains else None)
                firsts.append(first)
                exits.append(exited)
                anchors.append(launch(ANCHOR[1], Path(folder))[1])
        exit_ratio = statistics.median(a / b for a, b in zip(exits, anchors, strict=True))
        if trains:
            first_ratio = statistics.median(a / b for a, b in zip(firsts, anchors, strict=True))
            first_columns = f"{statistics.median(firsts):.2f} s", f"{first_ratio:.2f}"
        else:
            first_columns = "", ""
        lines.append(
            f"| {name} | {first_columns[0]} | {statistics.median(exits):.2f} s | {statistics.median(anchors):.2f} s "
            f"| {first_columns[1]} | {exit_ratio:.2f} |"
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    (Path(__file__).with_suffix(".md")).write_text(
        "# Start-up\n\n`.venv/bin/python experiments/startup.py` (2 CPU cores, offline).\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
