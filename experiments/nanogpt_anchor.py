"""The GPT per training iteration against nanoGPT's own `train.py`, same config, same machine.

    .venv/bin/python experiments/nanogpt_anchor.py --nanogpt <nanoGPT checkout or git dir>
        [--text PATH] [--pairs 3] [--iters 500]

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


def aigc_ms(text: Path, iters: int) -> float:
    return timed_run_ms(["experiment=shakespeare_char_cpu", f"data.path={text}", f"trainer.max_steps={iters}"], WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT clone or its bare git directory")
    parser.add_argument("--text", type=Path, default=SHARED_TEXT)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=EVAL_INTERVAL)
    args = parser.parse_args()
    if args.nanogpt is None or not args.nanogpt.exists():
        print("skipped: no nanoGPT (--nanogpt <clone>): the anchor row needs nanoGPT's own train.py")
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        repo = nanogpt_copy(args.nanogpt, args.text, Path(folder))
        pairs = []
        for _ in range(args.pairs):
            pairs.append((aigc_ms(args.text, args.iters), nanogpt_ms(repo, args.iters)))
            print(f"  aigc {pairs[-1][0]:.1f} ms, nanoGPT {pairs[-1][1]:.1f} ms", flush=True)
    ratios = [a / b for a, b in pairs]
    table = "\n".join(
        [
            "| GPT, `experiment=shakespeare_char_cpu` | aigc.run ms/iter | nanoGPT `train.py` ms/iter "
            f"| aigc / nanoGPT (median of {args.pairs} pairs) | pairs |",
            "|---|---|---|---|---|",
            f"| {args.iters} iterations, {WARMUP} warm-up | {statistics.median(a for a, _ in pairs):.1f} "
            f"| {statistics.median(b for _, b in pairs):.1f} | {statistics.median(ratios):.3f} "
            f"| {', '.join(f'{r:.3f}' for r in ratios)} |",
        ]
    )
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        "# GPT against nanoGPT's own train.py\n\n`.venv/bin/python experiments/nanogpt_anchor.py --nanogpt <clone>` "
        f"(2 CPU cores, offline).\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
