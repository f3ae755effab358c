"""The text-to-image model on the shapes benchmark: what 30 CPU-minutes buy, and how sampling trades
faithfulness and FID for time. Results in experiments/text_to_image.md.

    .venv/bin/python experiments/text_to_image.py report <run id> --store sqlite:///<folder>/mlflow.db
    .venv/bin/python experiments/text_to_image.py samplers <checkpoint> [--rows dpm++:10 ddim:20] [--guidance 1 3 5]

``report`` prints a run's held-out prompt accuracy by category (its last evaluation and its best)
against the issue's targets, beside GenEval's published overall scores, which measure other
models on other images: context, not a like-for-like comparison.

``samplers`` scores a checkpoint's weights (the EMA where the run kept one) for each sampler,
steps and guidance as a run's validation does: ``val/prompt_acc`` on the 24 held-out prompts x 8
seeds, ``val/fid_shapes`` and ``val/kid_shapes`` of images drawn for the held-out captions against
the real held-out scenes, and the seconds per 1,000 images drawn.
"""

import argparse
import time
from pathlib import Path

from aigc.common.scenes import CATEGORIES

# GenEval (Ghosh et al., 2023), overall score as published: context for the shapes benchmark's numbers
GENEVAL_OVERALL = {"SD 1.5": 0.43, "SDXL": 0.55, "DALL-E 3": 0.67}
GENEVAL_SD15 = {"position": 0.04, "colour_binding": 0.06}  # the categories where SD 1.5 is weakest
TARGETS = {"overall": 0.90, "position": 0.80, "colour_binding": 0.80}


def report(run_id: str, store: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    run = client.get_run(run_id)
    seconds = (run.info.end_time - run.info.start_time) / 1000
    lines = [
        f"Run {run_id} ({run.info.status}, {seconds / 60:.1f} min from start to end)",
        "",
        "| category | last | best | target | GenEval, SD 1.5 |",
        "|---|---|---|---|---|",
    ]
    for category in ("overall", *CATEGORIES):
        key = "val/prompt_acc" if category == "overall" else f"val/prompt_acc_{category}"
        history = [point.value for point in client.get_metric_history(run_id, key)]
        target = TARGETS.get(category)
        shown_target = "" if target is None else f">= {target:.2f} ({history[-1] - target:+.2f})"
        reference = GENEVAL_OVERALL["SD 1.5"] if category == "overall" else GENEVAL_SD15.get(category, "")
        lines.append(f"| {category} | {history[-1]:.3f} | {max(history):.3f} | {shown_target} | {reference} |")
    lines += ["", "GenEval overall, as published: " + ", ".join(f"{k} {v:.2f}" for k, v in GENEVAL_OVERALL.items())]
    metrics = run.data.metrics
    lines.append(
        f"val/fid_shapes {metrics.get('val/fid_shapes', float('nan')):.2f}, val/loss {metrics['val/loss']:.4f}"
    )
    return "\n".join(lines)


def samplers(checkpoint_path: Path, rows: list[tuple[str, int]], guidance: list[float], num_samples: int) -> str:
    import torch

    from aigc.common.stored import CONFIG_KEY, instantiate_stored, read_checkpoint
    from aigc.metrics.fidelity import score_images
    from aigc.metrics.images import to_uint8
    from aigc.metrics.prompt_accuracy import prompt_accuracy

    checkpoint = read_checkpoint(str(checkpoint_path))
    config = checkpoint[CONFIG_KEY]
    model = instantiate_stored(config["model"], str(checkpoint_path), _convert_="all").eval()
    model.load_state_dict(checkpoint["state_dict"])  # the EMA, where the run kept one (Lightning saves it here)
    datamodule = instantiate_stored(config["data"], str(checkpoint_path), _convert_="all")
    datamodule.setup("fit")
    prompts, captions = datamodule.evaluation_prompts, datamodule.captions("val")[:num_samples]
    reference = datamodule.real_images("val")
    cache = Path(__file__).resolve().parents[1] / ".cache" / "fidelity"  # where runs keep reference statistics

    def scores(sampler: str, steps: int, scale: float) -> tuple[dict, float]:
        options = {"sampler": sampler, "steps": steps, "guidance": scale}
        start = time.perf_counter()
        with torch.no_grad():
            drawn = [
                to_uint8(model.sample(len(prompts), seed=2_000_000 + j, prompts=[p.prompt for p in prompts], **options))
                for j in range(8)
            ]
            fakes = [
                to_uint8(model.sample(len(chunk), seed=1_000_000 + i, prompts=chunk, **options))
                for i, chunk in enumerate(captions[k : k + 250] for k in range(0, len(captions), 250))
            ]
        seconds = time.perf_counter() - start
        images = torch.stack(drawn, dim=1).flatten(0, 1)
        accuracy = prompt_accuracy(images, [p for p in prompts for _ in range(8)])
        fidelity = score_images(
            torch.cat(fakes),
            reference,
            f"shapes-val-{datamodule.source.digest}",
            ["shapes-verifier"],
            cache,
            measures=("fid", "kid"),
        )
        return accuracy | fidelity, 1000 * seconds / (len(images) + num_samples)

    lines = [
        f"| sampler | steps | guidance | prompt_acc | position | colour_binding | fid_shapes ({num_samples}) "
        "| kid_shapes | s per 1,000 images |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sampler, steps in rows:
        for scale in guidance:
            scored, per_thousand = scores(sampler, steps, scale)
            lines.append(
                f"| {sampler} | {steps} | {scale:g} | {scored['prompt_acc']:.3f} | "
                f"{scored['prompt_acc_position']:.3f} | {scored['prompt_acc_colour_binding']:.3f} | "
                f"{scored['fid_shapes']:.2f} | {scored['kid_shapes']:.4f} | {per_thousand:.0f} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    report_parser = commands.add_parser("report")
    report_parser.add_argument("run_id")
    report_parser.add_argument("--store", required=True)
    samplers_parser = commands.add_parser("samplers")
    samplers_parser.add_argument("checkpoint", type=Path)
    samplers_parser.add_argument("--rows", nargs="+", default=["dpm++:10", "dpm++:20", "ddim:20"])
    samplers_parser.add_argument("--guidance", nargs="+", type=float, default=[1.0, 3.0, 5.0])
    samplers_parser.add_argument("--num-samples", type=int, default=500)
    args = parser.parse_args()
    if args.command == "report":
        print(report(args.run_id, args.store))
    else:
        rows = [(row.split(":")[0], int(row.split(":")[1])) for row in args.rows]
        print(samplers(args.checkpoint, rows, args.guidance, args.num_samples))


if __name__ == "__main__":
    main()
