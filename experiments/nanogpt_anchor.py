"""The GPT per training iteration against nanoGPT's own `train.py`, same config, same machine.

    .venv/bin/python experiments/nanogpt_anchor.py --nanogpt <nanoGPT checkout or git dir>
        [--text PATH] [--pairs 3] [--iters 250] [--levers compile fused ...]
        [--quality 1337 1 2]

nanoGPT is not a dependency and is never committed: give a local clone (or the bare git
directory of one); the script copies it into a temporary folder, writes the local
tiny-shakespeare copy as its `input.txt` (so its `prepare.py` downloads nothing) and runs its
README's CPU command with `--max_iters`. Without `--nanogpt` the row is skipped with a message.

Beside it, `python -m aigc.run experiment=shakespeare_char_cpu` (the same model, optimizer,
schedule, clipping, batch and block) with the step timer of experiments/helpers. The two
alternate, `--pairs` times. Each side's figure is the median time per iteration after 20
warm-up iterations, evaluations excluded: nanoGPT's own printed `time ..ms` per iteration
(iterations right after an evaluation left out), aigc's batch-start to batch-start time
(validation runs between epochs are not between two batch starts of one epoch). The result
is the median of the per-pair ratios (target: <= 0.8). Prints one table; results in
experiments/nanogpt_anchor.md.

``--levers`` adds aigc rows with the speed settings in ``LEVERS`` (each also in every pair):
``torch.compile`` of the net on the CPU (Inductor's C++ kernels), AdamW's fused kernel, and
float32 matrix products computed in bf16 on a CPU with AMX (float32 matmul precision
``medium``, aigc/callbacks/matmul_precision.py; nanoGPT's `train.py` has no such setting for a
CPU, and on a GPU sets TF32). Both sides use torch's default threads (one per core).

``--quality SEED ...`` trains nanoGPT's `train.py` for 2,000 iterations per seed (its seed,
hard-coded as 1337, is patched in the temporary copy) and scores its checkpoint at iteration
2,000 as aigc scores `val/loss`: the mean cross-entropy over every consecutive window of 64
tokens of the whole validation split, not its 20-batch `estimate_loss`. Beside it,
`python -m aigc.run experiment=shakespeare_char_cpu seed=SEED` (plus the overrides of
``--quality-lever``) and its last `val/loss`.
"""

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bare_loop import timed_run_ms  # the same timed run (this folder is the script's, on sys.path)
from shakespeare_char import aigc_runs

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
WARMUP = 20
EVAL_INTERVAL = 250
NANOGPT_CPU = [
    "config/train_shakespeare_char.py",
    *("--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64"),
    *("--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--lr_decay_iters=2000", "--dropout=0.0"),
]


