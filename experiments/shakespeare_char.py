"""Character-level language models on tiny-shakespeare, against nanoGPT's CPU reference.

    .venv/bin/python experiments/shakespeare_char.py [--text PATH] [--bare-iters 300] [--only transformer|lstm|bare]

1. `python -m aigc.run experiment=shakespeare_char_cpu` (nanoGPT's setup: block 64, batch 12,
   4 layers, 4 heads, 128 wide, dropout 0, lr 1e-3 cosine over 2,000 iterations; nanoGPT's
   README reaches val loss 1.88 there) and `experiment=shakespeare_char_lstm_cpu` (the LSTM on
   the same data, split and iterations), each in a temporary directory with its own MLflow store.
2. A bare PyTorch loop doing the same work per iteration (the same GPT module, AdamW groups,
   schedule, clipping and nanoGPT's random-window batches), to price the framework's overhead.

Prints one table. The text is read from --text (default: the workplace's shared copy), passed
as data.path: nothing is downloaded.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SHARED_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
TOKENS_PER_ITER = 12 * 64


def run_experiment(experiment: str, text: Path) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "aigc.run", f"experiment={experiment}", f"data.path={text}"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{experiment} failed:\n{result.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        val = sorted(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step)
        rates = [m.value for m in client.get_metric_history(run.info.run_id, "train/tokens_per_sec")]
        tokens_per_sec = statistics.median(rates)
        return {
            "name": experiment,
            "val_loss": val[-1].value,
            "best_val_loss": min(m.value for m in val),
            "steps": val[-1].step,
            "ms_per_iter": 1000 * TOKENS_PER_ITER / tokens_per_sec,
            "tokens_per_sec": tokens_per_sec,
            "wall_s": wall,
            "curve": [(m.step, round(m.value, 3)) for m in val],
        }


def bare_loop(text: Path, iters: int) -> dict:
    """The same per-iteration work as the framework's training step, with nothing around it."""
    from aigc.data.tokenizers import CharTokenizer
    from aigc.models.language_model import WarmupCosineLR
    from aigc.models.nets.gpt import GPT

    torch.manual_seed(1337)
    raw = text.read_text(encoding="utf-8")
    train_text = raw[: int(len(raw) * 0.9)]
    tokenizer = CharTokenizer().fit(train_text)
    data = torch.tensor(tokenizer.encode(train_text), dtype=torch.int64)
    model = GPT(tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
    optimizer = torch.optim.AdamW(model.param_groups(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    scheduler = WarmupCosineLR(optimizer, warmup_steps=100, decay_steps=2000, min_lr_ratio=0.1)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        ix = torch.randint(len(data) - 64, (12,))
        x = torch.stack([data[i : i + 64] for i in ix])
        y = torch.stack([data[i + 1 : i + 65] for i in ix])
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        times.append(time.perf_counter() - start)
    per_iter = statistics.median(times[10:])
    return {"name": "bare PyTorch loop", "ms_per_iter": 1000 * per_iter, "tokens_per_sec": TOKENS_PER_ITER / per_iter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=SHARED_TEXT)
    parser.add_argument("--bare-iters", type=int, default=300)
    parser.add_argument("--only", choices=["transformer", "lstm", "bare"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, text {args.text}")

    rows = []
    if args.only in (None, "transformer"):
        rows.append(run_experiment("shakespeare_char_cpu", args.text))
    if args.only in (None, "lstm"):
        rows.append(run_experiment("shakespeare_char_lstm_cpu", args.text))
    if args.only in (None, "bare"):
        rows.append(bare_loop(args.text, args.bare_iters))

    print("\n| run | steps | val loss (last) | val loss (best) | ms/iter (median) | tokens/s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['name']} | {row.get('steps', args.bare_iters)} | {row.get('val_loss', float('nan')):.4f} "
            f"| {row.get('best_val_loss', float('nan')):.4f} | {row['ms_per_iter']:.1f} | {row['tokens_per_sec']:,.0f} "
            f"| {row.get('wall_s', float('nan')):.0f} |"
        )
    for row in rows:
        if "curve" in row:
            print(f"{row['name']} val/loss by step: {row['curve']}")


if __name__ == "__main__":
    main()
