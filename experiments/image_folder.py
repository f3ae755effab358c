"""data=image_folder: what its cache of decoded images saves, and what share of a training step loading takes.

    .venv/bin/python experiments/image_folder.py            # 2,000 images of 160x120 and 640x480, at 32x32 and 64x64
    .venv/bin/python experiments/image_folder.py --images 500 --sizes 160 --resolutions 32 --steps 3

- The folders: ``--images`` pictures drawn with PIL in a temporary directory for each of ``--sizes``
  (the long side: landscape and portrait, coloured ellipses, rectangles and lines; half PNG, half
  JPEG), in four class subfolders, each captioned in ``metadata.jsonl``. Nothing is downloaded.
- ``cache``: the wall time of a fresh datamodule's ``setup()`` (listing, captions, pixels, the split
  and the tensors: what a run waits for), median of ``--repeats``, interleaved: without the cache
  (``data.cache=false``: decode only), cold (an empty ``data.cache_dir``: decode, then write the
  cache) and warm (a cache hit: read it back and check its checksum).
- ``loading share``: on the first folder, ``model=diffusion`` (conf/model/diffusion.yaml's UNet)
  trained for ``--steps`` batches of 64 with the cache on and ``data.flip=true``, under Lightning's
  ``SimpleProfiler``: the time getting each batch to the model (``train_dataloader_next``, the
  datamodule's flips, the move to the device) against ``run_training_batch`` (forward, backward,
  optimizer step), medians with the first batch left out as warm-up; and the loader alone (its
  next batch, with no model in the process).

Prints one table per measure, with the CPU it ran on; experiments/image_folder.md keeps them.
"""

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning import Trainer
from lightning.pytorch.profilers import SimpleProfiler
from PIL import Image, ImageDraw

import aigc  # noqa: F401  (registers ${aigc.class_count:...})
from aigc.data.image_folder import ImageFolderDataModule

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("circles", "squares", "mixed", "stripes")
# what Lightning's profiler times of getting a batch to the model: the loader's next batch, the
# datamodule's flips (on_before_batch_transfer) and the move to the device
LOADING = (
    "[_TrainingEpochLoop].train_dataloader_next",
    "[LightningDataModule]ImageFolderDataModule.on_before_batch_transfer",
    "[Strategy]SingleDeviceStrategy.batch_to_device",
)


