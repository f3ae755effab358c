"""Character-level language models on tiny-shakespeare, against nanoGPT's CPU reference.

    .venv/bin/python experiments/shakespeare_char.py [--text PATH] [--seeds 1337 1 2] [--rounds 4]
                                                     [--only quality|lstm|finetune|nanogpt|overhead]

nanoGPT's README trains a character-level GPT on a CPU (block 64, batch 12, 4 layers, 4 heads,
128 wide, dropout 0, lr 1e-3 cosine over 2,000 iterations) and prints val loss 1.88. Four parts:

1. quality: ``python -m aigc.run -m experiment=shakespeare_char_cpu seed=...``, one sweep of
   seeds; the val loss of each (the mean over every window of the validation split).
2. lstm: ``python -m aigc.run -m experiment=shakespeare_char_lstm_cpu model.net.cell=lstm,gru,rnn``,
   the recurrent family (LSTM, GRU, Elman RNN) on the same data and iterations.
3. finetune: ``model=hf_causal_lm`` on a tiny random GPT-2 (2 layers, 64 wide, its byte-level
   BPE trained on pydoc_data; ``tests/helpers/tiny_gpt2.py``, saved into a temporary folder),
   every weight and LoRA adapters only, ``-m model.peft=none,lora``: throughput and the loss curve
   of the path a pretrained model takes (the numbers are not comparable with the character
   models': another tokenizer).
4. nanogpt: nanoGPT's recipe as a bare PyTorch loop (the same GPT module, AdamW groups,
   schedule, clipping, random windows), 2,000 iterations, then its val loss two ways: over the
   whole split, and as nanoGPT's ``estimate_loss`` prints it (the mean of 20 random batches),
   drawn many times, to show how far that estimate moves from one draw to the next.
5. overhead: the framework against the bare loop, per iteration, in alternating rounds (a
   500-step ``aigc.run``, then 500 bare iterations), so that a slow spell of a shared machine
   hits both alike. Each side is the mean over its second 250 iterations, everything between
   batches included: aigc's ``train/tokens_per_sec_epoch`` of epoch 2 (loading, forward,
   backward, step, hooks, logging, progress bar), the bare loop's wall clock.

Each aigc run works in a temporary directory with its own MLflow store. The text is read from
--text (default: the workplace's shared copy) and passed as data.path: nothing is downloaded.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SHARED_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
BLOCK, BATCH, ITERS = 64, 12, 2000
NANOGPT_VAL_LOSS = 1.88
PEFT = {"none": "every weight", "lora": "LoRA"}


def aigc_runs(text: Path, *overrides: str) -> list[dict]:
    """Runs ``python -m aigc.run <overrides>`` (``-m`` for a sweep); one row per finished run."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "aigc.run", *overrides, f"data.path={text}"]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        rows = []
        for run in sorted((r for r in runs if "val/loss" in r.data.metrics), key=lambda r: r.info.start_time):
            val = metric_history(client, run.info.run_id, "val/loss")
            rates = metric_history(client, run.info.run_id, "train/tokens_per_sec_epoch")
            rows.append(
                {
                    "seed": run.data.params.get("seed"),
                    "cell": run.data.params.get("model.net.cell", ""),
                    "peft": run.data.params.get("model.peft", ""),
                    "trainable": run.data.params.get("params_trainable", ""),
                    "val_loss": val[-1].value,
                    "steps": val[-1].step + 1,
                    "tokens_per_sec": rates[-1].value,  # the last epoch's, everything between batches included
                    "ms_per_iter": 1000 * BLOCK * BATCH / rates[-1].value,
                    "wall_s": (run.info.end_time - run.info.start_time) / 1000,
                    "curve": [(m.step + 1, round(m.value, 3)) for m in val],
                }
            )
        print(f"  {' '.join(overrides)}: {len(rows)} run(s) in {wall:.0f} s", flush=True)
        return rows


