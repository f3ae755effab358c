"""Is bf16-mixed faster than float32 for each model on this machine? The evidence behind
``trainer.precision=auto`` (``aigc/trainer/precision.py``).

    .venv/bin/python experiments/precision.py [--pairs 2] [--steps 60]

Each model's `aigc.run` (`logger=none`, no validation) at `trainer.precision=bf16-mixed` and at
`32-true`, alternating, median ms per step after 5 warm-up steps (the timing of
experiments/bare_loop.py). Prints one table; results in experiments/precision.md.
"""

import argparse
from pathlib import Path

from bare_loop import MODELS, ab_row, aigc_step_ms  # the same timed run (this folder is the script's, on sys.path)

from aigc.trainer.precision import cpu_has_amx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    lines = ["| model | bf16-mixed ms/step | 32-true ms/step | bf16 / fp32 (median) | pairs |", "|---|---|---|---|---|"]
    for name, overrides in MODELS.items():
        pairs = []
        for _ in range(args.pairs):
            bf16 = aigc_step_ms([*overrides, "logger=none", "trainer.precision=bf16-mixed"], args.steps)
            fp32 = aigc_step_ms([*overrides, "logger=none", "trainer.precision=32-true"], args.steps)
            pairs.append((bf16, fp32))
            print(f"  {name}: bf16 {bf16:.1f} ms, fp32 {fp32:.1f} ms", flush=True)
        lines.append(ab_row(f"`{' '.join(overrides[:2])}`", pairs, places=1))
    table = "\n".join(lines)
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        "# bf16-mixed against float32, per model\n\n`.venv/bin/python experiments/precision.py "
        f"--pairs {args.pairs} --steps {args.steps}` (2 CPU cores, AMX: {cpu_has_amx()}).\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