def draw_folder(folder: Path, count: int, long_side: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows, scale = [], long_side // 160
    for i in range(count):
        kind = CLASSES[i % len(CLASSES)]
        size = (long_side, long_side * 3 // 4) if i % 3 else (long_side * 3 // 4, long_side)
        image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
        pen = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 7))):
            x, y = rng.integers(0, size[0] - 20 * scale), rng.integers(0, size[1] - 20 * scale)
            w, h = rng.integers(10, 60, 2) * scale
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = {"circles": "ellipse", "squares": "rectangle"}.get(kind, rng.choice(["ellipse", "rectangle"]))
            if kind == "stripes":
                pen.line([(x, y), (x + w, y + h)], fill=colour, width=int(rng.integers(2, 8)))
            else:
                getattr(pen, shape)([x, y, x + w, y + h], fill=colour)
        name = f"{kind}/{i:05d}.{'png' if i % 2 else 'jpg'}"
        (folder / kind).mkdir(parents=True, exist_ok=True)
        image.save(folder / name, quality=90) if name.endswith("jpg") else image.save(folder / name)
        rows.append({"file_name": name, "text": f"{kind} on a coloured ground, picture {i}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def datamodule(folder: Path, resolution: int, cache_dir: Path | None, flip: bool = False) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        path=str(folder),
        image_shape=[3, resolution, resolution],
        resolution=resolution,
        num_classes=len(CLASSES),
        cache=cache_dir is not None,
        cache_dir=str(cache_dir) if cache_dir else None,
        batch_size=64,
        flip=flip,
    )


def setup_seconds(folder: Path, resolution: int, cache_dir: Path | None, empty_first: bool) -> float:
    if empty_first and cache_dir is not None:
        for file in cache_dir.glob("*.npz"):
            file.unlink()
    data = datamodule(folder, resolution, cache_dir)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # what it says of the folder, once per setup
        data.setup("fit")
    return time.perf_counter() - start


def loader_ms(data: ImageFolderDataModule, batches: int = 20) -> float:
    """The median wall time of the next training batch, with nothing else running in the process."""
    times, batch_iterator = [], iter(data.train_dataloader())
    for _ in range(batches):
        start = time.perf_counter()
        next(batch_iterator)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def cache_table(folders: dict[str, Path], resolutions: list[int], repeats: int, work: Path) -> None:
    print(
        "| images | resolution | no cache (s) | cold: decode, write (s) | warm: cache hit (s) | no cache / hit | file |"
    )
    print("|---|---|---|---|---|---|---|")
    for (source, folder), resolution in itertools.product(folders.items(), resolutions):
        cache_dir = work / f"cache-{folder.name}-{resolution}"
        # interleaved, so that a machine's slower minutes fall on all three alike
        runs = [
            (
                setup_seconds(folder, resolution, None, False),
                setup_seconds(folder, resolution, cache_dir, True),
                setup_seconds(folder, resolution, cache_dir, False),
            )
            for _ in range(repeats)
        ]
        none, cold, warm = (statistics.median(times) for times in zip(*runs, strict=True))
        size = sum(file.stat().st_size for file in cache_dir.glob("*.npz")) / 2**20
        times = f"{none:.2f} | {cold:.2f} | {warm:.3f} | {none / warm:.0f}x"
        print(f"| {source} | {resolution}x{resolution} | {times} | {size:.1f} MiB |", flush=True)


def diffusion_model(folder: Path, resolution: int, work: Path):
    """model=diffusion as conf/model/diffusion.yaml builds it for this folder and resolution."""
    GlobalHydra.instance().clear()
    overrides = [f"paths.root_dir={work}", "model=diffusion", "data=image_folder", f"data.path={folder}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"data.resolution={resolution}"], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    return instantiate(cfg.model)


def loading_table(folder: Path, resolutions: list[int], steps: int, work: Path) -> None:
    print(
        "| resolution | batch | loader alone (ms) | next batch in training (ms) | training step (ms) | loading share |"
    )
    print("|---|---|---|---|---|---|")
    for resolution in resolutions:
        data = datamodule(folder, resolution, work / f"cache-{folder.name}-{resolution}", flip=True)
        with contextlib.redirect_stdout(io.StringIO()):
            data.setup("fit")
        alone = loader_ms(data)
        profiler = SimpleProfiler(dirpath=work, filename=f"profile{resolution}")  # its report in a file
        trainer = Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_train_batches=steps + 1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            profiler=profiler,
        )
        trainer.fit(diffusion_model(folder, resolution, work), datamodule=data)
        durations = profiler.recorded_durations
        loading = [sum(parts) for parts in zip(*(durations[key][1:] for key in LOADING), strict=True)]
        step = durations["run_training_batch"][1:]
        load_ms, step_ms = 1000 * statistics.median(loading), 1000 * statistics.median(step)
        share = load_ms / (load_ms + step_ms)
        times = f"{alone:.1f} | {load_ms:.1f} | {step_ms:.0f} | {share:.2%}"
        print(f"| {resolution}x{resolution} | 64 | {times} |", flush=True)


def cpu() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{model or platform.processor()}, {torch.get_num_threads()} torch threads, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 640], help="the drawn images' long sides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aigc-image-folder-") as temporary:
        work = Path(temporary)
        print(f".venv/bin/python experiments/image_folder.py {' '.join(sys.argv[1:])}")
        print(f"{cpu()}; torch {torch.__version__}\n")
        folders = {}
        for long_side in args.sizes:
            folder = work / f"images{long_side}"
            start = time.perf_counter()
            draw_folder(folder, args.images, long_side)
            print(f"{args.images:,} images of {long_side}px drawn in {time.perf_counter() - start:.1f} s")
            folders[f"{args.images:,} of {long_side}x{long_side * 3 // 4}"] = folder
        print()
        cache_table(folders, args.resolutions, args.repeats, work)
        print()
        loading_table(next(iter(folders.values())), args.resolutions, args.steps, work)


if __name__ == "__main__":
    main()
