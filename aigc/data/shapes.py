"""``data=shapes``: compositional scenes with captions, generated from a seed (``aigc.data.scenes``).

Training images are scenes that never show a held-out combination, with captions in varied
wordings; validation images are real scenes of the held-out evaluation prompts (their captions
are the prompts), so FID compares a generator with what it should draw for prompts it never saw.
Batches are ``(image, label, caption)``; the label is always 0 (the scenes have captions, not
classes). Nothing is downloaded or cached: 20,000 scenes take a few seconds to draw.
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np

from aigc.common.constraints import NonNegativeInt, PositiveInt
from aigc.data.images import ImageDataModule, ImageSplits
from aigc.data.scenes import (
    MIN_RESOLUTION,
    VERSION,
    evaluation_prompts,
    held_out_scenes,
    render_scenes,
    training_scenes,
)


class ShapesDataModule(ImageDataModule):
    """Args:
    data_dir: unused (the scenes are drawn in memory); taken as every datamodule takes it.
    image_shape: (3, resolution, resolution), interpolated from ``resolution`` in the config.
    resolution: the side of the images; at least ``scenes.MIN_RESOLUTION``.
    num_train, num_val: how many training scenes and held-out (validation) scenes.
    seed: the scenes and their jitter follow from it (not from the run's seed: every run of a
        seed trains on the same data).
    num_classes: null: the scenes have captions, not classes.
    captions: where the captions come from: the grammar of ``aigc.data.scenes``.
    """

    name = "shapes"
    classifier = "shapes-verifier"  # aigc.metrics.shapes_verifier: fid_shapes, prompt accuracy

    def __init__(
        self,
        data_dir: str,
        image_shape: Sequence[int],
        resolution: PositiveInt = 32,
        num_train: PositiveInt = 20_000,
        num_val: PositiveInt = 1_000,
        seed: NonNegativeInt = 0,
        num_classes: None = None,
        captions: Literal["grammar"] = "grammar",
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        fid_metric: str = "val/fid_shapes",
    ):
        self.check_arguments(resolution=resolution, image_shape=image_shape)
        # one class (every label 0) for the base's label check; None outside it (see setup)
        super().__init__(
            data_dir, image_shape, num_classes=1, batch_size=batch_size, num_workers=num_workers, fid_metric=fid_metric
        )
        self.num_classes = num_classes
        self.resolution = resolution
        self.num_train, self.num_val, self.seed = num_train, num_val, seed
        # what the generator is scored on (prompt accuracy): the same for every run
        self.evaluation_prompts = evaluation_prompts()

    @staticmethod
    def check_arguments(resolution: int, image_shape: Sequence[int], **_) -> None:
        if resolution < MIN_RESOLUTION:
            raise ValueError(
                f"data.resolution={resolution} is below the minimum of {MIN_RESOLUTION} for data=shapes "
                f"(smaller scenes don't hold the shapes recognisably, and the verifier reads {MIN_RESOLUTION} px)"
            )
        if list(image_shape) != [3, resolution, resolution]:
            raise ValueError(
                f"data.image_shape={list(image_shape)} must be [3, {resolution}, {resolution}]: "
                "set data.resolution only (image_shape interpolates it)"
            )

    def load(self) -> ImageSplits:
        train = training_scenes(self.num_train, self.seed)
        val = held_out_scenes(self.num_val, self.seed)
        splits = ImageSplits(
            train_images=render_scenes(train, self.resolution, np.random.default_rng([self.seed, 0])),
            train_labels=np.zeros(len(train), dtype=np.int64),
            val_images=render_scenes(val, self.resolution, np.random.default_rng([self.seed, 1])),
            val_labels=np.zeros(len(val), dtype=np.int64),
            source="generated",
            location=f"aigc.data.scenes v{VERSION}, seed {self.seed}",
            train_captions=[scene.caption for scene in train],
            val_captions=[scene.caption for scene in val],
            caption_source="grammar",
        )
        print(f"shapes source: generated ({splits.location}): {len(train):,} training scenes, {len(val):,} held-out")
        return splits
