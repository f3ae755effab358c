"""Any folder of images: ``data=image_folder data.path=<folder>``.

- Images: the PNG, JPEG and WebP files anywhere below the folder (hidden files and folders
  aside), resized on the shorter side to ``resolution`` and centre-cropped (torchvision's
  ``Resize`` + ``CenterCrop``), as grey (1 channel) or RGB (3). Other files are left out, and
  the console says how many.
- Labels: the class subfolders, as torchvision's ``ImageFolder`` reads them (sorted names are
  labels 0, 1, ...); images at the folder's top level are unlabelled (label 0, ``num_classes``
  null). The config reads the count from the folder (``${aigc.class_count:...}``); the names go
  into the run's checkpoints (``state_dict``).
- Captions: Hugging Face ``imagefolder``'s ``metadata.jsonl`` (``{"file_name": ..., "text": ...}``
  a line, paths relative to the folder), or a ``.txt`` beside each image (same stem), as LoRA
  trainers read them; ``captions=auto`` takes the first of these that the folder has.
- Buckets (``buckets=true``, for models that take any size: Stable Diffusion's UNet): each image
  resized to cover the aspect-ratio bucket nearest its own and centre-cropped to it, a few sizes
  near ``resolution`` x ``resolution`` with sides multiples of 64, each batch from one bucket
  (``aigc.data.buckets``); ``real_images`` (the FID reference) stays square.
- Validation split: the images whose relative path hashes below ``val_fraction``, so adding files
  moves no other image between the splits.
- Cache: the decoded images, one ``.npz`` per folder and transform under ``cache_dir`` (bucketed:
  one array per bucket), each image kept by its file's path, size and modification time: a
  changed file is decoded again.

Anything wrong with the folder is one ``ValueError`` line naming the file and the fix, raised
when ``setup`` loads it (before any run exists).
"""

import hashlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from aigc.common.class_folders import class_folders
from aigc.common.constraints import NonNegativeInt, OpenFraction, PositiveInt
from aigc.common.errors import joined
from aigc.data.buckets import STEP, BucketedImages, bucket_sizes, nearest_bucket
from aigc.data.images import ImageDataModule, ImageSplits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
METADATA = "metadata.jsonl"
# bump when decoding changes (the resize, the crop): cache files written before then miss
CACHE_VERSION = 1
# what PIL raises for a file it can't decode: not an image, cut short, or too large to be safe
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class ImageFolderDataModule(ImageDataModule):
    """A folder of images, with labels from its class subfolders and captions where it has them."""

    name = "image_folder"

    def __init__(
        self,
        path: str,
        image_shape: Sequence[int],
        resolution: PositiveInt = 32,
        channels: Literal[1, 3] = 3,
        num_classes: PositiveInt | None = None,
        captions: Literal["auto", "metadata", "txt", "none"] = "auto",
        flip: bool = False,
        buckets: bool = False,
        val_fraction: OpenFraction = 0.1,
        skip_unreadable: bool = False,
        cache: bool = True,
        cache_dir: str | None = None,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        fid_metric: str = "val/fid",
    ):
        self.check_arguments(image_shape=image_shape, resolution=resolution, channels=channels, buckets=buckets)
        super().__init__(str(path), image_shape, num_classes, batch_size, num_workers, fid_metric)
        self.path = str(path)
        self.resolution, self.channels = resolution, channels
        self.captions_from = captions
        self.flip = flip
        # the buckets' (width, height) with buckets=true, else None: square images
        self.bucket_sizes = bucket_sizes(resolution) if buckets else None
        self.val_fraction = val_fraction
        self.skip_unreadable = skip_unreadable
        self.cache_dir = cache_dir if cache else None
        # after setup: the images (relative paths) that have no caption, and those skipped as unreadable
        self.uncaptioned: list[str] = []
        self.skipped: list[str] = []
        self._restored: dict | None = None  # a checkpoint's state_dict, checked against the folder
        # after setup: each split's images (relative paths) in order; bucketed data's square images, once asked
        self._names: dict[str, list[str]] = {}
        self._squares: dict[str, torch.Tensor] = {}

    @staticmethod
    def check_arguments(image_shape: Sequence[int], resolution: int, channels: int, buckets: bool = False, **_) -> None:
        if list(image_shape) != [channels, resolution, resolution]:
            raise ValueError(
                f"image_shape={list(image_shape)} but channels={channels}, resolution={resolution}: "
                "set data.channels and data.resolution only (image_shape interpolates them)"
            )
        if buckets and resolution % STEP:
            below = max(STEP, resolution // STEP * STEP)
            raise ValueError(
                f"data.resolution={resolution} is not a multiple of {STEP}, which data.buckets=true needs "
                f"(the buckets' sides are): set data.resolution={below} or {below + STEP}, or data.buckets=false"
            )

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._check_num_classes(self._root())
        super().setup(stage)
        if self._restored is not None:
            self._check_restored()

    def load(self) -> ImageSplits:
        root = self._root()
        names, others = list_images(root)
        if not names:
            raise ValueError(f"{root} holds no PNG, JPEG or WebP images: point data.path at a folder of images")
        if others:
            print(
                f"image_folder: left out {len(others)} files that are not PNG, JPEG or WebP images (e.g. {others[0]})"
            )
        class_names = class_folders(root) or None
        labels = dict(zip(names, labels_of(root, names, class_names), strict=True))
        captions, caption_source = self._captions(root, names)
        pixels, kept = self._pixels(root, names)
        if len(kept) < 2:
            raise ValueError(f"{root} has {len(kept)} readable images: training and validation need at least 2")
        val = held_out(kept, self.val_fraction)
        splits = {}
        for split, mask in (("train", ~val), ("val", val)):
            chosen = [name for name, v in zip(kept, mask, strict=True) if v]
            self._names[split] = chosen
            if self.bucket_sizes is None:
                splits[f"{split}_images"] = pixels[mask]
            else:
                images = [image for image, v in zip(pixels, mask, strict=True) if v]
                splits[f"{split}_images"] = BucketedImages.group(images, self.bucket_sizes, self.channels)
            splits[f"{split}_labels"] = np.array([labels[name] for name in chosen], dtype=np.int64)
            splits[f"{split}_captions"] = None if captions is None else [captions[name] for name in chosen]
        counts = f"{len(kept):,} images ({len(kept) - int(val.sum()):,} train / {int(val.sum()):,} val)"
        labelled = f"{len(class_names)} classes" if class_names else "unlabelled"
        captioned = f"captions from {caption_source}" if caption_source else "no captions"
        print(f"image_folder source: {root}: {counts}, {labelled}, {captioned}")
        if self.bucket_sizes is not None:
            buckets = _bucket_counts(splits["train_images"], splits["val_images"])
            print(f"image_folder buckets (width x height: images): {buckets}")
        return ImageSplits(
            **splits, source="folder", location=str(root), class_names=class_names, caption_source=caption_source
        )

    def real_images(self, split: str = "val") -> torch.Tensor:
        """The split's images as uint8 (N, C, H, W). Bucketed data's too are square, at ``resolution``
        (resized on the shorter side and centre-cropped, as without buckets): the size the model
        draws, so that the FID reference compares like with like. They are decoded from the files
        when first asked for (not cached on disk) and kept."""
        if self.bucket_sizes is None:
            return super().real_images(split)
        if split not in self._squares:
            root = Path(self._splits.location)
            with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
                squares = list(pool.map(self._square, (root / name for name in self._names[split])))
            self._squares[split] = torch.from_numpy(np.stack(squares))
        return self._squares[split]

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the data (Lightning stores it under the class name): the
        labels' names, so that a label can be asked for by name without the folder."""
        if self._splits is None:
            return {}
        return {"class_names": self.class_names, "caption_source": self.caption_source}

    def load_state_dict(self, state: dict) -> None:
        self._restored = dict(state)
        if self._splits is not None:
            self._check_restored()

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if not self.flip or trainer is None or not trainer.training:
            return batch
        # half the images mirrored, drawn from the run's seed, the process and the batch's number:
        # a resumed run flips as the interrupted one would have, and the model's random numbers
        # (torch's global generator) are left alone
        number = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        images = batch[0]
        draw = np.random.default_rng([self.shuffle_seed, trainer.global_rank, number]).random(len(images))
        mirrored = torch.from_numpy(draw < 0.5).view(-1, 1, 1, 1)
        return (torch.where(mirrored, images.flip(-1), images), *batch[1:])

    def _root(self) -> Path:
        root = Path(self.path).expanduser()
        if not root.is_dir():
            what = "is a file" if root.exists() else "does not exist"
            raise ValueError(f"data.path={self.path} {what}: point it at a folder of images")
        return root.resolve()

    def _check_num_classes(self, root: Path) -> None:
        found = len(class_folders(root)) or None
        if self.num_classes != found:
            has = f"{found} class subfolders" if found else "no class subfolders"
            raise ValueError(
                f"data.num_classes={self.num_classes}, but {root} has {has}: "
                "leave data.num_classes to the folder (${aigc.class_count:${data.path}})"
            )

    def _captions(self, root: Path, names: list[str]) -> tuple[dict[str, str] | None, str | None]:
        """Each image's caption and where they came from; (None, None) for none. Every image must
        have one once a source is chosen: ``uncaptioned`` lists those that don't."""
        mode = self.captions_from
        if mode == "auto" and (root / METADATA).is_file():
            mode = "metadata"
        elif mode == "auto":
            mode = "txt" if any((root / caption_file(name)).is_file() for name in names) else "none"
        if mode == "none":
            return None, None
        if mode == "metadata":
            if not (root / METADATA).is_file():
                raise ValueError(
                    f"data.captions=metadata, but {root} has no {METADATA}: add one "
                    '({"file_name": ..., "text": ...} a line), or set data.captions=auto'
                )
            captions, source = read_metadata(root / METADATA, set(names)), METADATA
        else:
            captions, source = read_txt_captions(root, names), ".txt files"
        self.uncaptioned = [name for name in names if name not in captions]
        if self.uncaptioned:
            first = self.uncaptioned[0]
            where = f"no line in {root / METADATA}" if mode == "metadata" else f"no {root / caption_file(first)}"
            raise ValueError(
                f"{root / first} has no caption ({where}; {len(self.uncaptioned)} of {len(names)} images lack one): "
                "add its caption, or set data.captions=none to train without captions"
            )
        return captions, source

    def _pixels(self, root: Path, names: list[str]) -> tuple[np.ndarray | list[np.ndarray], list[str]]:
        """The decoded images (N, C, H, W) and the names of those that decoded, from the cache where it has them;
        bucketed, a list of images of their buckets' sizes."""
        keys = [file_key(root, name) for name in names]
        cache = self._cache_file(root)
        if cache is None:
            cached = {}
        elif self.bucket_sizes is None:
            cached = read_cache(cache, self.image_shape)
        else:
            cached = read_bucket_cache(cache, self.channels, self.bucket_sizes)
        todo = [name for name, key in zip(names, keys, strict=True) if key not in cached]
        with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:  # PIL decodes without the GIL
            decoded = dict(zip(todo, pool.map(self._decode, (root / name for name in todo)), strict=True))
        images, kept, kept_keys, self.skipped = [], [], [], []
        for name, key in zip(names, keys, strict=True):
            image = cached[key] if key in cached else decoded[name]
            if isinstance(image, Exception):
                if not self.skip_unreadable:
                    raise ValueError(
                        f"{root / name} is not a readable image ({joined(image)}): "
                        "replace or remove it, or set data.skip_unreadable=true to skip such files"
                    )
                self.skipped.append(name)
                continue
            images.append(image)
            kept.append(name)
            kept_keys.append(key)
        if self.skipped:
            print(f"image_folder: skipped {len(self.skipped)} unreadable files (e.g. {self.skipped[0]})")
        wrote = any(not isinstance(image, Exception) for image in decoded.values())
        if self.bucket_sizes is not None:  # images of several sizes: grouped by bucket for each split
            if cache and wrote:
                write_bucket_cache(cache, kept_keys, images)
            return images, kept
        pixels = (
            np.stack(images) if images else np.zeros((0, self.channels, self.resolution, self.resolution), np.uint8)
        )
        if cache and wrote:
            write_cache(cache, kept_keys, pixels)
        return pixels, kept

    def _decode(self, path: Path) -> np.ndarray | Exception:
        try:
            return decode(path, self.resolution, self.channels, self.bucket_sizes)
        except UNREADABLE as error:
            return error

    def _square(self, path: Path) -> np.ndarray:
        try:
            return decode(path, self.resolution, self.channels)
        except UNREADABLE as error:
            raise ValueError(
                f"{path} no longer reads as an image ({joined(error)}), as it did when the data was loaded: "
                "restore it, or start the run again"
            ) from None

    def _cache_file(self, root: Path) -> Path | None:
        if self.cache_dir is None:
            return None
        folder = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        size = f"{self.channels}x{self.resolution}x{self.resolution}"
        if self.bucket_sizes is not None:  # the buckets follow from the resolution
            size = f"{self.channels}x{self.resolution}-buckets{STEP}"
        return Path(self.cache_dir).expanduser() / f"{folder}-{size}-v{CACHE_VERSION}.npz"

    def _check_restored(self) -> None:
        theirs, ours = self._restored.get("class_names"), self.class_names
        if "class_names" in self._restored and theirs != ours:
            raise ValueError(
                f"the checkpoint was trained on the classes {_shown(theirs)}, but {self._splits.location} "
                f"has {_shown(ours)}: point data.path at the folder it was trained on"
            )


def list_images(root: Path) -> tuple[list[str], list[str]]:
    """The images below ``root`` and the other files (captions and metadata aside), as sorted
    relative POSIX paths; hidden files and folders are neither."""
    images, others = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for file in files:
            relative = (Path(folder) / file).relative_to(root).as_posix()
            if file.startswith(".") or file.endswith(".txt") or relative == METADATA:
                continue
            (images if file.lower().endswith(IMAGE_SUFFIXES) else others).append(relative)
    return sorted(images), sorted(others)


def labels_of(root: Path, names: list[str], class_names: list[str] | None) -> list[int]:
    """Each image's label: the index of its class subfolder (0 for all in an unlabelled folder)."""
    if class_names is None:
        return [0] * len(names)
    index = {name: label for label, name in enumerate(class_names)}
    for name in names:
        if "/" not in name:
            raise ValueError(
                f"{root / name} lies beside the class subfolders ({_shown(class_names)}): "
                "move it into its class's folder"
            )
    empty = sorted(set(class_names) - {name.split("/")[0] for name in names})
    if empty:
        raise ValueError(f"{root / empty[0]} is a class subfolder with no images: add images or remove it")
    return [index[name.split("/")[0]] for name in names]


def caption_file(name: str) -> str:
    return str(PurePosixPath(name).with_suffix(".txt"))


def read_txt_captions(root: Path, names: list[str]) -> dict[str, str]:
    captions = {}
    for name in names:
        path = root / caption_file(name)
        if path.is_file():
            try:
                captions[name] = path.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8"
                ) from None
    return captions


