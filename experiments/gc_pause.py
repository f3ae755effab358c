"""A command with Python's garbage collector paused while it starts and its imports frozen (as
shipped: ``aigc.jobs.console.entry_point`` pauses it, ``aigc.common.collector.started`` freezes and resumes it), against
the same command with the collector running throughout, as before.

    .venv/bin/python experiments/gc_pause.py --pairs 5

Each pair runs the command twice in fresh processes, A/B interleaved: once as shipped, once with
``gc.disable`` and ``gc.freeze`` made no-ops. The command is a smoke run,
``python -m aigc.run model=vae debug=fast trainer.max_epochs=1 data.download=false``, tracked
into a new SQLite store in a temporary folder: its time is its start (imports, building, the
store's tables), a few batches, two validations and the run's end. Prints a table of wall
seconds and the ratio of the medians; results in experiments/gc_pause.md.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMAND = ["model=vae", "debug=fast", "trainer.max_epochs=1", "data.download=false"]
LAUNCH = "import runpy, sys; sys.argv = ['aigc.run', *sys.argv[1:]]; runpy.run_module('aigc.run', run_name='__main__')"
ARMS = {
    "paused while starting, imports frozen (shipped)": LAUNCH,
    "collector throughout": "import gc; gc.disable = gc.freeze = lambda: None; " + LAUNCH,
}


def wall_seconds(code: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        begun = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code, *COMMAND],
            cwd=folder,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    times = {arm: [] for arm in ARMS}
    for _ in range(args.pairs):
        for arm, code in ARMS.items():
            times[arm].append(wall_seconds(code))
    print(f"python -m aigc.run {' '.join(COMMAND)}: {args.pairs} pairs, A/B interleaved\n")
    print("| arm | median s | runs (s) |")
    print("|---|---|---|")
    for arm, seconds in times.items():
        print(f"| {arm} | {statistics.median(seconds):.2f} | {', '.join(f'{s:.2f}' for s in seconds)} |")
    shipped, before = (statistics.median(seconds) for seconds in times.values())
    print(f"\nratio, shipped / collector throughout: {shipped / before:.2f}")


if __name__ == "__main__":
    main()