def nanogpt_copy(source: Path, text: Path, folder: Path) -> Path:
    """nanoGPT's files in ``folder``, its shakespeare_char data prepared from ``text``."""
    repo = folder / "nanoGPT"
    if (source / "train.py").exists():
        shutil.copytree(source, repo, ignore=shutil.ignore_patterns(".git"))
    else:  # a bare git directory
        repo.mkdir()
        archive = subprocess.run(["git", "--git-dir", str(source), "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    data = repo / "data" / "shakespeare_char"
    shutil.copy(text, data / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=data, capture_output=True, check=True)
    return repo


def nanogpt_ms(repo: Path, iters: int) -> float:
    out = tempfile.mkdtemp()
    command = [sys.executable, "train.py", *NANOGPT_CPU, f"--max_iters={iters}", f"--out_dir={out}"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"nanoGPT's train.py failed:\n{result.stderr[-3000:]}")
    times = {int(i): float(ms) for i, ms in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", result.stdout)}
    return statistics.median(ms for i, ms in times.items() if i > WARMUP and i % EVAL_INTERVAL != 0)


BF16_PRODUCTS = "callbacks.float32_matmul_precision.precision=medium"  # float32 products in bf16 (AMX)
LEVERS = {
    "default": [],
    "compile": ["model.compile=true"],
    "fused": ["+model.optimizer.fused=true"],
    "compile+fused": ["model.compile=true", "+model.optimizer.fused=true"],
    "bf16-products": [BF16_PRODUCTS],
    "bf16-products+fused": [BF16_PRODUCTS, "+model.optimizer.fused=true"],
    "bf16-products+compile+fused": [BF16_PRODUCTS, "model.compile=true", "+model.optimizer.fused=true"],
}


QUALITY_ITERS = 2000
WHOLE_SPLIT_LOSS = """
import sys, numpy as np, torch
from torch.nn import functional as F
from model import GPT, GPTConfig
checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
model = GPT(GPTConfig(**checkpoint["model_args"]))
model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()})
model.eval()
ids = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.uint16).astype(np.int64))
T = 64
windows = (len(ids) - 1) // T
x, y = ids[: windows * T].view(-1, T), ids[1 : windows * T + 1].view(-1, T)
total = 0.0
with torch.no_grad():
    for start in range(0, windows, 64):
        logits, _ = model(x[start : start + 64], y[start : start + 64])  # targets given: logits at every position
        total += F.cross_entropy(logits.flatten(0, 1), y[start : start + 64].flatten(), reduction="sum").item()
print(total / (windows * T))
"""


def nanogpt_val_loss(repo: Path, seed: int) -> float:
    """nanoGPT trained for ``QUALITY_ITERS`` with ``seed``; its whole-split validation loss."""
    out = Path(tempfile.mkdtemp())
    train = repo / "train.py"
    seeded = re.sub(r"torch\.manual_seed\(\d+ \+", f"torch.manual_seed({seed} +", train.read_text())
    train.write_text(seeded)
    command = [sys.executable, "train.py", *NANOGPT_CPU, f"--max_iters={QUALITY_ITERS}", f"--out_dir={out}"]
    subprocess.run([*command, "--always_save_checkpoint=True"], cwd=repo, capture_output=True, text=True, check=True)
    val = repo / "data" / "shakespeare_char" / "val.bin"
    scored = subprocess.run(
        [sys.executable, "-c", WHOLE_SPLIT_LOSS, str(out / "ckpt.pt"), str(val)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return float(scored.stdout.strip().splitlines()[-1])


def quality_table(repo: Path, text: Path, seeds: list[int], lever: str) -> str:
    seeded = f"seed={','.join(map(str, seeds))}"
    ours = aigc_runs(text, "-m", "experiment=shakespeare_char_cpu", seeded, *LEVERS[lever])
    ours_by_seed = {int(row["seed"]): row["val_loss"] for row in ours}
    theirs = {}
    for seed in seeds:
        theirs[seed] = nanogpt_val_loss(repo, seed)
        print(f"  seed {seed}: aigc {ours_by_seed[seed]:.4f}, nanoGPT {theirs[seed]:.4f}", flush=True)
    lines = [
        f"| seed | aigc.run val/loss at {QUALITY_ITERS:,} ({' '.join(LEVERS[lever]) or 'no overrides'}) "
        f"| nanoGPT `train.py` checkpoint at {QUALITY_ITERS:,}, "
        "same measure | aigc - nanoGPT |",
        "|---|---|---|---|",
        *(f"| {s} | {ours_by_seed[s]:.4f} | {theirs[s]:.4f} | {ours_by_seed[s] - theirs[s]:+.4f} |" for s in seeds),
    ]
    mean_ours, mean_theirs = statistics.mean(ours_by_seed.values()), statistics.mean(theirs.values())
    lines.append(f"| mean | {mean_ours:.4f} | {mean_theirs:.4f} | {mean_ours - mean_theirs:+.4f} |")
    return "\n".join(lines)


def aigc_ms(text: Path, iters: int, lever: str = "default") -> float:
    overrides = ["experiment=shakespeare_char_cpu", f"data.path={text}", f"trainer.max_steps={iters}"]
    return timed_run_ms([*overrides, *LEVERS[lever]], WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT clone or its bare git directory")
    parser.add_argument("--text", type=Path, default=SHARED_TEXT)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=EVAL_INTERVAL)
    parser.add_argument("--levers", nargs="*", choices=list(LEVERS), default=["default"])
    parser.add_argument("--quality", type=int, nargs="*", metavar="SEED", help="val loss at 2,000 iterations too")
    parser.add_argument("--quality-lever", choices=list(LEVERS), default="default", help="aigc's overrides there")
    args = parser.parse_args()
    if args.nanogpt is None or not args.nanogpt.exists():
        print("skipped: no nanoGPT (--nanogpt <clone>): the anchor row needs nanoGPT's own train.py")
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    sections = []
    with tempfile.TemporaryDirectory() as folder:
        repo = nanogpt_copy(args.nanogpt, args.text, Path(folder))
        if args.pairs:
            sections.append(("Time per iteration", timing_table(repo, args)))
        if args.quality:
            title = f"Validation loss at {QUALITY_ITERS:,} iterations"
            sections.append((title, quality_table(repo, args.text, args.quality, args.quality_lever)))
    text = "".join(f"\n## {title}\n\n{table}\n" for title, table in sections)
    print(text)
    Path(__file__).with_suffix(".md").write_text(
        "# GPT against nanoGPT's own train.py\n\n`.venv/bin/python experiments/nanogpt_anchor.py --nanogpt <clone> "
        f"{' '.join(sys.argv[3:])}` (2 CPU cores, offline).\n{text}"
    )


def timing_table(repo: Path, args) -> str:
    rows = {lever: [] for lever in args.levers}  # (aigc, nanoGPT) per pair
    for _ in range(args.pairs):
        for lever in args.levers:  # nanoGPT beside each, so every ratio is one sitting's
            rows[lever].append((aigc_ms(args.text, args.iters, lever), nanogpt_ms(repo, args.iters)))
            print(f"  aigc ({lever}) {rows[lever][-1][0]:.1f} ms, nanoGPT {rows[lever][-1][1]:.1f} ms", flush=True)
    lines = [
        "| GPT, `experiment=shakespeare_char_cpu` | aigc overrides | aigc.run ms/iter | nanoGPT `train.py` ms/iter "
        f"| aigc / nanoGPT (median of {args.pairs} pairs) | pairs |",
        "|---|---|---|---|---|---|",
    ]
    for lever, pairs in rows.items():
        ratios = [a / b for a, b in pairs]
        lines.append(
            f"| {args.iters} iterations, {WARMUP} warm-up | {' '.join(LEVERS[lever]) or '(none)'} "
            f"| {statistics.median(a for a, _ in pairs):.1f} | {statistics.median(b for _, b in pairs):.1f} "
            f"| {statistics.median(ratios):.3f} | {', '.join(f'{r:.3f}' for r in ratios)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
