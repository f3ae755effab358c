"""What MLflow logging costs per training step: `python -m aigc.run` with `logger=mlflow` at
`trainer.log_every_n_steps` of 1, 10 and 50, against the same run with `logger=none`.

    .venv/bin/python experiments/logging_cost.py [--pairs 3] [--steps 60] [--model vae]

The VAE on the offline MNIST digits has the shortest step of the models (about 16 ms here), so
a fixed cost per logged point shows most there. Two measures:

- A/B: each pair runs the tracked and the untracked command one after the other, in fresh
  processes and folders; a step is the median batch-start to batch-start time after 5 warm-up
  steps (experiments/helpers/step_time.py); the cost is the median of the per-pair ratios minus
  one. On a shared 2-core machine single pairs scatter by +-20%, more than the cost.
- Where the time goes, in the tracked runs (experiments/helpers/logging_time.py): the training
  thread's time inside the loggers' calls, plus the CPU time of the tracking writer thread
  (which competes with training for the cores), as a share of the training wall time.

Target: <= 2%. Prints one table; results in experiments/logging_cost.md.
"""

import argparse
import statistics
import time
from pathlib import Path

# the same timed run (this folder is the script's, on sys.path)
from bare_loop import MODELS, WARMUP, aigc_step_ms, one_timed_epoch, run_with_helpers

EVERY = (1, 10, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--model", choices=list(MODELS), default="vae")
    args = parser.parse_args()
    lines = [
        "| `log_every_n_steps` | MLflow ms/step | `logger=none` ms/step "
        f"| A/B cost (median of {args.pairs} pairs) | pairs | in logger calls, ms/step | writer thread CPU, ms/step "
        "| measured cost (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for every in EVERY:
        overrides = [*MODELS[args.model], f"trainer.log_every_n_steps={every}"]
        pairs, parts = [], []
        for _ in range(args.pairs):
            steps, logging = run_with_helpers(
                [*overrides, *one_timed_epoch(args.steps)], WARMUP, "step_time.StepTime", "logging_time.LoggingTime"
            )
            pairs.append(
                (1000 * statistics.median(steps["steps_s"]), aigc_step_ms([*overrides, "logger=none"], args.steps))
            )
            parts.append(logging)
            print(f"  every {every}: MLflow {pairs[-1][0]:.2f} ms, none {pairs[-1][1]:.2f} ms; {logging}", flush=True)
        costs = [a / b - 1 for a, b in pairs]
        inside = statistics.median(1000 * p["inside_s"] / p["steps"] for p in parts)
        writer = statistics.median(1000 * p["writer_cpu_s"] / p["steps"] for p in parts)
        shares = [(p["inside_s"] + p["writer_cpu_s"]) / p["wall_s"] for p in parts]
        lines.append(
            f"| {every} | {statistics.median(a for a, _ in pairs):.2f} | {statistics.median(b for _, b in pairs):.2f} "
            f"| {100 * statistics.median(costs):+.1f}% | {', '.join(f'{100 * c:+.1f}%' for c in costs)} "
            f"| {inside:.3f} | {writer:.3f} | {100 * statistics.median(shares):.2f}% |"
        )
    timed = parts[0]["steps"]  # an epoch may be shorter than --steps
    table = "\n".join(lines) + "\n\n" + system_metrics_cost()
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        f"# What MLflow logging costs per step\n\n`.venv/bin/python experiments/logging_cost.py` ({args.model}, "
        f"2 CPU cores, offline, one epoch: {WARMUP} warm-up steps, then up to {args.steps} timed, "
        f"{timed} here).\n\n{table}\n"
    )


def system_metrics_cost(samples: int = 50, interval_s: float = 10.0) -> str:
    """What one sample of MLflow's system metrics monitor costs (CPU, memory, disk, network; the
    runs above include it, every 10 s by default), as a share of one core at the default interval."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor("not-started", tracking_uri="sqlite:///:memory:")
    start = time.process_time()
    for _ in range(samples):
        monitor.collect_metrics()
    monitor.aggregate_metrics()
    ms = 1000 * (time.process_time() - start) / samples
    return (
        f"System metrics (`logger.mlflow.system_metrics_s={interval_s:g}`, the default): one "
        f"sample costs {ms:.2f} ms of CPU, {100 * ms / (1000 * interval_s):.3f}% of one core at that interval."
    )


if __name__ == "__main__":
    main()
