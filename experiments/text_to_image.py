"""The text-to-image model on the shapes benchmark: what 30 CPU-minutes buy, and how sampling trades
faithfulness and FID for time. Results in experiments/text_to_image.md.

    .venv/bin/python experiments/text_to_image.py report <run id> --store sqlite:///<folder>/mlflow.db
    .venv/bin/python experiments/text_to_image.py samplers <checkpoint> [--rows dpm++:10 ddim:20] [--guidance 1 3 5]
    .venv/bin/python experiments/text_to_image.py tokenizers [--pairs 5] [--steps 20]

``report`` prints a run's held-out prompt accuracy by category (its last evaluation and its best)
against the issue's targets, beside GenEval's published overall scores, which measure other
models on other images: context, not a like-for-like comparison.

``samplers`` scores a checkpoint's weights (the EMA where the run kept one) for each sampler,
steps and guidance as a run's validation does: ``val/prompt_acc`` on the 24 held-out prompts x 8
seeds, ``val/fid_shapes`` and ``val/kid_shapes`` of images drawn for the held-out captions against
the real held-out scenes, and the seconds per 1,000 images drawn.

``tokenizers`` sets CLIP's tokenizer (the model's) beside a byte-level BPE trained on the training
captions (``aigc.data.tokenizers.BPETokenizer``): how each splits the captions, the size of the
text encoder each needs, and the time of the experiment's training step with each, A/B interleaved
in one process.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from aigc.common.scenes import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]

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


def tokenizers(pairs: int, steps: int) -> str:
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from transformers import CLIPTextConfig, CLIPTextModel

    from aigc.data.scenes import evaluation_prompts, training_scenes
    from aigc.data.tokenizers import BPETokenizer

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        folder = tempfile.mkdtemp()
        cfg = compose(
            "train", ["experiment=shapes_text_to_image", f"paths.root_dir={folder}", f"paths.output_dir={folder}"]
        )
    torch.manual_seed(cfg.seed)
    captions = [scene.caption for scene in training_scenes(cfg.data.num_train, cfg.data.seed)]
    prompts = [prompt.prompt for prompt in evaluation_prompts()]
    clip_model = instantiate(cfg.model, _convert_="all")
    clip = clip_model.net.tokenizer
    bpe = BPETokenizer(vocab_size=512).fit("\n".join(captions))  # stops at the merges the captions have
    start, end = bpe.vocab_size, bpe.vocab_size + 1  # CLIP's layout: start, tokens, end, end as padding

    def bpe_ids(texts: list[str]) -> torch.Tensor:
        rows = [[start, *bpe.encode(text), end] for text in texts]
        return torch.tensor([row + [end] * (clip_model.net.context_length - len(row)) for row in rows])

    bpe_model = instantiate(cfg.model, _convert_="all")
    encoder = clip_model.net.text_encoder.config
    bpe_model.net.text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **{
                **encoder.to_dict(),
                "vocab_size": end + 1,
                "bos_token_id": start,
                "eos_token_id": end,
                "pad_token_id": end,
            }
        )
    )
    arms = {
        "CLIP's BPE (open_clip's merges)": (clip_model, clip_model.net.tokenize),
        "BPE trained on the captions": (bpe_model, bpe_ids),
    }

    def step_ms(model, tokenize, optimizer) -> float:
        images = torch.randn(cfg.data.batch_size, *cfg.data.image_shape)
        times = []
        for _ in range(steps + 1):
            texts = [captions[i] for i in torch.randint(len(captions), (cfg.data.batch_size,)).tolist()]
            began = time.perf_counter()
            optimizer.zero_grad()
            model.losses(images, model.net.encode(tokenize(model.drop_prompts(texts)))).backward()
            optimizer.step()
            times.append(time.perf_counter() - began)
        return 1000 * statistics.median(times[1:])

    optimizers = {name: model.configure_optimizers() for name, (model, _) in arms.items()}
    timed: dict[str, list[float]] = {name: [] for name in arms}
    for pair in range(pairs):
        for name in list(arms)[:: 1 if pair % 2 == 0 else -1]:  # each arm first in every other pair
            model, tokenize = arms[name]
            timed[name].append(step_ms(model, tokenize, optimizers[name]))
        print(f"  pair {pair + 1}: " + ", ".join(f"{times[-1]:.0f} ms" for times in timed.values()), flush=True)

    words = [len(text.split()) for text in captions]
    first = next(iter(timed))
    lines = [
        f"| tokenizer | vocabulary | tokens per training caption (mean, max) | captions one token a word "
        f"| held-out prompts one token a word | text encoder parameters | all parameters | ms a step "
        f"(median of {pairs} pairs) | step / CLIP's |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (model, tokenize) in arms.items():
        lengths, held_out = token_counts(tokenize(captions)), token_counts(tokenize(prompts))
        text_params = sum(weight.numel() for weight in model.net.text_encoder.parameters())
        all_params = sum(weight.numel() for weight in model.parameters())
        vocabulary = model.net.text_encoder.config.vocab_size
        ratio = statistics.median(a / b for a, b in zip(timed[name], timed[first], strict=True))
        lines.append(
            f"| {name} | {vocabulary:,} | {statistics.mean(lengths):.2f}, {max(lengths)} "
            f"| {sum(n == w for n, w in zip(lengths, words, strict=True)) / len(words):.1%} "
            f"| {sum(n == len(p.split()) for n, p in zip(held_out, prompts, strict=True))} of {len(prompts)} "
            f"| {text_params:,} | {all_params:,} | {statistics.median(timed[name]):.0f} | {ratio:.3f} |"
        )
    split_words = sorted({word for text in captions for word in text.split() if len(clip.tokenize(word)) > 1})
    lines.append(f"\nWords CLIP's BPE splits: {', '.join(f'{w} -> {clip.tokenize(w)}' for w in split_words)}")
    return "\n".join(lines)


def token_counts(ids) -> list[int]:
    """Each row's tokens without start, end and padding: the first end token's position - 1 (the
    last id of a row is the end token, as padding)."""
    return [row.tolist().index(int(row[-1])) - 1 for row in ids]


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
    tokenizers_parser = commands.add_parser("tokenizers")
    tokenizers_parser.add_argument("--pairs", type=int, default=5)
    tokenizers_parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.command == "report":
        print(report(args.run_id, args.store))
    elif args.command == "tokenizers":
        print(tokenizers(args.pairs, args.steps))
    else:
        rows = [(row.split(":")[0], int(row.split(":")[1])) for row in args.rows]
        print(samplers(args.checkpoint, rows, args.guidance, args.num_samples))


if __name__ == "__main__":
    main()
