"""Inception Score, FID and KID of a generator's samples, during validation and at test.

Samples come from fixed seeds (the same images for the same weights, on any device), converted
to uint8 once and shared with the evaluation's other scorers (``evaluation_samples``); the
reference is the datamodule's real validation split, whose statistics torch-fidelity caches on
disk.
"""

from collections.abc import Sequence
from typing import Annotated

from annotated_types import Ge

from aigc.callbacks.evaluation_samples import evaluation_samples
from aigc.callbacks.scoring import ScoringCallback
from aigc.common.capabilities import GeneratesImages, OffersReferenceImages
from aigc.common.constraints import PositiveInt
from aigc.common.tags import IMAGE_METRICS
from aigc.metrics.fidelity import INCEPTION, ISC_SPLITS, fidelity_tags, metric_key, score_images


class ImageMetrics(ScoringCallback):
    """Logs each of ``measures`` (FID, IS, KID) as ``<stage>/fid`` ... (Inception) and ``<stage>/fid_<c>`` ...
    (the in-package classifier that fits the data, e.g. ``fid_mnist``), and tags what was measured.

    Needs a model that generates images and data that offers reference images
    (``aigc.common.capabilities``: ``GeneratesImages``, ``OffersReferenceImages``).
    """

    needs_model = (GeneratesImages,)
    needs_data = (OffersReferenceImages,)

    def __init__(
        self,
        num_samples: Annotated[int, Ge(ISC_SPLITS)] = 5000,  # IS is a mean over ISC_SPLITS splits
        every_n_epochs: PositiveInt = 1,
        seed: int = 1_000_000,
        batch_size: PositiveInt = 500,
        inception: bool = True,
        inception_weights: str | None = None,
        cache_dir: str = ".cache/fidelity",
        measures: Sequence[str] = ("fid", "is"),
    ):
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.batch_size = batch_size
        self.inception = inception
        self.inception_weights = inception_weights
        self.cache_dir = cache_dir
        self.measures = list(measures)
        for measure in self.measures:
            metric_key(measure, INCEPTION)  # an unknown measure is an error now, not at the first validation

    def extractors(self, datamodule) -> list[str]:
        """Inception (unless turned off) and the in-package classifier of the data, if it has one."""
        extractors = [INCEPTION] if self.inception else []
        if getattr(datamodule, "classifier", None):
            extractors.append(datamodule.classifier)
        return extractors

    def logged_metrics(self, model, datamodule) -> list[str]:
        """``val/<measure>`` of every extractor (``LogsMetrics``), as ``score`` names them."""
        return [f"val/{metric_key(measure, e)}" for e in self.extractors(datamodule) for measure in self.measures]

    def score(self, trainer, pl_module, stage: str) -> dict[str, float]:
        datamodule = trainer.datamodule
        extractors = self.extractors(datamodule)
        if not extractors:
            return {}
        reference = datamodule.real_images("val")
        reference_key = f"{datamodule.name}-val-{datamodule.source.digest}"
        # torch-fidelity's DataLoaders draw from the global RNG, and only while the reference
        # statistics are not cached yet: without the fork, a cache hit would change training.
        with self.own_random_stream(pl_module):
            fake = evaluation_samples(trainer, pl_module, self.num_samples, self.seed, self.batch_size).images
            scores = score_images(
                fake=fake,
                reference=reference,
                reference_key=reference_key,
                extractors=extractors,
                cache_dir=self.cache_dir,
                inception_weights=self.inception_weights,
                batch_size=self.batch_size,
                measures=self.measures,
            )
        if INCEPTION in extractors and metric_key(self.measures[0], INCEPTION) not in scores:
            self.inception = False  # no weights: warned once, not again at every validation
            extractors.remove(INCEPTION)
        tags = fidelity_tags(extractors, self.num_samples, len(reference), reference_key, self.inception_weights)
        # how the samples were drawn (a diffusion model's sampler, steps and guidance): compare like with like
        drawn = getattr(pl_module, "sampling_options", {})
        self.set_tags(trainer, tags | {f"{IMAGE_METRICS}{name}": str(value) for name, value in drawn.items()})
        metrics = {f"{stage}/{name}": value for name, value in scores.items()}
        # every process scores the same samples from the same seeds, so values agree across processes
        pl_module.log_dict(metrics, sync_dist=True)
        return metrics
