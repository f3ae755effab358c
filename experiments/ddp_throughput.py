"""Training throughput of each model with `trainer=ddp_cpu` (2 processes, gloo) against
`trainer=cpu` (1 process), on this machine.

    .venv/bin/python experiments/ddp_throughput.py [--batches 30]

Each run is `python -m aigc.run` with logger=none, no validation, and a timing callback
(experiments/helpers/throughput.py) that counts images or tokens per second over all processes
after 5 warm-up batches. The batch size is per process, so 2 processes train on twice the
samples per step. Prints one table; results in experiments/ddp_throughput.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "gan": ["model=gan", "data.download=false"],
    "vae": ["model=vae", "data.download=false"],
    "transformer": ["model=transformer", "data=pydocs"],
    "lstm": ["model=lstm", "data=pydocs"],
}
TRAINERS = ("cpu", "ddp_cpu")


def throughput(model: list[str], trainer: str, batches: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "throughput.json"
        command = [
            sys.executable,
            "-m",
            "aigc.run",
            *model,
            f"trainer={trainer}",
            "logger=none",
            "trainer.max_epochs=1",
            f"++trainer.limit_train_batches={batches}",
            "++trainer.limit_val_batches=0",
            "++trainer.num_sanity_val_steps=0",
            "+callbacks.throughput._target_=throughput.Throughput",
            f"+callbacks.throughput.out={out}",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "experiments" / "helpers")}
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # MNIST offline is 4,500 digits: 35 batches of 64 per process when 2 share them
    parser.add_argument("--batches", type=int, default=30, help="training batches per process per run")
    args = parser.parse_args()
    rows = []
    for name, model in MODELS.items():
        single, double = (throughput(model, trainer, args.batches) for trainer in TRAINERS)
        rows.append((name, single["unit"], single["items_per_sec"], double["items_per_sec"]))
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    print("| model | unit | trainer=cpu (1 process) /s | trainer=ddp_cpu (2 processes) /s | ratio |")
    print("|---|---|---|---|---|")
    for name, unit, single, double in rows:
        print(f"| {name} | {unit} | {single:,.0f} | {double:,.0f} | {double / single:.2f} |")


if __name__ == "__main__":
    main()
