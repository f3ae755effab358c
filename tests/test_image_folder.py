"""data=image_folder: any folder of images, its labels from class subfolders, its captions from
metadata.jsonl or .txt files, cached once decoded; each bad input refused in one line."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

import aigc.data.image_folder as image_folder
from aigc.config.resolvers import class_count
from aigc.config.validation import ConfigError, validate
from aigc.data.buckets import BucketBatchDataset, BucketBatches, BucketedImages, blank, bucket_sizes
from aigc.data.image_folder import ImageFolderDataModule, held_out


def draw(path: Path, color=(200, 30, 30), size=(12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def classes_folder(root: Path) -> Path:
    for name, color in {"cat": (250, 0, 0), "dog": (0, 250, 0), "emu": (0, 0, 250)}.items():
        for i in range(3):
            draw(root / name / f"{i}.png", color)
    return root


def flat_folder(root: Path, count: int = 6) -> Path:
    for i in range(count):
        draw(root / f"{i:02d}.png", (i * 40, 100, 50))
    return root


def datamodule(path: Path, cache_dir: Path | None = None, **options) -> ImageFolderDataModule:
    resolution, channels = options.pop("resolution", 8), options.pop("channels", 3)
    return ImageFolderDataModule(
        path=str(path),
        image_shape=[channels, resolution, resolution],
        resolution=resolution,
        channels=channels,
        num_classes=options.pop("num_classes", class_count(str(path))),
        cache=cache_dir is not None,
        cache_dir=None if cache_dir is None else str(cache_dir),
        batch_size=2,
        **options,
    )


def loaded(path: Path, cache_dir: Path | None = None, **options) -> ImageFolderDataModule:
    data = datamodule(path, cache_dir, **options)
    data.setup("fit")
    return data


def refusal(path: Path, **options) -> str:
    with pytest.raises(ValueError) as refused:
        loaded(path, **options)
    message = str(refused.value)
    assert "\n" not in message
    return message


def all_labels(data: ImageFolderDataModule) -> list[int]:
    return sorted(data._splits.train_labels.tolist() + data._splits.val_labels.tolist())


def test_labels_and_class_names_come_from_the_subfolders(tmp_path):
    data = loaded(classes_folder(tmp_path / "animals"))
    assert data.class_names == ["cat", "dog", "emu"] and data.num_classes == 3
    assert all_labels(data) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    red = data.real_images("train")[torch.from_numpy(data._splits.train_labels == 0)]
    assert (red[:, 0] > 200).all() and (red[:, 1:] < 50).all()  # label 0 is cat, the red ones
    assert data.state_dict() == {"class_names": ["cat", "dog", "emu"], "caption_source": None}
    assert data.source.location == str((tmp_path / "animals").resolve())
    assert (data.source.num_train, data.source.num_val) == (8, 1)


def test_a_flat_folder_is_unlabelled(tmp_path):
    data = loaded(flat_folder(tmp_path / "flat"))
    assert data.num_classes is None and data.class_names is None
    assert set(all_labels(data)) == {0}


def test_captions_from_metadata_jsonl(tmp_path):
    root = flat_folder(tmp_path / "pics", 4)
    rows = [{"file_name": f"{i:02d}.png", "text": f"picture {i}", "score": i} for i in range(4)]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    data = loaded(root)
    assert data.captioned and data.caption_source == "metadata.jsonl"
    captions = data.captions("train") + data.captions("val")
    assert sorted(captions) == [f"picture {i}" for i in range(4)]
    images, labels, texts = next(iter(data.val_dataloader()))
    assert list(texts) == data.captions("val")
    assert data.state_dict()["caption_source"] == "metadata.jsonl"


def test_captions_follow_their_images(tmp_path):
    root = tmp_path / "pics"
    for i in range(5):
        draw(root / f"{i}.png", (i * 50, 0, 0))
        (root / f"{i}.txt").write_text(f"red {i * 50}\n")
    data = loaded(root, val_fraction=0.4)
    assert data.caption_source == ".txt files"
    for split in ("train", "val"):
        for image, caption in zip(data.real_images(split), data.captions(split), strict=True):
            assert caption == f"red {int(image[0, 4, 4])}"


def test_resized_on_the_shorter_side_and_centre_cropped(tmp_path):
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 255, 0), (10, 0, 30, 20))  # the middle half is green: all that a centre crop keeps
    tall = Image.new("RGB", (20, 40), (0, 0, 255))
    tall.paste((0, 255, 0), (0, 10, 20, 30))
    for name, image in (("wide.png", wide), ("tall.png", tall)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        image.save(tmp_path / name)
    data = loaded(tmp_path, resolution=10)
    images = torch.cat([data.real_images("train"), data.real_images("val")])
    assert images.shape == (2, 3, 10, 10)
    inner = images[:, :, 1:-1, 1:-1]  # bicubic blurs the crop's edges a little
    assert (inner[:, 1] > 240).all() and (inner[:, 0] < 15).all() and (inner[:, 2] < 15).all()


def test_one_channel_is_grey(tmp_path):
    root = flat_folder(tmp_path / "flat", 3)
    data = loaded(root, channels=1)
    assert tuple(data.real_images("train").shape[1:]) == (1, 8, 8)
    greys = {int(Image.open(root / f"{i:02d}.png").convert("L").getpixel((0, 0))) for i in range(3)}
    found = {int(image[0, 4, 4]) for split in ("train", "val") for image in data.real_images(split)}
    assert found == greys


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    for i, level in enumerate((0x1000, 0x8000, 0xF000)):
        Image.fromarray(np.full((8, 8), level, dtype=np.uint16)).save(tmp_path / f"{i}.png")
    data = loaded(tmp_path, channels=1, val_fraction=0.3)
    found = {int(image[0, 4, 4]) for split in ("train", "val") for image in data.real_images(split)}
    assert found == {0x10, 0x80, 0xF0}


def test_the_cache_returns_the_same_images_and_a_changed_file_misses_it(tmp_path, monkeypatch):
    root, cache = flat_folder(tmp_path / "flat"), tmp_path / "cache"
    decoded = []
    real_decode = image_folder.decode
    monkeypatch.setattr(
        image_folder, "decode", lambda path, *args: decoded.append(path.name) or real_decode(path, *args)
    )
    first = loaded(root, cache)
    assert len(decoded) == 6 and len(list(cache.glob("*.npz"))) == 1
    decoded.clear()
    second = loaded(root, cache)
    assert decoded == []
    for split in ("train", "val"):
        assert torch.equal(first.real_images(split), second.real_images(split))
    assert first.source.digest == second.source.digest
    draw(root / "03.png", (1, 2, 3))
    os.utime(root / "03.png", ns=(1, 1))  # a new modification time, however coarse the file system's clock
    third = loaded(root, cache)
    assert decoded == ["03.png"]
    assert third.source.digest != first.source.digest
    assert loaded(root, cache, resolution=4).real_images().shape[-1] == 4  # another size, another cache


@pytest.mark.parametrize("damage", ["garbage", "altered"])
def test_a_damaged_cache_is_rebuilt_and_said_so(tmp_path, capsys, damage):
    root, cache = flat_folder(tmp_path / "flat"), tmp_path / "cache"
    first = loaded(root, cache)
    (file,) = cache.glob("*.npz")
    if damage == "garbage":
        file.write_bytes(b"not a zip")
    else:  # arrays that read back, but are not what was written
        with np.load(file) as stored:
            parts = dict(stored)
        parts["images"][0, 0, 0, 0] ^= 0xFF
        np.savez(file, **parts)
    again = loaded(root, cache)
    assert "is unreadable" in capsys.readouterr().out
    assert torch.equal(first.real_images("train"), again.real_images("train"))


def test_a_file_that_is_not_an_image_is_refused_naming_it(tmp_path):
    root = flat_folder(tmp_path / "flat")
    (root / "05.png").write_text("not a png")
    message = refusal(root)
    assert str(root / "05.png") in message and "data.skip_unreadable=true" in message


def test_a_truncated_image_is_refused_naming_it(tmp_path):
    root = flat_folder(tmp_path / "flat")
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    noisy.save(root / "noisy.png")
    (root / "noisy.png").write_bytes((root / "noisy.png").read_bytes()[:3000])
    assert str(root / "noisy.png") in refusal(root)


def test_skip_unreadable_skips_and_counts(tmp_path, capsys):
    root = flat_folder(tmp_path / "flat")
    (root / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "worse.webp").write_text("")
    data = loaded(root, skip_unreadable=True)
    assert data.skipped == ["bad.jpg", "worse.webp"]
    assert data.source.num_train + data.source.num_val == 6
    assert "skipped 2 unreadable files" in capsys.readouterr().out


def test_an_empty_or_missing_folder_is_refused(tmp_path):
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    assert "holds no PNG, JPEG or WebP images" in refusal(tmp_path / "empty")
    assert f"data.path={tmp_path / 'nowhere'} does not exist" in refusal(tmp_path / "nowhere")


def test_an_image_without_its_caption_is_named(tmp_path):
    root = flat_folder(tmp_path / "meta", 4)
    (root / "metadata.jsonl").write_text('{"file_name": "00.png", "text": "a"}\n{"file_name": "02.png", "text": "b"}\n')
    data = datamodule(root)
    with pytest.raises(ValueError, match="01.png has no caption") as refused:
        data.setup()
    assert "\n" not in str(refused.value) and "data.captions=none" in str(refused.value)
    assert data.uncaptioned == ["01.png", "03.png"]
    txt = flat_folder(tmp_path / "txt", 3)
    (txt / "00.txt").write_text("only one")
    assert f"{txt / '01.png'} has no caption (no {txt / '01.txt'}" in refusal(txt)
    assert loaded(txt, captions="none").captioned is False


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"file_name": "gone.png", "text": "a"}', "line 2 names gone.png, which does not exist"),
        ("{not json", "line 2 is not JSON"),
        ('{"file_name": "01.png"}', 'line 2 lacks "file_name" or "text"'),
        ('{"file_name": "00.png", "text": "again"}', "line 2 names 00.png again (line 1 did first)"),
    ],
)
def test_a_bad_metadata_line_is_refused_with_its_number(tmp_path, line, expected):
    root = flat_folder(tmp_path / "meta", 2)
    (root / "metadata.jsonl").write_text('{"file_name": "00.png", "text": "a"}\n' + line + "\n")
    message = refusal(root)
    assert f"{root / 'metadata.jsonl'} {expected}" in message


def test_asking_for_metadata_that_is_not_there_is_refused(tmp_path):
    assert "has no metadata.jsonl" in refusal(flat_folder(tmp_path / "flat"), captions="metadata")


def test_images_beside_class_folders_and_a_wrong_class_count_are_refused(tmp_path):
    root = classes_folder(tmp_path / "animals")
    assert "data.num_classes=5, but" in refusal(root, num_classes=5)
    draw(root / "stray.png")
    assert f"{root / 'stray.png'} lies beside the class subfolders (cat, dog, emu)" in refusal(root)


def test_the_validation_split_stays_when_files_are_added(tmp_path):
    names = [f"{i}.png" for i in range(200)]
    before = dict(zip(names, held_out(names, 0.1), strict=True))
    more = names + [f"new{i}.png" for i in range(100)]
    after = dict(zip(more, held_out(more, 0.1), strict=True))
    assert all(after[name] == val for name, val in before.items())
    assert 5 < sum(before.values()) < 40
    assert held_out(["a.png", "b.png"], 0.01).sum() == 1


def test_flips_are_drawn_from_the_seed_and_the_batch_number(tmp_path):
    data = loaded(flat_folder(tmp_path / "flat"), flip=True)
    images = torch.arange(64 * 4, dtype=torch.float32).view(64, 1, 2, 2)
    progress = SimpleNamespace(total=SimpleNamespace(ready=7))
    data.trainer = SimpleNamespace(
        training=True, global_rank=0, fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    )
    flipped, labels = data.on_before_batch_transfer((images, torch.zeros(64)), 0)
    mirrored = (flipped != images).flatten(1).any(1)
    assert 16 < mirrored.sum() < 48 and torch.equal(flipped[mirrored], images[mirrored].flip(-1))
    assert torch.equal(data.on_before_batch_transfer((images, labels), 0)[0], flipped)  # the same batch: the same flips
    progress.total.ready = 8
    assert not torch.equal(data.on_before_batch_transfer((images, labels), 0)[0], flipped)
    data.trainer.training = False
    assert data.on_before_batch_transfer((images, labels), 0)[0] is images


def test_a_checkpoint_of_other_classes_is_refused(tmp_path):
    data = loaded(classes_folder(tmp_path / "animals"))
    data.load_state_dict(data.state_dict())
    with pytest.raises(ValueError, match="trained on the classes ant, bee, but"):
        data.load_state_dict({"class_names": ["ant", "bee"], "caption_source": None})


def test_the_resolver_counts_class_subfolders(tmp_path):
    assert class_count(str(classes_folder(tmp_path / "animals"))) == 3
    (tmp_path / "animals" / ".ipynb_checkpoints").mkdir()
    assert class_count(str(tmp_path / "animals")) == 3
    assert class_count(str(flat_folder(tmp_path / "flat"))) is None
    assert class_count(str(tmp_path / "nowhere")) is None


def test_the_composed_config_reads_the_class_count_from_the_folder(compose_cfg, tmp_path):
    root = classes_folder(tmp_path / "animals")
    cfg = compose_cfg("model=diffusion", "data=image_folder", f"data.path={root}", "data.resolution=16")
    assert cfg.data.num_classes == 3 and cfg.model.num_classes == 3
    assert list(cfg.data.image_shape) == [3, 16, 16]
    validate(cfg)
    data = instantiate(cfg.data)
    data.setup("fit")
    assert data.class_names == ["cat", "dog", "emu"]
    flat = compose_cfg("model=diffusion", "data=image_folder", f"data.path={flat_folder(tmp_path / 'flat')}")
    assert flat.model.num_classes is None
    validate(flat)
    typed = compose_cfg("data=image_folder", f"data.path={root}", "data.image_shape=[1,32,32]")
    with pytest.raises(ConfigError, match=r"set data.channels and data.resolution only \(image_shape interpolates"):
        validate(typed)


def aspect_folder(root: Path) -> Path:
    """Wide (red), tall (blue) and squarish (green) images of several sizes, each captioned with its kind."""
    sizes = {
        "wide": ((80, 40), (90, 50), (70, 42), (100, 56)),
        "tall": ((40, 80), (50, 90), (42, 70), (56, 100)),
        "square": ((30, 30), (40, 38), (50, 52)),
    }
    colours = {"wide": (250, 0, 0), "tall": (0, 0, 250), "square": (0, 250, 0)}
    for kind, shapes in sizes.items():
        for i, size in enumerate(shapes):
            draw(root / f"{kind}{i}.png", colours[kind], size)
            (root / f"{kind}{i}.txt").write_text(f"{kind} {i}")
    return root


# (height, width) of each kind's bucket at resolution 256 (buckets 192x320, 256x256, 320x192)
BUCKET_OF = {"wide": (192, 320), "tall": (320, 192), "square": (256, 256)}
CHANNEL_OF = {"wide": 0, "square": 1, "tall": 2}


def bucketed(root: Path, cache_dir: Path | None = None, batch_size: int = 2, **options) -> ImageFolderDataModule:
    data = loaded(root, cache_dir, resolution=256, buckets=True, **{"val_fraction": 0.3, **options})
    data.batch_size = batch_size  # read by the loaders only
    return data


def captions_of(loader, count: int | None = None) -> list[list[str]]:
    taken = []
    for batch in loader:
        taken.append(list(batch[2]))
        if len(taken) == count:
            break
    return taken


@pytest.mark.parametrize("resolution", [192, 256, 512, 768, 1024])
def test_bucket_sizes_are_multiples_of_64_within_the_area_from_1_to_2_to_2_to_1(resolution):
    sizes = bucket_sizes(resolution)
    area = resolution**2
    assert (resolution, resolution) in sizes and sizes == sorted(set(sizes))
    assert {(height, width) for width, height in sizes} == set(sizes)  # landscapes and portraits alike
    for width, height in sizes:
        assert width % 64 == 0 and height % 64 == 0 and width * height <= area and 0.5 <= width / height <= 2
        assert width * (height + 64) > area or (width + 64) * height > area  # no side could grow within the area
    if resolution == 512:
        assert sizes == [(384, 640), (448, 576), (512, 512), (576, 448), (640, 384)]


def test_buckets_group_images_by_aspect_ratio_and_each_batch_is_one_bucket(tmp_path, capsys):
    data = bucketed(aspect_folder(tmp_path / "pics"), batch_size=3)
    printed = capsys.readouterr().out
    assert "image_folder buckets (width x height: images): 192x320: 4, 256x256: 3, 320x192: 4" in printed
    assert data.image_shape == (3, 256, 256)  # what the model draws
    seen = []
    for images, labels, captions in data.train_dataloader():
        kinds = {caption.split()[0] for caption in captions}
        assert len(kinds) == 1, captions  # one bucket a batch
        (kind,) = kinds
        assert tuple(images.shape[2:]) == BUCKET_OF[kind] and images.shape[0] == len(captions) == len(labels)
        assert (images[:, CHANNEL_OF[kind]] > 0.9).all()
        seen += captions
    assert sorted(seen) == sorted(data.captions("train"))  # every training image once an epoch
    val = [caption for batch in captions_of(data.val_dataloader()) for caption in batch]
    assert val == data.captions("val")  # in order: by bucket, then by name
    squares = data.real_images("val")  # the FID reference: square, at the resolution
    assert squares.dtype == torch.uint8 and tuple(squares.shape) == (len(val), 3, 256, 256)
    for square, caption in zip(squares, data.captions("val"), strict=True):
        assert square[CHANNEL_OF[caption.split()[0]], 128, 128] > 240


def test_a_bucketed_image_is_resized_to_cover_its_bucket_and_centre_cropped(tmp_path):
    wide = Image.new("RGB", (120, 40), (255, 0, 0))
    wide.paste((0, 255, 0), (20, 0, 100, 40))  # a 3:1 image: the 320x192 bucket keeps its middle 5/9
    wide.save(tmp_path / "wide.png")
    draw(tmp_path / "square.png", (0, 0, 255), (40, 40))
    data = bucketed(tmp_path, val_fraction=0.5)
    batches = list(data.train_dataloader()) + list(data.val_dataloader())
    by_width = {int(batch[0].shape[-1]): batch[0] for batch in batches}
    assert set(by_width) == {320, 256} and tuple(by_width[320].shape) == (1, 3, 192, 320)
    inner = by_width[320][0, :, 2:-2, 2:-2]
    assert (inner[1] > 0.9).all() and (inner[0] < -0.9).all()  # all green: the red sides were cut off
    assert (by_width[256][0, 2] > 0.9).all()


def test_bucketed_batches_follow_the_seed_and_resume_in_the_middle_of_an_epoch(tmp_path):
    root = aspect_folder(tmp_path / "pics")

    def seeded(seed: int) -> ImageFolderDataModule:
        data = bucketed(root, batch_size=2)
        data.shuffle_seed = seed
        return data

    whole = captions_of(seeded(7).train_dataloader())
    assert whole == captions_of(seeded(7).train_dataloader())
    assert whole != captions_of(seeded(8).train_dataloader())
    interrupted = seeded(7).train_dataloader()
    assert captions_of(interrupted, 2) == whole[:2]
    state = interrupted.state_dict()  # in a checkpoint written after the second step
    resumed = seeded(7).train_dataloader()
    resumed.load_state_dict(state)
    assert captions_of(resumed) == whole[2:]


def test_bucket_batches_are_drawn_per_epoch_and_shared_out_among_processes():
    buckets = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 0, 2])
    everyone = list(range(len(buckets)))

    def sampler(epoch: int = 0, shuffle: bool = True, **sharing) -> BucketBatches:
        batches = BucketBatches(buckets, 2, shuffle, seed=3, **sharing)
        batches.begin_epoch(epoch)
        return batches

    first = sampler().batches()
    assert all(len({buckets[i] for i in batch}) == 1 for batch in first)
    assert sorted(sum(first, [])) == everyone and len(sampler()) == len(first) == 8  # 3 short batches kept
    assert sampler().batches() == first and sampler(epoch=1).batches() != first
    shares = [sampler(processes=3, rank=rank).batches() for rank in range(3)]
    assert [len(share) for share in shares] == [3, 3, 3] == [len(sampler(processes=3, rank=r)) for r in range(3)]
    assert [shares[k % 3][k // 3] for k in range(9)] == first + first[:1]  # dealt out, the first again at the end
    # evaluation: buckets in order, each process every other image of each bucket, blanks to even out
    evaluation = [sampler(shuffle=False, processes=2, rank=rank).batches() for rank in range(2)]
    assert len(evaluation[0]) == len(evaluation[1]) == len(sampler(shuffle=False, processes=2, rank=1))
    real = sorted(i for share in evaluation for batch in share for i in batch if i >= 0)
    assert real == everyone
    assert sampler(shuffle=False).batches() == [[0, 3], [6, 7], [11], [1, 4], [8], [2, 5], [9, 10], [12]]
    sizes = [(2, 4), (3, 3), (4, 2)]
    images = BucketedImages.group(
        [np.full((1, sizes[b][1], sizes[b][0]), i, np.uint8) for i, b in enumerate(buckets)], sizes, 1
    )
    dataset = BucketBatchDataset(images, np.arange(len(buckets)), [f"image {i}" for i in everyone])
    assert evaluation[1] == [[3, 7], [blank(0)], [4, blank(1)], [5, 10], [blank(2)]]
    padded = evaluation[1][2]
    pixels, labels, captions = dataset[padded]
    width, height = sizes[buckets[padded[0]]]
    assert tuple(pixels.shape[2:]) == (height, width) and labels[-1] == -1 and captions[-1] == ""
    assert labels[0] == padded[0] == round(pixels[0].max().item() * 127.5 + 127.5)  # the image of its index


def test_the_bucketed_cache_keeps_an_array_per_bucket(tmp_path, monkeypatch):
    root, cache = aspect_folder(tmp_path / "pics"), tmp_path / "cache"
    decoded = []
    real_decode = image_folder.decode
    monkeypatch.setattr(
        image_folder, "decode", lambda path, *args: decoded.append(path.name) or real_decode(path, *args)
    )
    first = bucketed(root, cache)
    assert len(decoded) == 11
    (file,) = cache.glob("*.npz")
    with np.load(file) as stored:
        assert {name for name in stored.files if name.startswith("images_")} == {
            "images_192x320",
            "images_256x256",
            "images_320x192",
        }
    decoded.clear()
    second = bucketed(root, cache)
    assert decoded == [] and second.source.digest == first.source.digest
    assert captions_of(second.train_dataloader()) == captions_of(first.train_dataloader())
    loaded(root, cache, resolution=256)  # square: a cache of its own
    assert len(list(cache.glob("*.npz"))) == 2 and len(decoded) == 11


def test_buckets_need_a_resolution_that_is_a_multiple_of_64(tmp_path, compose_cfg):
    root = aspect_folder(tmp_path / "pics")
    message = refusal(root, resolution=200, buckets=True)
    assert "data.resolution=200 is not a multiple of 64, which data.buckets=true needs" in message
    assert "data.resolution=192 or 256" in message
    cfg = compose_cfg("data=image_folder", f"data.path={root}", "data.resolution=200", "data.buckets=true")
    with pytest.raises(ConfigError, match="data.resolution=200 is not a multiple of 64"):
        validate(cfg)
    assert loaded(root, resolution=200).bucket_sizes is None  # without buckets, any resolution
