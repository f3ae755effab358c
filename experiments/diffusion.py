"""The diffusion model on MNIST: what its steps cost, how it races the GAN, and how it samples best.

    .venv/bin/python experiments/diffusion.py cost       # ms per training step, s per sampling step
    .venv/bin/python experiments/diffusion.py race       # experiment=gan_mnist against experiment=diffusion_mnist
    .venv/bin/python experiments/diffusion.py race --only diffusion_mnist_30min   # 185 epochs, guidance 1.25
    .venv/bin/python experiments/diffusion.py race --only gan_mnist_conditional vae_mnist_conditional
    .venv/bin/python experiments/diffusion.py race --only epsilon_20_epochs v_prediction_20_epochs flow_20_epochs
    .venv/bin/python experiments/diffusion.py samplers <last.ckpt>   # FID, IS, accuracy, seconds per sampler

- ``cost``, in this process: for each net (``model.net.channels``, attention) and precision
  (float32, bf16 autocast), the median wall time of a training step at the experiment's batch
  size (AdamW, conditional, label dropout), and of one guided sampling step over 5,000 samples
  (10,000 net evaluations, in the image metrics' batches of 500): what an evaluation costs per
  sampling step.
- ``race``: ``python -m aigc.run experiment=<name> data.download=false metrics.inception=false``,
  one after the other on this machine, and each run's final IS, FID and label accuracy from its
  MLflow store; the share of its fit spent in validation (``helpers/evaluation_time.py``).
- ``samplers``: a run's checkpoint scored as its evaluations score it (5,000 samples, the image
  metrics and the label accuracy callbacks of today's configs), for DDIM at 50 steps and
  DPM-Solver++ at 20 and 10, guidance 0 to 3, with the EMA weights (the checkpoint's
  ``state_dict``) and the raw ones (``current_model_state``, which Lightning's weight averaging
  keeps beside them).

Prints each table and appends it to experiments/diffusion.md with the CPU it ran on.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"
OFFLINE = ["data.download=false", "metrics.inception=false"]
SHORT = [  # what the training objectives are compared on: 20 epochs, scored once on 1,000 samples
    "trainer.max_epochs=20",
    "metrics.every_n_epochs=20",
    "metrics.num_samples=1000",
    "callbacks.sample_grid.every_n_epochs=20",
]
RACES = {
    "gan_mnist": ["experiment=gan_mnist"],
    "diffusion_mnist": ["experiment=diffusion_mnist"],
    "diffusion_mnist_30min": ["experiment=diffusion_mnist", "trainer.max_epochs=185", "model.guidance=1.25"],
    # the conditional GAN and VAE in the same time
    "gan_mnist_conditional": ["experiment=gan_mnist", "model.num_classes=10"],
    "vae_mnist_conditional": [
        "model=vae",
        "data=mnist",
        "model.num_classes=10",
        "trainer.max_epochs=300",
        "metrics.every_n_epochs=50",
        "callbacks.sample_grid.every_n_epochs=50",
        "callbacks.reconstruction_grid.every_n_epochs=50",
    ],
    "epsilon_20_epochs": ["experiment=diffusion_mnist", *SHORT, "model.prediction=epsilon"],
    "v_prediction_20_epochs": ["experiment=diffusion_mnist", *SHORT, "model.prediction=v_prediction"],
    "flow_20_epochs": ["experiment=diffusion_mnist", *SHORT, "model.prediction=flow", "model.sampler=euler"],
}
SCRATCH = tempfile.TemporaryDirectory(prefix="diffusion-")  # the composed configs' paths: data, caches; removed at exit
NETS = {  # model.net overrides of each net the cost table prices
    "32-64-64 attention": {"channels": [32, 64, 64], "attention": True},
    "32-64-64": {"channels": [32, 64, 64], "attention": False},
    "16-32-64 attention": {"channels": [16, 32, 64], "attention": True},
    "16-32-32": {"channels": [16, 32, 32], "attention": False},
}
SAMPLERS = [("ddim", 50), ("dpm++", 20), ("dpm++", 10)]
GUIDANCE = [0.0, 1.0, 2.0, 3.0]


def cpu_name() -> str:
    from aigc.trainer.precision import cpu_has_amx

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    amx = "AMX" if cpu_has_amx() else "no AMX"
    return f"{names[0] if names else platform.processor()}, {amx}, {os.cpu_count()} cores"


def composed(*overrides: str):
    """``experiment=diffusion_mnist`` with ``overrides``, its paths in a temporary folder (no Hydra run here)."""
    from hydra import compose, initialize_config_dir

    paths = [f"paths.root_dir={SCRATCH.name}", f"paths.output_dir={SCRATCH.name}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["experiment=diffusion_mnist", *OFFLINE, *paths, *overrides])


# --- cost ------------------------------------------------------------------------------------


def cost(repeats: int) -> str:
    import torch
    from hydra.utils import instantiate

    cfg = composed()
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    lines = [
        f"| net | parameters | precision | ms per training step (batch {images.shape[0]}) "
        "| s per 5,000 samples per guided sampling step |",
        "|---|---|---|---|---|",
    ]
    for name, net in NETS.items():
        overrides = [f"model.net.{key}={json.dumps(value).replace(' ', '')}" for key, value in net.items()]
        for bf16 in (False, True):
            torch.manual_seed(0)
            model = instantiate(composed(*overrides).model, _convert_="all")
            train_ms, sample_s = price(model, images, labels, bf16, repeats)
            parameters = sum(p.numel() for p in model.parameters())
            lines.append(
                f"| {name} | {parameters / 1e6:.2f} M | {'bf16 autocast' if bf16 else 'float32'} "
                f"| {train_ms:.0f} | {sample_s:.2f} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def price(model, images, labels, bf16: bool, repeats: int) -> tuple[float, float]:
    """ms per training step on this batch, and seconds per guided sampling step over 5,000 samples."""
    import torch

    optimizer = model.configure_optimizers()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model.losses(images, model.drop_labels(labels))
        loss.backward()
        optimizer.step()

    def sampling_step(num_samples: int = 5000):
        noisy = torch.randn(500, *model.image_shape)
        with torch.no_grad(), autocast:
            for _ in range(0, num_samples, 500):
                model.guided(noisy, torch.tensor(500), torch.arange(500) % 10, guidance=2.0)

    train_ms = 1000 * timed(train_step, warmup=3, repeats=repeats * 4)
    sampling_step(500)  # warm-up
    return train_ms, timed(sampling_step, warmup=0, repeats=repeats)


def timed(function, warmup: int, repeats: int) -> float:
    """The median wall time of ``function()`` in seconds, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