def read_metadata(path: Path, names: set[str]) -> dict[str, str]:
    """Hugging Face imagefolder's ``metadata.jsonl``: a JSON object a line, with the image's
    ``file_name`` (relative to the folder) and its caption, ``text``; other keys are left alone."""
    captions, lines = {}, {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not JSON ({error.msg}): fix or remove the line") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("file_name"), str)
            or not isinstance(row.get("text"), str)
        ):
            raise ValueError(f'{where} lacks "file_name" or "text" (strings): give each line both')
        name = os.path.normpath(row["file_name"]).replace(os.sep, "/")
        if name not in names:
            what = "is not a PNG, JPEG or WebP image" if (path.parent / name).is_file() else "does not exist"
            raise ValueError(f"{where} names {name}, which {what} in {path.parent}: fix the line or add the image")
        if name in lines:
            raise ValueError(f"{where} names {name} again (line {lines[name]} did first): keep one caption per image")
        captions[name], lines[name] = row["text"], number
    return captions


def decode(path: Path, resolution: int, channels: int, buckets: list[tuple[int, int]] | None = None) -> np.ndarray:
    """uint8 (C, resolution, resolution): the shorter side resized to ``resolution``, then centre-cropped.
    With ``buckets`` ((width, height) each): uint8 (C, height, width) of the bucket whose aspect ratio
    is nearest the image's, the image resized to cover it, then centre-cropped to it."""
    mode = "L" if channels == 1 else "RGB"
    # a square this size is covered by what covers any bucket
    largest = max(max(size) for size in buckets) if buckets else resolution
    with Image.open(path) as image:
        # a JPEG decodes at 1/2 .. 1/8 of its size when that still covers the resolution: a photo's
        # decode is then several times faster
        image.draft(mode, (largest, largest))
        image = ImageOps.exif_transpose(image)  # a camera's rotation, as viewers show the photo
        if image.mode.startswith("I"):  # 16-bit grey: PIL's conversion would clip it at 255
            image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
        image = image.convert(mode)
    if buckets is None:
        image = F.resize(image, resolution, interpolation=InterpolationMode.BICUBIC, antialias=True)
        array = np.asarray(F.center_crop(image, resolution))
    else:
        width, height = buckets[nearest_bucket(image.width, image.height, buckets)]
        scale = max(width / image.width, height / image.height)
        covering = [round(image.height * scale), round(image.width * scale)]
        image = F.resize(image, covering, interpolation=InterpolationMode.BICUBIC, antialias=True)
        array = np.asarray(F.center_crop(image, [height, width]))
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def held_out(names: list[str], fraction: float) -> np.ndarray:
    """Which images validate: those whose path hashes below ``fraction`` (so no image changes
    split when others come or go), at least one, never all."""
    position = np.array([int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") for name in names]) / 2**64
    val = position < fraction
    if not val.any():
        val[position.argmin()] = True
    if val.all():
        val[position.argmax()] = False
    return val


def file_key(root: Path, name: str) -> str:
    """What says an image file is unchanged (as make and pip judge it): its path, size and modification time."""
    stat = (root / name).stat()
    return f"{name}|{stat.st_size}|{stat.st_mtime_ns}"


def read_cache(path: Path, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The cached images by file key; empty when there is no cache, or when it does not read back
    whole (cut short, altered), which the console says: it is then rebuilt, never half-used."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as stored:
            keys, images, checksum = stored["keys"], stored["images"], str(stored["digest"])
        if images.dtype != np.uint8 or images.shape[1:] != shape or len(keys) != len(images):
            raise ValueError(f"it holds {images.dtype} {images.shape[1:]} images, not uint8 {shape}")
        if _checksum(keys, images) != checksum:
            raise ValueError("its images do not match its checksum")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        print(f"image_folder: the cache {path} is unreadable ({joined(error)}): decoding the images again")
        return {}
    return dict(zip(keys.tolist(), images, strict=True))


def write_cache(path: Path, keys: list[str], images: np.ndarray) -> None:
    keys_array = np.array(keys)
    _save(path, keys=keys_array, images=images, digest=np.array(_checksum(keys_array, images)))


def read_bucket_cache(path: Path, channels: int, sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """A bucketed cache's images by file key (``read_cache`` for images of several sizes): each
    image's (width, height) in ``sizes``, an array ``images_<width>x<height>`` per bucket holding
    that bucket's images in the order of ``keys``."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as stored:
            keys, where, checksum = stored["keys"], stored["sizes"], str(stored["digest"])
            if where.shape != (len(keys), 2):
                raise ValueError(f"it holds {len(keys)} keys but sizes of shape {where.shape}")
            found = sorted({(int(width), int(height)) for width, height in where})
            groups = {size: stored[f"images_{size[0]}x{size[1]}"] for size in found}
        for (width, height), images in groups.items():
            members = int(((where[:, 0] == width) & (where[:, 1] == height)).sum())
            expected = (members, channels, height, width)
            if (width, height) not in sizes or images.dtype != np.uint8 or images.shape != expected:
                raise ValueError(f"it holds {images.dtype} {images.shape} images of a bucket {width}x{height}")
        if _checksum(keys, where, *groups.values()) != checksum:
            raise ValueError("its images do not match its checksum")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        print(f"image_folder: the cache {path} is unreadable ({joined(error)}): decoding the images again")
        return {}
    rows = dict.fromkeys(groups, 0)
    cached = {}
    for key, (width, height) in zip(keys.tolist(), where.tolist(), strict=True):
        cached[key] = groups[width, height][rows[width, height]]
        rows[width, height] += 1
    return cached


def write_bucket_cache(path: Path, keys: list[str], images: list[np.ndarray]) -> None:
    """``images`` of several sizes, as ``read_bucket_cache`` reads them."""
    keys_array = np.array(keys)
    where = np.array([(image.shape[2], image.shape[1]) for image in images], dtype=np.int64).reshape(-1, 2)
    groups = {}
    for width, height in sorted({(int(width), int(height)) for width, height in where}):
        groups[f"images_{width}x{height}"] = np.stack(
            [image for image, (w, h) in zip(images, where, strict=True) if (w, h) == (width, height)]
        )
    digest = np.array(_checksum(keys_array, where, *groups.values()))
    _save(path, keys=keys_array, sizes=where, digest=digest, **groups)


def _save(path: Path, **arrays: np.ndarray) -> None:
    """Written whole or not at all (a temporary file renamed): processes that load the same folder
    at once (DDP's) each read a complete cache."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as file:
            temporary = file.name
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except OSError as error:  # a cache that can't be written costs the next run time, nothing else
        print(f"image_folder: could not write the cache {path} ({joined(error)}): the next run decodes again")
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _checksum(keys: np.ndarray, *arrays: np.ndarray) -> str:
    digest = hashlib.sha256("\n".join(keys.tolist()).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _bucket_counts(train: BucketedImages, val: BucketedImages) -> str:
    """``384x640: 3, 512x512: 40, ...``: how many images (both splits) each bucket holds."""
    counts = (a + b for a, b in zip(train.counts(), val.counts(), strict=True))
    return ", ".join(f"{width}x{height}: {count:,}" for (width, height), count in zip(train.sizes, counts, strict=True))


def _shown(names: list[str] | None, limit: int = 5) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
