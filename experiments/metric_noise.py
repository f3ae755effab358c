"""How noisy are IS and FID at a given sample count, and what does an evaluation cost?

    .venv/bin/python experiments/metric_noise.py [--epochs 10] [--repeats 5] [--counts 500 1000 2000 5000 10000]

Trains the default GAN (``model=gan data=mnist``, offline digits) for ``--epochs`` epochs, then
scores its last checkpoint ``--repeats`` times at each sample count, every repeat from other
seeds, with the callbacks' own function (``aigc.metrics.fidelity.score_images``, the shipped
MNIST classifier, the real validation split as reference, its statistics cached as in every
evaluation after a run's first). The spread across repeats is the noise a single evaluation
carries; the mean moves with the count too (FID and KID are biased upwards at small counts), so
only values at the same count compare, which is why runs record the count (tag
``metrics.images.num_samples``). Prints one table; results in experiments/metric_noise.md.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aigc.callbacks import ConfigSnapshot
from aigc.metrics.fidelity import metric_key, score_images
from aigc.metrics.images import to_uint8

TRAIN = ["model=gan", "data=mnist", "data.download=false", "metrics.inception=false", "logger=none"]
MEASURES = ("is", "fid", "kid")


def train(workdir: Path, epochs: int) -> Path:
    command = [sys.executable, "-m", "aigc.run", *TRAIN, f"trainer.max_epochs={epochs}"]
    print("$", " ".join(["python", *command[1:]]), flush=True)
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stderr[-3000:]}")
    (checkpoint,) = workdir.glob("logs/train/runs/*/checkpoints/last.ckpt")
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aigc-metric-noise-") as tmp:
        checkpoint = torch.load(train(Path(tmp), args.epochs), map_location="cpu", weights_only=True)
        cfg = OmegaConf.create(checkpoint[ConfigSnapshot.key])
        model = instantiate(cfg.model, _convert_="all")
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
        data = instantiate(cfg.data, _convert_="all")
        data.prepare_data()
        data.setup("fit")
        reference = data.real_images("val")

        def evaluate(count: int, repeat: int) -> tuple[dict[str, float], float]:
            start = time.perf_counter()
            with torch.no_grad():
                seeds = range(10_000 * (repeat + 1), 10_000 * (repeat + 1) + count, 500)
                fake = torch.cat(
                    [to_uint8(model.sample(min(500, count - i * 500), seed=s)) for i, s in enumerate(seeds)]
                )
            scores = score_images(
                fake,
                reference,
                f"{data.name}-val-{data.source.digest}",
                [data.classifier],
                Path(tmp) / "cache",
                batch_size=500,
                measures=MEASURES,
            )
            return scores, time.perf_counter() - start

        evaluate(args.counts[0], 0)  # the reference statistics, computed once as in a run's first evaluation
        rows = []
        for count in args.counts:
            results = [evaluate(count, repeat) for repeat in range(args.repeats)]
            rows.append((count, [scores for scores, _ in results], statistics.median(s for _, s in results)))
            print(f"  {count} samples: {rows[-1][1]}", flush=True)

    names = [metric_key(measure, data.classifier) for measure in MEASURES]
    lines = [
        "| samples | " + " | ".join(f"{n} mean ± sd (sd / mean)" for n in names) + " | s per evaluation |",
        "|---" * (len(names) + 2) + "|",
    ]
    for count, scores, seconds in rows:
        cells = []
        for name in names:
            values = [s[name] for s in scores]
            mean, sd = statistics.mean(values), statistics.stdev(values)
            cells.append(f"{mean:.4g} ± {sd:.2g} ({100 * sd / abs(mean):.1f}%)")
        lines.append(f"| {count:,} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    table = "\n".join(lines)
    print(table)
    Path(__file__).with_suffix(".md").write_text(
        "# IS and FID noise against the sample count\n\n`.venv/bin/python experiments/metric_noise.py "
        f"--epochs {args.epochs} --repeats {args.repeats}` (2 CPU cores, offline digits): the default GAN "
        f"after {args.epochs} epochs, {args.repeats} repeats from other seeds per count.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
