"""Every model on the GPUs of this machine: throughput and peak memory with `trainer=gpu`
(one GPU, bf16-mixed; the GPT also with `model.compile=true`) and `trainer=ddp` (every GPU).

    .venv/bin/python experiments/gpu.py [--batches 100] [--smoke-on-cpu]

Each run is `python -m aigc.run` with logger=none, no validation and the timing callback of
experiments/helpers/throughput.py (images or tokens per second over all processes after 5
warm-up batches; peak memory torch allocated on rank zero's GPU). The batch size is each model's
default, per process. Without a CUDA GPU it prints that it skipped and exits 0;
`--smoke-on-cpu` runs the same commands with `trainer=cpu` and `trainer=ddp_cpu` instead, a few
batches each, to check the script itself. Prints one table; results in experiments/gpu.md.
"""

import argparse
import sys
from pathlib import Path

from ddp_throughput import MODELS, throughput  # the same timed run (this folder is on sys.path)

ROWS = [  # (model, extra overrides, trainer)
    *((name, [], "gpu") for name in MODELS),
    ("transformer", ["model.compile=true"], "gpu"),
    *((name, [], "ddp") for name in MODELS),
]
ON_CPU = {"gpu": "cpu", "ddp": "ddp_cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="training batches per process per run")
    parser.add_argument("--smoke-on-cpu", action="store_true", help="check the script on a CPU")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.smoke_on_cpu:
        print("skipped: no CUDA GPU here (experiments/gpu.py measures trainer=gpu and trainer=ddp)")
        return
    gpus = torch.cuda.device_count()
    device = torch.cuda.get_device_name(0) if gpus else "CPU (smoke run)"
    lines = [
        "| model | overrides | trainer | processes | unit | per second | peak memory, rank 0 (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, extra, trainer in ROWS:
        trainer = ON_CPU[trainer] if args.smoke_on_cpu else trainer
        result = throughput([*MODELS[name], *extra], trainer, args.batches)
        memory = f"{result['peak_memory_gib']:.2f}" if "peak_memory_gib" in result else ""
        lines.append(
            f"| {name} | {' '.join(extra) or '(none)'} | {trainer} | {result['processes']} | {result['unit']} "
            f"| {result['items_per_sec']:,.0f} | {memory} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    table = "\n".join(lines)
    print(table)
    if not args.smoke_on_cpu:
        Path(__file__).with_suffix(".md").write_text(
            f"# Every model on GPUs\n\n`.venv/bin/python experiments/gpu.py --batches {args.batches}` "
            f"({gpus} x {device}, torch {torch.__version__}).\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
