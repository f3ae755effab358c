"""`model=stable_diffusion` (LoRA fine-tuning of a diffusers SD 1.x pipeline) against diffusers' own
`examples/text_to_image/train_text_to_image_lora.py`, and what each of its options costs and gives.

    .venv/bin/python experiments/stable_diffusion.py --diffusers <diffusers checkout or its git dir>
        [--pairs 3] [--epochs 3] [--batches 25] [--threads 1] [--rank 4] [--unet 32 64] [--deps DIR]
        [--only anchor options]

Nothing is downloaded but the anchor's own dependencies, and nothing of diffusers is committed.

The task: a tiny random SD 1.x-shaped pipeline (tests/helpers/tiny_stable_diffusion.py, its UNet's
``block_out_channels`` ``--unet``) and the shapes benchmark's captioned 64x64 scenes: ``--batches``
batches of 4 training images, exactly (no partial batch in either program), and a held-out tenth.
Both programs train on the same images for ``--epochs`` epochs: aigc's ``data=image_folder`` holds
out its validation split (``held_out``), so diffusers' script gets a copy of the folder with only
aigc's training images and their ``metadata.jsonl`` lines.

``anchor`` (needs ``--diffusers``): the script is copied out of the checkout (or ``git show`` of a
git directory) into a temporary folder and run unmodified with the README's LoRA command on the CPU:
``--resolution 64 --center_crop --train_batch_size 4 --rank R --learning_rate 1e-4 --lr_scheduler
constant --mixed_precision no --report_to tensorboard`` (its default tracker), no validation prompt,
no hub, no checkpoints. Its imports that aigc does not have (``datasets``, ``tensorboard`` and the
former's own ``dill``, ``xxhash``, ``multiprocess``) are installed with ``pip install --no-deps
--target`` into ``--deps`` (default: a temporary folder) and put on ``PYTHONPATH`` for its process
only. It is started by a small runner in the temporary folder that wraps ``Accelerator.log`` (which
the script calls once after every step with the step's ``train_loss``, and which then writes to its
tracker as before) to note the wall and process CPU clocks and the loss; the script file is not
changed. Beside it, ``python -m aigc.run model=stable_diffusion`` with the same pipeline, images,
rank (alpha = rank, as the script sets), batch, optimizer (AdamW 1e-4, weight decay 1e-2, constant
rate, no clipping: the script's ``clip_grad_norm_`` gets the parameter ``filter`` that building the
optimizer already used up, so it clips nothing), float32, and tracking on as a user runs it (MLflow:
``train/loss`` every step like theirs, learning rates, system metrics, heartbeat, checkpoints),
validation after the last epoch only; left out: the prompt grid (25-step samples at the epoch's end) and
the run's logged MLflow model (after training), neither inside the timed steps. aigc's clock is a
Lightning callback noting the same two clocks at every batch start. And aigc again with
``model.cache_latents=true``.

Per pair (one seed per pair, the same for both programs; the order reversed every other pair): aigc,
diffusers, aigc cached. A run's step time is the median over its steps after the first epoch (the
warm-up, and the epoch that fills aigc's cache), each epoch's first and last step left out (they may
hold the work between epochs), in wall time and in the process's CPU time (all its threads: aigc's
tracking writer too); a ratio is the median of the per-pair ratios. Both programs run with
``--threads`` torch threads (default 1: on a shared 2-core machine two threads make every step wait
for the busier core; 0 keeps torch's default).
Peak memory is each process's maximum resident set (``wait4``'s ``ru_maxrss``). Loss curves: the
same seed is not the same random stream in two programs, so the mean loss over windows of steps,
per program the mean and spread over the seeds.

``options``: on the same task, aigc alone: LoRA rank 4 (the anchor's aigc runs, when they ran) /
16 / 64 (alpha = rank), the whole UNet (``model.peft=none``, at aigc's suggested 1e-5 and at 1e-4),
min-SNR-5 and cached latents; their step time and peak memory, and ``val/loss`` after the last step
(fixed noise and timesteps on the held-out images; on a random pipeline that is all an option
"gives": no image quality to see), beside the pipeline's own before any training. Prints the tables
and writes them into experiments/stable_diffusion.md, between its results markers (the notes around
them are kept).
"""

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_PIPELINE = ROOT / "tests" / "helpers" / "tiny_stable_diffusion.py"
SCRIPT = "examples/text_to_image/train_text_to_image_lora.py"
BATCH = 4
RESOLUTION = 64
# what diffusers' script imports beyond aigc's dependencies (datasets' own from its metadata), --no-deps:
# the rest (pyarrow, pandas, fsspec, huggingface_hub, protobuf for tensorboard's event writer) are aigc's
DEPS = ["datasets==5.2.0", "dill==0.4.1", "xxhash==4.1.0", "multiprocess==0.70.19", "tensorboard==2.21.0"]
OPTIONS = {  # row -> aigc overrides, on the LoRA rank-4 run's
    "LoRA rank 4": [],
    "LoRA rank 16": ["model.lora.rank=16", "model.lora.alpha=16"],
    "LoRA rank 64": ["model.lora.rank=64", "model.lora.alpha=64"],
    "full UNet, lr 1e-5": ["model.peft=none", "model.optimizer.lr=1e-5"],
    "full UNet, lr 1e-4": ["model.peft=none"],
    "LoRA 4, min-SNR-5": ["model.snr_gamma=5"],
    "LoRA 4, cached latents": ["model.cache_latents=true"],
}