# --- race ------------------------------------------------------------------------------------


def race(names: list[str], keep: Path | None) -> str:
    from mlflow import MlflowClient

    lines = [
        "| experiment | precision | epochs | steps | wall time | val/is_mnist | val/fid_mnist | val/acc_mnist "
        "| validation / fit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="diffusion-race-") as tmp:
        for name in names:
            folder = (keep or Path(tmp)) / name
            folder.mkdir(parents=True, exist_ok=True)
            out = folder / "evaluation_time.json"
            added = [
                "+callbacks.evaluation_time._target_=evaluation_time.EvaluationTime",
                f"+callbacks.evaluation_time.out={out}",
            ]
            command = [sys.executable, "-m", "aigc.run", *RACES[name], *OFFLINE, *added]
            print("$", " ".join(["python", *command[1:]]), flush=True)
            start = time.perf_counter()
            env = {**os.environ, "PYTHONPATH": str(HELPERS)}
            result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if result.returncode != 0:
                raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
            timing = json.loads(out.read_text())
            client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
            (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1)
            final = {
                key: last_value(client, run.info.run_id, f"val/{key}") for key in ("is_mnist", "fid_mnist", "acc_mnist")
            }
            precision, epochs = run.data.tags["aigc.precision"].split(" ")[0], run.data.params["trainer.max_epochs"]
            lines.append(
                f"| `{name}` | {precision} | {epochs} | {timing['steps']} | {wall / 60:.1f} min "
                f"| {final['is_mnist']:.2f} | {final['fid_mnist']:.1f} | {final['acc_mnist']:.3f} "
                f"| {100 * timing['validation_s'] / timing['fit_s']:.1f}% |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def last_value(client, run_id: str, key: str) -> float:
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return history[-1].value if history else float("nan")


# --- samplers --------------------------------------------------------------------------------


def samplers(
    checkpoint_path: Path, num_samples: int, rows: list[tuple[str, int]], guidance: list[float], kinds: list[str]
) -> str:
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from aigc.common.stored import CONFIG_KEY, instantiate_stored, read_checkpoint
    from aigc.trainer.precision import trainer_precision

    checkpoint = read_checkpoint(str(checkpoint_path))
    run_cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    # Lightning's weight averaging saves the average as the state_dict and the raw weights beside it
    weights = {"EMA": checkpoint["state_dict"], "raw": checkpoint.get("current_model_state")}
    weights = {kind: weights[kind] for kind in kinds if weights[kind] is not None}
    cfg = composed(f"metrics.num_samples={num_samples}", "metrics.every_n_epochs=1")
    datamodule = instantiate_stored(run_cfg.data, str(checkpoint_path), _convert_="all")

    def scores(state: dict, sampler: str, steps: int, scale: float) -> tuple[dict, float]:
        """The scores of ``num_samples`` samples drawn so, and the seconds they took (a new model
        each time: one evaluation's samples are kept on the module)."""
        model = instantiate_stored(run_cfg.model, str(checkpoint_path), _convert_="all")
        model.load_state_dict(state)
        model.sampler, model.steps, model.guidance = sampler, steps, scale
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            precision=trainer_precision(cfg.trainer, model)[0],
            logger=False,
            callbacks=[instantiate(cfg.callbacks[key]) for key in ("image_metrics", "label_accuracy")],
            enable_checkpointing=False,
            enable_progress_bar=False,
            limit_val_batches=1,
        )
        start = time.perf_counter()
        (scored,) = trainer.validate(model, datamodule=datamodule, verbose=False)
        return scored, time.perf_counter() - start

    scores(next(iter(weights.values())), "dpm++", 1, 1.0)  # the real digits' statistics, computed once and cached
    lines = [
        f"| weights | sampler | steps | guidance | val/fid_mnist | val/is_mnist | val/acc_mnist "
        f"| s per {num_samples:,} samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, state in weights.items():
        for sampler, steps in rows:
            for scale in guidance:
                scored, seconds = scores(state, sampler, steps, scale)
                lines.append(
                    f"| {name} | {sampler} | {steps} | {scale:g} | {scored['val/fid_mnist']:.1f} "
                    f"| {scored['val/is_mnist']:.2f} | {scored['val/acc_mnist']:.3f} | {seconds:.0f} |"
                )
                print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cost_parser = commands.add_parser("cost")
    cost_parser.add_argument("--repeats", type=int, default=1)
    race_parser = commands.add_parser("race")
    race_parser.add_argument("--only", nargs="+", choices=list(RACES), default=["gan_mnist", "diffusion_mnist"])
    race_parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    sampler_parser = commands.add_parser("samplers")
    sampler_parser.add_argument("checkpoint", type=Path)
    sampler_parser.add_argument("--num-samples", type=int, default=5000)
    sampler_parser.add_argument("--guidance", type=float, nargs="+", default=GUIDANCE)
    sampler_parser.add_argument("--weights", nargs="+", choices=["EMA", "raw"], default=["EMA", "raw"])
    sampler_parser.add_argument("--sampler", nargs="+", default=[f"{s}:{n}" for s, n in SAMPLERS], help="name:steps")
    args = parser.parse_args()

    import torch

    if args.command == "cost":
        table = cost(args.repeats)
    elif args.command == "race":
        table = race(args.only, args.keep)
    else:
        rows = [(spec.split(":")[0], int(spec.split(":")[1])) for spec in args.sampler]
        table = samplers(args.checkpoint, args.num_samples, rows, args.guidance, args.weights)
    heading = (
        f"### `{' '.join(sys.argv[1:])}` ({date.today()}; {cpu_name()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"\n{heading}\n\n{table}")
    with open(Path(__file__).with_suffix(".md"), "a") as results:
        results.write(f"\n{heading}\n\n{table}\n")


if __name__ == "__main__":
    main()
