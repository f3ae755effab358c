"""Compare runs: a table, the best run, and plots.

    python -m aigc.compare experiment_name=gan-mnist
    python -m aigc.compare run_id=<sweep parent run id>      # a sweep's jobs
    python -m aigc.compare experiment_name=gan-mnist curves=[val/fid_mnist,train/loss_d]
    python -m aigc.compare 'experiment_name=*-mnist'         # every model on MNIST, side by side
    python -m aigc.compare experiment_name=[gan-mnist,diffusion-mnist]

Writes ``runs.csv``, ``curves.png``, ``params.png`` and ``parallel.png`` (parallel coordinates of
the params that differ) to its output folder; for a
sweep they are logged to the parent run under ``compare/``. Runs that differ only in ``seed``
(``python -m aigc.run -m seed=1,2,3 model.beta=1,4``) are also grouped: ``seeds.csv`` (mean ±
sd of the final and best value per group, groups ranked) and ``seeds.png`` (mean curves, ±1 sd bands).
Text-to-image runs add ``prompts.csv`` (the prompt accuracy by category) and ``prompt_grids.png``
(each run's newest grid of the same prompts, side by side).
"""

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from aigc.common.collector import started
from aigc.jobs.console import entry_point, one_line_errors

if TYPE_CHECKING:
    from aigc.tracking import reports

# torch, Lightning, MLflow, matplotlib: imported by the functions that use them, so that `--help` and a
# refused override answer in about a second, as aigc.run's do (tests/test_layers.py)


def compare(cfg: DictConfig) -> "reports.Comparison":
    from aigc.tracking import reports
    from aigc.tracking.store.client import open_store
    from aigc.tracking.store.liveness import reap

    client = open_store(cfg.tracking_uri)
    for run in reap(client):  # runs whose process died without a word are not "running"
        print(
            f"Run {run.info.run_id} ({run.info.run_name}) had no heartbeat for 5 minutes: marked FAILED, aigc.end=lost"
        )
    found = reports.select(client, cfg.experiment_name, cfg.run_id, cfg.metric, cfg.mode)
    rows = reports.table(found, client)
    print(reports.format_table(rows))
    best = found.best
    if best is None:
        print(f"\nNo run has a finite {found.metric}.")
    else:
        print(f"\nBest run: {best.info.run_name} ({best.info.run_id}), final {found.metric}={found.final(best):.6g}")

    out = Path(HydraConfig.get().runtime.output_dir)
    files = [
        _csv(rows, out / "runs.csv"),
        reports.plot_curves(found, client, list(cfg.curves) or [found.metric], out / "curves.png"),
        reports.plot_params(found, out / "params.png"),
        reports.plot_parallel(found, out / "parallel.png"),
    ]
    groups = reports.seed_groups(found, client)
    if groups:
        group_rows = reports.group_table(found, groups)
        print(f"\nRuns that differ only in seed, best group first:\n{reports.format_table(group_rows)}")
        files.append(_csv(group_rows, out / "seeds.csv"))
        files.append(reports.plot_seed_groups(found, client, groups, out / "seeds.png"))
    prompt_rows = reports.prompt_accuracy_table(found.runs)
    if prompt_rows:
        print(f"\nPrompt accuracy by category (val/prompt_acc):\n{reports.format_table(prompt_rows)}")
        files.append(_csv(prompt_rows, out / "prompts.csv"))
    grids = reports.prompt_grids(client, found.runs, out / "prompt_grids.png")
    files += [grids] if grids else []
    print(f"Wrote {', '.join(f.name for f in files)} to {out}")
    if found.parent is not None:
        for file in files:
            client.log_artifact(found.parent.info.run_id, str(file), "compare")
        print(f"Logged them to the sweep's parent run {found.parent.info.run_id} under compare/")
    if found.spans_experiments:
        print(f"The experiments side by side in the MLflow UI: {side_by_side(cfg.tracking_uri, found)}")
    return found


def side_by_side(tracking_uri: str, found: "reports.Comparison") -> str:
    """The MLflow UI's page of the compared experiments' runs together (its "Compare" of experiments)."""
    ids = json.dumps(sorted({run.info.experiment_id for run in found.runs}), separators=(",", ":"))
    server = tracking_uri if tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{server.rstrip('/')}/#/compare-experiments/s?experiments={ids}"


def _csv(rows: list[dict[str, str]], path: Path) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    started()
    with one_line_errors():
        compare(cfg)


if __name__ == "__main__":
    entry_point(main)