@dataclass
class Run:
    steps_ms: list[float]  # each timed step's wall time
    cpu_ms: list[float]  # and the process's CPU time in it (all its threads)
    losses: list[float]  # the training loss of every step, from the first
    peak_mib: float
    wall_s: float
    val_loss: float | None = None
    params: dict = field(default_factory=dict)

    @property
    def step_ms(self) -> float:
        return statistics.median(self.steps_ms)

    @property
    def step_cpu_ms(self) -> float:
        return statistics.median(self.cpu_ms)


def measured(command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Run ``command``; its wall seconds and peak resident memory (MiB), output to ``cwd/output.txt``."""
    with open(cwd / "output.txt", "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = (cwd / "output.txt").read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{tail}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}


# --- the task ---------------------------------------------------------------------------------


def make_task(folder: Path, unet: tuple[int, ...], batches: int) -> tuple[Path, Path, Path]:
    """The pipeline, the captioned images (aigc's: ``batches`` batches of training images, exactly, and
    its held-out tenth) and a copy with only aigc's training images (theirs)."""
    from aigc.data.image_folder import held_out

    # the tests' own builder, read from its file (the tests are not an installed package)
    spec = importlib.util.spec_from_file_location("tiny_stable_diffusion", TINY_PIPELINE)
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    pipeline = tiny.save_tiny_stable_diffusion(folder / "pipeline", unet_channels=unet)
    ours = tiny.save_captioned_scenes(folder / "images", int(batches * BATCH / 0.85) + 8, RESOLUTION)
    lines = [json.loads(line) for line in (ours / "metadata.jsonl").read_text().splitlines()]
    val = held_out([line["file_name"] for line in lines], 0.1)  # data.val_fraction's default
    kept = [line for line, held in zip(lines, val, strict=True) if not held]
    for line in kept[batches * BATCH :]:  # (a held-out image stays held out: the split hashes each path alone)
        (ours / line["file_name"]).unlink()
    lines = [line for line in lines if (ours / line["file_name"]).exists()]
    (ours / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    kept = kept[: batches * BATCH]  # full batches in both programs: aigc's loader drops a last partial one
    theirs = folder / "train_images"
    theirs.mkdir()
    for line in kept:
        shutil.copy(ours / line["file_name"], theirs / line["file_name"])
    (theirs / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    print(f"task: UNet {unet}, {len(kept)} training and {len(lines) - len(kept)} held-out images", flush=True)
    return pipeline, ours, theirs


# --- aigc ---------------------------------------------------------------------------------------


def aigc_overrides(pipeline: Path, images: Path, epochs: int, seed: int, rank: int) -> list[str]:
    return [
        "model=stable_diffusion",
        f"model.pretrained={pipeline}",
        *("data=image_folder", f"data.path={images}", f"data.resolution={RESOLUTION}", f"data.batch_size={BATCH}"),
        *(f"model.lora.rank={rank}", f"model.lora.alpha={rank}"),
        f"seed={seed}",
        "trainer.precision=32-true",  # as --mixed_precision no (auto picks it too without AMX)
        f"trainer.max_epochs={epochs}",
        f"trainer.check_val_every_n_epoch={epochs}",  # validation after the last step only
        "trainer.log_every_n_steps=1",  # the loss every step, as their tracker gets it
        # validation's loss only (the prompt grid draws 25-step samples: minutes, not a training cost)
        "~callbacks.prompt_grid",
        "logger.mlflow.log_model=false",
        "logger.mlflow.pyfunc=false",
    ]


# the clocks each program is read by, written into its temporary folder: (wall, process CPU) seconds at
# each step's boundary. aigc: a Lightning callback at every batch start (as experiments/helpers/step_time.py)
AIGC_CLOCK = """
import json, time
from lightning import Callback

class Clock(Callback):
    def __init__(self, out):
        self.out, self.marks = out, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.marks.append((time.perf_counter(), time.process_time()))

    def on_train_epoch_end(self, trainer, pl_module):
        with open(self.out, "w") as file:
            json.dump(self.marks, file)
"""
# diffusers' script, run unmodified by runpy, its Accelerator.log (called once after every step with the
# step's train_loss, then passed on to its tracker) wrapped to note the clocks and the loss
DIFFUSERS_CLOCK = """
import json, runpy, sys, time
import accelerate

marks, log = [], accelerate.Accelerator.log

def clocked(self, values, *args, **kwargs):
    marks.append((time.perf_counter(), time.process_time(), values.get("train_loss")))
    return log(self, values, *args, **kwargs)

accelerate.Accelerator.log = clocked
out, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open(out, "w") as file:
        json.dump(marks, file)
"""


def timed(steps: dict[int, tuple[float, float]], batches: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of the timed steps, from ``steps`` (step index from 0 -> (wall, CPU)
    seconds): every step after the first epoch but an epoch's first and last, whose time may hold the
    work between two epochs (aigc's validation and checkpoint; both programs' new pass over the data)."""
    kept = [steps[k] for k in sorted(steps) if k >= batches and k % batches not in (0, batches - 1)]
    return [1000 * wall for wall, _ in kept], [1000 * cpu for _, cpu in kept]


def differences(marks: list) -> list[tuple[float, float]]:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:], strict=False)]


def threads_env(threads: int | None) -> dict:
    return {} if threads is None else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_aigc(overrides: list[str], batches: int, threads: int | None) -> Run:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "aigc_clock.py").write_text(AIGC_CLOCK)
        out = folder / "marks.json"
        clock = ["+callbacks.clock._target_=aigc_clock.Clock", f"+callbacks.clock.out={out}"]
        env = {**clean_env(), "PYTHONPATH": str(folder), **threads_env(threads)}
        wall, peak = measured([sys.executable, "-m", "aigc.run", *overrides, *clock], folder, env)
        # batch k's start to batch k + 1's: step k (from 0), loading and logging included
        steps_ms, cpu_ms = timed(dict(enumerate(differences(json.loads(out.read_text())))), batches)
        losses, val_loss, params = read_mlflow(folder / "mlflow.db")
    return Run(steps_ms, cpu_ms, losses, peak, wall, val_loss, params)


def read_mlflow(store: Path) -> tuple[list[float], float | None, dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]
    val = client.get_metric_history(run.info.run_id, "val/loss")
    params = {k: v for k, v in run.data.params.items() if k.startswith("params_")}
    return losses, (max(val, key=lambda m: m.step).value if val else None), params


# --- diffusers' script --------------------------------------------------------------------------


def copy_script(source: Path, folder: Path) -> Path:
    """diffusers' LoRA script out of a checkout or a (bare) git directory, into ``folder``."""
    script = folder / "train_text_to_image_lora.py"
    if (source / SCRIPT).is_file():
        shutil.copy(source / SCRIPT, script)
    else:
        shown = subprocess.run(
            ["git", "--git-dir", str(source), "show", f"HEAD:{SCRIPT}"], capture_output=True, text=True, check=True
        )
        script.write_text(shown.stdout)
    return script


def install_deps(folder: Path) -> Path:
    if not (folder / "datasets").is_dir():
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder), *DEPS]
        subprocess.run(command, check=True)
    return folder


def run_diffusers(
    script: Path, deps: Path, pipeline: Path, images: Path, steps: int, batches: int, seed: int, rank: int, threads=None
) -> Run:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "diffusers_clock.py").write_text(DIFFUSERS_CLOCK)
        out = folder / "marks.json"
        command = [
            *(sys.executable, str(folder / "diffusers_clock.py"), str(out), str(script)),
            *("--pretrained_model_name_or_path", str(pipeline), "--train_data_dir", str(images)),
            *("--image_column", "image", "--caption_column", "text", "--resolution", str(RESOLUTION), "--center_crop"),
            *("--train_batch_size", str(BATCH), "--max_train_steps", str(steps), "--rank", str(rank)),
            *("--learning_rate", "1e-4", "--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--seed", str(seed)),
            *("--mixed_precision", "no", "--dataloader_num_workers", "0", "--report_to", "tensorboard"),
            *("--checkpointing_steps", "1000000", "--output_dir", str(folder / "out")),
        ]
        env = {
            **clean_env(),
            "PYTHONPATH": str(deps),
            "HF_HOME": str(folder / "hf"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            **threads_env(threads),
        }
        wall, peak = measured(command, folder, env)
        marks = json.loads(out.read_text())
    # marks[j] after step j (from 0): step k is marks[k - 1] to marks[k]
    steps_ms, cpu_ms = timed({k + 1: step for k, step in enumerate(differences(marks))}, batches)
    return Run(steps_ms, cpu_ms, [loss for *_, loss in marks], peak, wall)


# --- tables -------------------------------------------------------------------------------------


def anchor(args, pipeline: Path, ours_images: Path, their_images: Path, script: Path, deps: Path) -> dict:
    runs = {"aigc": [], "diffusers": [], "aigc cached": []}
    for index, seed in enumerate(range(args.pairs)):
        base = aigc_overrides(pipeline, ours_images, args.epochs, seed, args.rank)
        order = ["aigc", "diffusers", "aigc cached"]
        for side in order if index % 2 == 0 else order[::-1]:
            if side == "diffusers":
                steps = args.epochs * args.batches
                run = run_diffusers(
                    script, deps, pipeline, their_images, steps, args.batches, seed, args.rank, args.threads
                )
            else:
                cached = ["model.cache_latents=true"] if side == "aigc cached" else []
                run = run_aigc(base + cached, args.batches, args.threads)
            runs[side].append(run)
            print(
                f"  seed {seed} {side}: {run.step_ms:.0f} ms/step ({run.step_cpu_ms:.0f} ms CPU), "
                f"peak {run.peak_mib:.0f} MiB, "
                f"{run.wall_s:.0f} s, mean loss {statistics.mean(run.losses):.4f}",
                flush=True,
            )
    return runs


def speed_table(runs: dict, epochs: int, batches: int) -> str:
    theirs = runs["diffusers"]
    lines = [
        f"| program (rank {{rank}}, batch {BATCH}, {RESOLUTION}x{RESOLUTION}) | wall ms/step | / diffusers | per-pair "
        "ratios | CPU ms/step | / diffusers | per-pair ratios | peak RSS MiB | / diffusers | process wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side, label in (
        ("diffusers", "diffusers `train_text_to_image_lora.py` (tensorboard tracker)"),
        ("aigc", "`aigc.run model=stable_diffusion` (MLflow tracking)"),
        ("aigc cached", "`aigc.run ... model.cache_latents=true`"),
    ):
        ours, cells = runs[side], [label]
        for measure in ("step_ms", "step_cpu_ms"):
            ratios = [getattr(a, measure) / getattr(b, measure) for a, b in zip(ours, theirs, strict=True)]
            cells += [
                f"{statistics.median(getattr(r, measure) for r in ours):.1f}",
                f"{statistics.median(ratios):.3f}",
                ", ".join(f"{r:.3f}" for r in ratios),
            ]
        memory = [a.peak_mib / b.peak_mib for a, b in zip(ours, theirs, strict=True)]
        cells += [
            f"{statistics.median(r.peak_mib for r in ours):.0f}",
            f"{statistics.median(memory):.3f}",
            f"{statistics.median(r.wall_s for r in ours):.0f}",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + (
        f"\n\nEach run: {epochs} epochs of {batches} steps; its step time: the median of the "
        f"{(epochs - 1) * (batches - 2)} steps after the first epoch but each epoch's first and last; a column: "
        "the median over the pairs (one seed each), the ratio: the median of the per-pair ratios. CPU: the "
        "process's CPU time in the step, all its threads."
    )


def loss_table(runs: dict, windows: int) -> str:
    """Mean loss over ``windows`` windows of steps: per program, the mean over seeds and their spread."""
    length = min(len(r.losses) for side in runs.values() for r in side)
    edges = [round(i * length / windows) for i in range(windows + 1)]
    lines = [
        "| steps | diffusers: mean over seeds (min-max) | aigc | aigc cached | aigc - diffusers "
        "| seed spread (max-min), diffusers / aigc |",
        "|---|---|---|---|---|---|",
    ]
    for lo, hi in zip(edges, edges[1:], strict=False):
        cells, means, spreads = [], {}, {}
        for side in ("diffusers", "aigc", "aigc cached"):
            per_seed = [statistics.mean(r.losses[lo:hi]) for r in runs[side]]
            means[side], spreads[side] = statistics.mean(per_seed), max(per_seed) - min(per_seed)
            cells.append(f"{means[side]:.4f} ({min(per_seed):.4f}-{max(per_seed):.4f})")
        lines.append(
            f"| {lo + 1}-{hi} | {' | '.join(cells)} | {means['aigc'] - means['diffusers']:+.4f} "
            f"| {spreads['diffusers']:.4f} / {spreads['aigc']:.4f} |"
        )
    same = [
        max(abs(a - b) for a, b in zip(x.losses, y.losses, strict=False))
        for x, y in zip(runs["aigc"], runs["aigc cached"], strict=True)
    ]
    return "\n".join(lines) + (
        f"\n\naigc with and without cached latents, the same seed: largest difference of a step's loss "
        f"{max(same):.2e} (the cache keeps the encoder's distribution; the draws are the same)."
    )


BASE_VAL_LOSS = """
import json, sys
import aigc.config.resolvers  # noqa: F401 (the configs' resolvers)
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

root, pipeline, images, folder = sys.argv[1:5]
overrides = [
    "model=stable_diffusion", f"model.pretrained={pipeline}", "data=image_folder", f"data.path={images}",
    f"data.resolution={sys.argv[5]}", f"data.batch_size={sys.argv[6]}", f"paths.root_dir={folder}",
    f"paths.output_dir={folder}",
]
with initialize_config_dir(config_dir=f"{root}/conf", version_base="1.3"):
    cfg = compose("train", overrides=overrides)
trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
(scores,) = trainer.validate(instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all"))
print(json.dumps(scores["val/loss"]))
"""


def base_val_loss(pipeline: Path, images: Path) -> float:
    """``val/loss`` of the pipeline as loaded (LoRA's B starts at zero: what every row starts from)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", BASE_VAL_LOSS, str(ROOT), str(pipeline), str(images), folder]
        result = subprocess.run(
            [*command, str(RESOLUTION), str(BATCH)], cwd=folder, env=clean_env(), capture_output=True, text=True
        )
    if result.returncode != 0:
        raise RuntimeError(f"the base model's val/loss failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def options(args, pipeline: Path, images: Path, anchor_runs: dict | None) -> str:
    rows = {name: [] for name in OPTIONS}
    if anchor_runs and args.rank == 4:  # the anchor's aigc runs are these rows' runs
        rows["LoRA rank 4"] = list(anchor_runs["aigc"])
        rows["LoRA 4, cached latents"] = list(anchor_runs["aigc cached"])
    for repeat in range(args.repeats):
        for name, extra in OPTIONS.items():
            if len(rows[name]) > repeat:
                continue
            base = aigc_overrides(pipeline, images, args.epochs, repeat, 4)
            rows[name].append(run_aigc(base + extra, args.batches, args.threads))
            run = rows[name][-1]
            shown = f"{run.step_ms:.0f} ms/step ({run.step_cpu_ms:.0f} CPU), peak {run.peak_mib:.0f} MiB"
            shown += f", val/loss {run.val_loss}"
            print(f"  {name}: {shown}", flush=True)
    reference = {m: statistics.median(getattr(r, m) for r in rows["LoRA rank 4"]) for m in ("step_ms", "step_cpu_ms")}
    lines = [
        "| option | trainable params | wall ms/step | / LoRA rank 4 | CPU ms/step | / LoRA rank 4 | peak RSS MiB "
        "| val/loss after the last step | train loss, mean of the last third of the steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = base_val_loss(pipeline, images)
    lines.append(f"| the pipeline as loaded, no training | | | | | | | {base:.4f} | |")
    for name, runs in rows.items():
        cells = [name, f"{int(runs[0].params.get('params_trainable', 0)):,}"]
        for measure in ("step_ms", "step_cpu_ms"):
            median = statistics.median(getattr(r, measure) for r in runs)
            cells += [f"{median:.1f}", f"{median / reference[measure]:.2f}"]
        third = [statistics.mean(r.losses[-len(r.losses) // 3 :]) for r in runs]
        cells += [
            f"{statistics.median(r.peak_mib for r in runs):.0f}",
            ", ".join(f"{r.val_loss:.4f}" for r in runs if r.val_loss is not None),
            ", ".join(f"{t:.4f}" for t in third),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", type=Path, help="a diffusers checkout, or its (bare) git directory")
    parser.add_argument("--deps", type=Path, help="where the anchor's own dependencies are (installed if not)")
    parser.add_argument("--pairs", type=int, default=3, help="anchor pairs, one seed each")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run (the first is warm-up)")
    parser.add_argument("--batches", type=int, default=25, help="batches of 4 training images an epoch")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--unet", type=int, nargs="+", default=[32, 64], help="the UNet's block_out_channels")
    parser.add_argument("--repeats", type=int, default=1, help="runs per option row")
    parser.add_argument("--windows", type=int, default=3, help="loss-curve windows")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch's threads in both programs (0: torch's default, one a core)"
    )
    parser.add_argument("--only", nargs="+", choices=["anchor", "options"], default=["anchor", "options"])
    args = parser.parse_args()
    args.threads = args.threads or None
    import torch

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    machine = (
        f"{model or platform.machine()}, {os.cpu_count()} cores, {'AMX' if 'amx_bf16' in flags else 'no AMX'}"
        f"{', avx512_bf16' if 'avx512_bf16' in flags else ''}; torch {torch.__version__}, "
        f"{args.threads or torch.get_num_threads()} thread(s) in each program"
    )
    print(machine, flush=True)
    sections = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        pipeline, ours, theirs = make_task(folder, tuple(args.unet), args.batches)
        anchor_runs = None
        if "anchor" in args.only:
            if args.diffusers is None or not args.diffusers.exists():
                sections.append(("diffusers' script", "skipped: no `--diffusers <checkout or git dir>`."))
                print("skipped the anchor: no diffusers (--diffusers <checkout or git dir>)", flush=True)
            else:
                script = copy_script(args.diffusers, folder)
                deps = install_deps(args.deps or folder / "deps")
                anchor_runs = anchor(args, pipeline, ours, theirs, script, deps)
                speed = speed_table(anchor_runs, args.epochs, args.batches).replace("{rank}", str(args.rank))
                sections.append(("Step time and peak memory against diffusers' script", speed))
                sections.append(("Loss curves", loss_table(anchor_runs, args.windows)))
        if "options" in args.only:
            sections.append(("What each option costs and gives", options(args, pipeline, ours, anchor_runs)))
    text = "".join(f"\n## {title}\n\n{table}\n" for title, table in sections)
    print(text)
    command = " ".join([".venv/bin/python experiments/stable_diffusion.py", *sys.argv[1:]])
    write_results(f"`{command}`\n\n{machine}; {date.today()}; UNet {tuple(args.unet)}.\n{text}")


def write_results(results: str) -> None:
    """Into experiments/stable_diffusion.md between its results markers (the notes around them are
    kept), or as the whole file when it has none."""
    path = Path(__file__).with_suffix(".md")
    start, end = "<!-- results: written by experiments/stable_diffusion.py -->", "<!-- end of results -->"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        before, rest = old.split(start, 1)
        path.write_text(f"{before}{start}\n{results}\n{end}{rest.split(end, 1)[1]}")
    else:
        path.write_text(f"# Stable Diffusion LoRA fine-tuning\n\n{start}\n{results}\n{end}\n")


if __name__ == "__main__":
    main()