def metric_history(client: MlflowClient, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)


class NanoGPTLoop:
    """nanoGPT's training iteration with nothing around it, on our GPT module and tokenizer."""

    def __init__(self, text: Path, seed: int = 1337):
        from aigc.data.tokenizers import CharTokenizer
        from aigc.models.language_model import WarmupCosineLR
        from aigc.models.nets.gpt import GPT

        torch.manual_seed(seed)
        raw = text.read_text(encoding="utf-8")
        split = int(len(raw) * 0.9)
        tokenizer = CharTokenizer().fit(raw[:split])
        self.train_ids = torch.tensor(tokenizer.encode(raw[:split]), dtype=torch.int64)
        self.val_ids = torch.tensor(tokenizer.encode(raw[split:]), dtype=torch.int64)
        self.model = GPT(
            tokenizer.vocab_size, block_size=BLOCK, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False
        )
        self.optimizer = torch.optim.AdamW(self.model.param_groups(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
        self.scheduler = WarmupCosineLR(self.optimizer, warmup_steps=100, decay_steps=ITERS, min_lr_ratio=0.1)

    @staticmethod
    def batch(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(ids) - BLOCK, (BATCH,))
        return torch.stack([ids[i : i + BLOCK] for i in starts]), torch.stack(
            [ids[i + 1 : i + 1 + BLOCK] for i in starts]
        )

    def train(self, iters: int) -> list[float]:
        """Seconds of each iteration."""
        self.model.train()
        seconds = []
        for _ in range(iters):
            start = time.perf_counter()
            x, y = self.batch(self.train_ids)
            logits, _ = self.model(x)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            seconds.append(time.perf_counter() - start)
        return seconds

    @torch.no_grad()
    def val_loss_full(self) -> float:
        """The mean NLL over every whole window of the validation split (what aigc logs)."""
        self.model.eval()
        usable = (len(self.val_ids) - 1) // BLOCK * BLOCK
        x, y = self.val_ids[:usable].view(-1, BLOCK), self.val_ids[1 : usable + 1].view(-1, BLOCK)
        return float(F.cross_entropy(self.model(x)[0].flatten(0, 1), y.flatten()))

    @torch.no_grad()
    def val_loss_estimates(self, draws: int, eval_iters: int = 20) -> list[float]:
        """nanoGPT's ``estimate_loss`` on the validation split, ``draws`` times."""
        self.model.eval()
        losses = [
            float(F.cross_entropy(self.model(x)[0].flatten(0, 1), y.flatten()))
            for x, y in (self.batch(self.val_ids) for _ in range(draws * eval_iters))
        ]
        return [statistics.mean(losses[i : i + eval_iters]) for i in range(0, len(losses), eval_iters)]


def finetune_runs(text: Path, steps: int = 1000) -> list[dict]:
    """The tiny GPT-2, fine-tuned on the text: every weight, then LoRA adapters only."""
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "tiny-gpt2"
        subprocess.run([sys.executable, str(ROOT / "tests" / "helpers" / "tiny_gpt2.py"), str(model)], check=True)
        return aigc_runs(
            text,
            "-m",
            "model=hf_causal_lm",
            f"model.pretrained={model}",
            "data=shakespeare",
            "model.peft=none,lora",
            "model.optimizer.lr=1e-3",
            f"model.scheduler.decay_steps={steps}",
            f"+trainer.max_steps={steps}",
            "trainer.max_epochs=-1",
        )


def nanogpt_recipe(text: Path, draws: int = 500) -> dict:
    loop = NanoGPTLoop(text)
    seconds = loop.train(ITERS)
    estimates = sorted(loop.val_loss_estimates(draws))
    return {
        "full": loop.val_loss_full(),
        "median": statistics.median(estimates),
        "p5": estimates[int(0.05 * draws)],
        "p95": estimates[int(0.95 * draws)],
        "share_at_or_below": sum(e <= NANOGPT_VAL_LOSS for e in estimates) / draws,
        "draws": draws,
        "ms_per_iter": 1000 * statistics.mean(seconds[ITERS // 2 :]),
    }


def overhead_rounds(text: Path, rounds: int) -> list[tuple[float, float]]:
    """(aigc ms/iter, bare ms/iter) per round; each the mean over iterations 251-500."""
    pairs = []
    for _ in range(rounds):
        (framework,) = aigc_runs(text, "experiment=shakespeare_char_cpu", "trainer.max_steps=500")
        bare = NanoGPTLoop(text).train(500)[250:]
        pairs.append((framework["ms_per_iter"], 1000 * statistics.mean(bare)))
        print(f"  round {len(pairs)}: aigc {pairs[-1][0]:.1f} ms, bare {pairs[-1][1]:.1f} ms", flush=True)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=SHARED_TEXT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--only", choices=["quality", "lstm", "finetune", "nanogpt", "overhead"], action="append")
    args = parser.parse_args()
    parts = args.only or ["quality", "lstm", "finetune", "nanogpt", "overhead"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, text {args.text}", flush=True)

    rows = []
    if "quality" in parts:
        seeds = ",".join(map(str, args.seeds))
        rows += [("GPT", r) for r in aigc_runs(args.text, "-m", "experiment=shakespeare_char_cpu", f"seed={seeds}")]
    if "lstm" in parts:
        cells = aigc_runs(args.text, "-m", "experiment=shakespeare_char_lstm_cpu", "model.net.cell=lstm,gru,rnn")
        rows += [(r["cell"].upper(), r) for r in cells]
    if "finetune" in parts:
        tuned = finetune_runs(args.text)
        rows += [(f"tiny GPT-2, {PEFT[r['peft']]} ({int(r['trainable']):,} trained)", r) for r in tuned]
    if rows:
        print("\n| aigc.run | seed | iterations | val loss | ms/iter | tokens/s | run wall time |")
        print("|---|---|---|---|---|---|---|")
        for name, r in rows:
            print(
                f"| {name} | {r['seed']} | {r['steps']:,} | {r['val_loss']:.4f} | {r['ms_per_iter']:.1f} "
                f"| {r['tokens_per_sec']:,.0f} | {r['wall_s']:.0f} s |"
            )
        gpt = [r["val_loss"] for name, r in rows if name == "GPT"]
        if len(gpt) > 1:
            print(
                f"GPT val loss over {len(gpt)} seeds: mean {statistics.mean(gpt):.4f}, sd {statistics.stdev(gpt):.4f}"
            )
        for name, r in rows:
            print(f"{name} seed {r['seed']} val/loss by iteration: {r['curve']}")

    if "nanogpt" in parts:
        n = nanogpt_recipe(args.text)
        print(f"\nnanoGPT's recipe, bare loop, seed 1337, {ITERS:,} iterations ({n['ms_per_iter']:.1f} ms/iter):")
        print(
            "| val loss over the whole split | nanoGPT's estimate (20 batches): median | 5th-95th percentile "
            f"| draws <= {NANOGPT_VAL_LOSS} |"
        )
        print("|---|---|---|---|")
        print(
            f"| {n['full']:.4f} | {n['median']:.4f} | {n['p5']:.4f}-{n['p95']:.4f} "
            f"| {100 * n['share_at_or_below']:.0f}% of {n['draws']} |"
        )

    if "overhead" in parts:
        pairs = overhead_rounds(args.text, args.rounds)
        ratios = [a / b for a, b in pairs]
        print("\n| round | aigc.run ms/iter | bare loop ms/iter | aigc / bare |")
        print("|---|---|---|---|")
        for i, ((a, b), ratio) in enumerate(zip(pairs, ratios, strict=False), 1):
            print(f"| {i} | {a:.1f} | {b:.1f} | {ratio:.3f} |")
        print(
            f"median aigc / bare over {len(ratios)} rounds: {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()
