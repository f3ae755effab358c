"""Start-up: how long `python -m aigc.run` takes to answer, against `import torch, lightning`.

    .venv/bin/python experiments/startup.py [--pairs 5]

Each row's command and the anchor (`python -c "import torch, lightning"`) run alternately,
`--pairs` times each, in fresh processes in a temporary folder; the table gives the medians and
the median of the per-pair ratios (machines differ from day to day: the ratio is the result).
Targets (issue 15): `--cfg job`, `--help` and a rejected override under 2 s; a one-batch run
within 1.3x the anchor. Prints one table; results in experiments/startup.md.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHOR = ("import torch, lightning", [sys.executable, "-c", "import torch, lightning"])
ONE_BATCH = [
    "model=gan",
    "debug=fast",
    "data.download=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=0",
]
ROWS = {
    "`--cfg job` (print the config)": ["--cfg", "job"],
    "`--help`": ["--help"],
    "`model=nope` (refused by Hydra)": ["model=nope"],
    "`trainer.max_epochs=0` (refused by validation)": ["trainer.max_epochs=0"],
    "one-batch GAN run, `logger=none`": [*ONE_BATCH, "logger=none"],
    "one-batch GAN run, MLflow (SQLite store, its model logged)": ONE_BATCH,
}


def seconds(command: list[str], folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=folder, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    lines = [
        f"| command | aigc (median of {args.pairs}) | `{ANCHOR[0]}` | ratio (median of pairs) |",
        "|---|---|---|---|",
    ]
    for name, overrides in ROWS.items():
        ours, anchor = [], []
        for _ in range(args.pairs):
            with tempfile.TemporaryDirectory() as folder:  # a fresh store and output folder each time
                ours.append(seconds([sys.executable, "-m", "aigc.run", *overrides], Path(folder)))
                anchor.append(seconds(ANCHOR[1], Path(folder)))
        ratio = statistics.median(a / b for a, b in zip(ours, anchor, strict=True))
        lines.append(f"| {name} | {statistics.median(ours):.2f} s | {statistics.median(anchor):.2f} s | {ratio:.2f} |")
    table = "\n".join(lines)
    print(table)
    (Path(__file__).with_suffix(".md")).write_text(
        "# Start-up\n\n`.venv/bin/python experiments/startup.py` (2 CPU cores, offline).\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
