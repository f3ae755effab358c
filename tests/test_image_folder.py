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
