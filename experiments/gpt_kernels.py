"""Where the GPT's CPU training step goes, and what each faster-arithmetic lever does to it.

    .venv/bin/python experiments/gpt_kernels.py [--rounds 5] [--steps 40]

Why aigc's GPT can't run at 0.8x nanoGPT's `train.py` per iteration (issue 15, target 1): both
programs run the same eager PyTorch kernels, and this shows which. It composes
`experiment=shakespeare_char_cpu` (the 0.8M-parameter GPT, batch 12 x 64 tokens), builds the
net and times one training step in isolation (forward, cross-entropy, backward, gradient clip,
fused AdamW) on random tokens, nothing of Lightning or aigc around it:

1. torch.profiler's self time per kernel family over 20 steps, and the FLOP rate of the
   matrix products beside the best rate this machine reaches on one large float32 product;
2. the median ms per step under each lever in `LEVERS`, in alternating rounds: eager float32
   (what both programs run), `torch.compile`, float32 matrix products computed in bf16 by
   oneDNN (float32 matmul precision `medium`, the CPU's counterpart of TF32 on a GPU) with
   the math attention the GPT then uses and with SDPA's CPU flash kernel, and bf16 autocast.

Prints two tables; results in experiments/gpt_kernels.md.
"""

import argparse
import contextlib
import statistics
import time
import unittest.mock
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile

from aigc.models.nets import gpt

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 65  # tiny shakespeare's characters
FAMILIES = {  # kernel family: substrings of the profiler's op names
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
    "attention": ("scaled_dot_product",),
    "GELU": ("gelu",),
    "layer norm": ("layer_norm",),
    "optimizer (fused AdamW)": ("adamw",),
    "gradient clip": ("norm", "foreach_mul"),
}


@contextlib.contextmanager
def bf16_products():
    """float32 matmul precision ``medium``, as ``callbacks.float32_matmul_precision.precision=medium``
    sets it; the GPT then runs SDPA's math kernel (``aigc.models.nets.gpt._attention_kernel``)."""
    torch.set_float32_matmul_precision("medium")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision("highest")


@contextlib.contextmanager
def bf16_products_flash_attention():
    """The same, with the attention kernel left to SDPA: its CPU flash kernel."""
    with bf16_products(), unittest.mock.patch.object(gpt, "_attention_kernel", lambda device: contextlib.nullcontext()):
        yield


LEVERS = {  # name: (context, compiled)
    "eager float32 (both programs)": (contextlib.nullcontext, False),
    "`torch.compile`": (contextlib.nullcontext, True),
    "float32 products in bf16 (matmul precision `medium`), math attention (as aigc runs it)": (bf16_products, False),
    "the same with SDPA's CPU flash attention": (bf16_products_flash_attention, False),
    "bf16 autocast (`trainer.precision=bf16-mixed`)": (lambda: torch.autocast("cpu", dtype=torch.bfloat16), False),
}


def gpt_and_optimizer():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=shakespeare_char_cpu"])
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all")
    model.build(VOCAB)
    net = model.net.train()
    optimizer = model.optimizer(params=net.param_groups(), fused=True)
    return net, optimizer, cfg.data.batch_size, cfg.data.block_size, model.grad_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    net, optimizer, batch, block, clip = gpt_and_optimizer()
    tokens = torch.randint(0, VOCAB, (batch, block + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    compiled = torch.compile(net)

    def step(forward) -> None:
        logits, _ = forward(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    breakdown = kernel_breakdown(lambda: step(net))
    ms = defaultdict(list)
    for _ in range(args.rounds):
        for name, (context, is_compiled) in LEVERS.items():
            with context():
                ms[name].append(step_ms(lambda f=compiled if is_compiled else net: step(f), args.steps))
        print("  " + ", ".join(f"{name}: {times[-1]:.1f}" for name, times in ms.items()), flush=True)
    eager = statistics.median(ms[next(iter(LEVERS))])
    lever_lines = [
        f"| lever | ms per step (median of {args.rounds} rounds) | / eager float32 |",
        "|---|---|---|",
        *(f"| {name} | {statistics.median(t):.1f} | {statistics.median(t) / eager:.2f} |" for name, t in ms.items()),
    ]
    table = breakdown + "\n\n" + "\n".join(lever_lines)
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        "# Where the GPT's CPU step goes\n\n`.venv/bin/python experiments/gpt_kernels.py` "
        f"(2 CPU cores; `experiment=shakespeare_char_cpu`'s net, {batch} x {block} tokens).\n\n{table}\n"
    )


def step_ms(step, steps: int) -> float:
    for _ in range(10):  # warm-up (and compilation)
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def kernel_breakdown(step, steps: int = 20) -> str:
    for _ in range(10):
        step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as profiler:
        for _ in range(steps):
            step()
    events = profiler.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    family_us = defaultdict(float)
    matmul_flops = matmul_us = 0.0
    for event in events:
        family = next((f for f, keys in FAMILIES.items() if any(k in event.key.lower() for k in keys)), "other")
        family_us[family] += event.self_cpu_time_total
        if family == "matrix products":
            matmul_flops += event.flops
            matmul_us += event.self_cpu_time_total
    lines = ["| kernels | ms per step | share |", "|---|---|---|"]
    for family in [*FAMILIES, "other"]:
        lines.append(f"| {family} | {family_us[family] / 1000 / steps:.1f} | {family_us[family] / total_us:.0%} |")
    lines.append(f"| all | {total_us / 1000 / steps:.1f} | |")
    achieved = matmul_flops / matmul_us / 1000  # GFLOP/s
    best = large_matmul_gflops()
    return (
        "\n".join(lines) + f"\n\nThe matrix products run at {achieved:.0f} GFLOP/s, {achieved / best:.0%} of the "
        f"{best:.0f} GFLOP/s of one 2048 x 2048 float32 product on this machine."
    )


def large_matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


if __name__ == "__main__":
    main()
