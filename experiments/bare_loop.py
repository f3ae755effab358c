"""The framework's cost per training step, for every model: `python -m aigc.run` against the same
nets, optimizers and batches in a plain PyTorch loop.

    .venv/bin/python experiments/bare_loop.py [--pairs 3] [--steps 40] [--only gan ... text_to_image ...]

Both sides compose the same real configs (`model=<m> data=<d>`), so the nets, their
initialisation, the optimizers (and the language models' schedule and clipping), the batch size
and the data loader are the same. A step is the wall time from one batch's start to the next
one's, after 5 warm-up steps; each side reports its median. `aigc.run` runs as a user runs it:
MLflow logging every `trainer.log_every_n_steps`, the progress bar, checkpoints and callbacks
(the per-epoch work after the last step is not counted), and only validation is left out. The
bare loop runs in a fresh process too. The two alternate, `--pairs` times per model; the result
is the median of the per-pair ratios (target: <= 1.03). Prints one table; results in
experiments/bare_loop.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"
WARMUP = 5
FLOAT32 = "trainer.precision=32-true"  # as the bare loop computes (the default, auto, may choose bf16)
MODELS = {
    "gan": ["model=gan", "data=mnist", "data.download=false"],
    "vae": ["model=vae", "data=mnist", "data.download=false"],
    "diffusion": ["model=diffusion", "data=mnist", "data.download=false"],
    # the text-conditioned step: the shapes benchmark's captions through the CLIP tokenizer and text encoder
    "text_to_image": ["model=text_to_image", "data=shapes"],
    "lstm": ["model=lstm", "data=pydocs"],
    "transformer": ["model=transformer", "data=pydocs"],
}


def aigc_step_ms(overrides: list[str], steps: int) -> float:
    return timed_run_ms([*overrides, *one_timed_epoch(steps)], WARMUP)


def one_timed_epoch(steps: int) -> list[str]:
    """One epoch of ``WARMUP + steps`` training batches, no validation."""
    return [
        "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={WARMUP + steps + 1}",
        "+trainer.limit_val_batches=0",
    ]


def timed_run_ms(overrides: list[str], warmup: int) -> float:
    """``python -m aigc.run <overrides>`` in a fresh folder: the median ms per step after ``warmup``."""
    (steps,) = run_with_helpers(overrides, warmup, "step_time.StepTime")
    return 1000 * statistics.median(steps["steps_s"])


def run_with_helpers(overrides: list[str], warmup: int, *callbacks: str) -> list[dict]:
    """``python -m aigc.run <overrides>`` in a fresh folder, with these callbacks of
    experiments/helpers (``module.Class``, each taking ``out`` and ``warmup_batches``) added:
    what each wrote."""
    with tempfile.TemporaryDirectory() as folder:
        outs = [Path(folder) / f"{target}.json" for target in callbacks]
        added = [
            f"+callbacks.{target.split('.')[0]}.{key}={value}"
            for target, out in zip(callbacks, outs, strict=True)
            for key, value in (("_target_", target), ("out", out), ("warmup_batches", warmup))
        ]
        env = {**os.environ, "PYTHONPATH": str(HELPERS)}
        result = subprocess.run(
            [sys.executable, "-m", "aigc.run", *overrides, *added], cwd=folder, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
        return [json.loads(out.read_text()) for out in outs]


def bare_step_ms(name: str, steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, __file__, "--bare", name, "--steps", str(steps), "--folder", folder]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"bare {name} failed:\n{result.stderr[-3000:]}")
        return float(result.stdout.strip().splitlines()[-1])


def bare_loop(name: str, steps: int, folder: str) -> float:
    """Median ms per step of a plain loop over the composed model's own nets, optimizers and data."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*MODELS[name], f"paths.root_dir={folder}", f"paths.output_dir={folder}"])
    L.seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, _convert_="all")
    if hasattr(model, "build"):
        model.build(datamodule.vocab_size)
    model.train()

    if name == "gan":
        opt_g, opt_d = model.configure_optimizers()

        def step(batch):
            real = batch[0]
            fake = model.generator(torch.randn(real.shape[0], model.latent_dim))
            loss_d = model.loss.discriminator(model.discriminator(real), model.discriminator(fake.detach()))
            update(opt_d, loss_d, model.discriminator)
            update(opt_g, model.loss.generator(model.discriminator(fake)), model.generator)

        def update(optimizer, loss, net):
            optimizer.zero_grad()
            loss.backward()
            if model.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), model.grad_clip)
            optimizer.step()

    elif name == "vae":
        optimizer = model.configure_optimizers()

        def step(batch):
            optimizer.zero_grad()
            model.losses(batch[0])["loss"].backward()
            optimizer.step()

    elif name == "diffusion":
        optimizer = model.configure_optimizers()

        def step(batch):
            optimizer.zero_grad()
            model.losses(batch[0], model.drop_labels(batch[1])).backward()
            optimizer.step()

    elif name == "text_to_image":
        optimizer = model.configure_optimizers()

        def step(batch):
            optimizer.zero_grad()
            model.losses(batch[0], model.encode(model.drop_prompts(batch[2]))).backward()
            optimizer.step()

    else:
        configured = model.configure_optimizers()
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]

        def step(batch):
            x, y = batch
            logits, _ = model.net(x)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if model.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.net.parameters(), model.grad_clip)
            optimizer.step()
            scheduler.step()

    starts = []
    for index, batch in enumerate(datamodule.train_dataloader()):
        starts.append(time.perf_counter())
        if index == WARMUP + steps:
            break
        step(batch)
    starts = starts[WARMUP:]
    return 1000 * statistics.median(b - a for a, b in zip(starts, starts[1:], strict=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--bare", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(bare_loop(args.bare, args.steps, args.folder))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    lines = [
        f"| model | aigc.run ms/step | bare loop ms/step | aigc / bare (median of {args.pairs} pairs) | pairs |",
        "|---|---|---|---|---|",
    ]
    for name in args.only:
        pairs = []
        for _ in range(args.pairs):
            pairs.append((aigc_step_ms([*MODELS[name], FLOAT32], args.steps), bare_step_ms(name, args.steps)))
            print(f"  {name}: aigc {pairs[-1][0]:.2f} ms, bare {pairs[-1][1]:.2f} ms", flush=True)
        lines.append(ab_row(f"`{' '.join(MODELS[name])}`", pairs, places=2))
    table = "\n".join(lines)
    print(table)
    command = f"`.venv/bin/python experiments/bare_loop.py {' '.join(sys.argv[1:])}`".replace(" `", "`")
    measured = f"{command} (2 CPU cores, offline, {args.steps} steps after {WARMUP} warm-up, {date.today()})"
    results = Path(__file__).with_suffix(".md")
    if set(args.only) == set(MODELS):
        results.write_text(f"# The framework's cost per step\n\n{measured}.\n\n{table}\n")
    else:  # some models: added below the last full table
        with open(results, "a") as file:
            file.write(f"\n### {measured}\n\n{table}\n")


def ab_row(label: str, pairs: list[tuple[float, float]], places: int) -> str:
    """A table row of an A/B benchmark: each side's median, the median of the per-pair ratios
    A/B, and every ratio (times with ``places`` decimals, ratios with one more)."""
    ratios = [a / b for a, b in pairs]
    return (
        f"| {label} | {statistics.median(a for a, _ in pairs):.{places}f} "
        f"| {statistics.median(b for _, b in pairs):.{places}f} | {statistics.median(ratios):.{places + 1}f} "
        f"| {', '.join(f'{r:.{places + 1}f}' for r in ratios)} |"
    )


if __name__ == "__main__":
    main()
