"""The accuracy of a class-conditional generator: how often the data's classifier names the label
each sample was drawn for, after the validations that score images and at test."""

from typing import Annotated

from annotated_types import Ge

from aigc.callbacks.evaluation_samples import evaluation_samples
from aigc.callbacks.scoring import ScoringCallback
from aigc.common.capabilities import ConditionedOnLabels, GeneratesImages, OffersReferenceImages
from aigc.common.constraints import PositiveInt
from aigc.metrics.label_accuracy import accuracy_key, label_accuracy


class LabelAccuracy(ScoringCallback):
    """Logs ``<stage>/acc_<classifier>`` (``val/acc_mnist``) over the evaluation's samples, the
    same ones the image metrics score (``evaluation_samples``), drawn for every class in turn.

    Needs a model that generates images for labels (``GeneratesImages``, ``ConditionedOnLabels``)
    and data that offers reference images with a classifier (``OffersReferenceImages``). An
    unconditional model (``num_classes`` null) and data without a classifier log nothing.
    """

    needs_model = (GeneratesImages, ConditionedOnLabels)
    needs_data = (OffersReferenceImages,)

    def __init__(
        self,
        num_samples: Annotated[int, Ge(1)] = 5000,
        every_n_epochs: PositiveInt = 1,
        seed: int = 1_000_000,
        batch_size: PositiveInt = 500,
    ):
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.batch_size = batch_size

    def logged_metrics(self, model, datamodule) -> list[str]:
        """``val/acc_<classifier>`` for a conditional model on data with a classifier (``LogsMetrics``)."""
        classifier = getattr(datamodule, "classifier", None)
        if classifier is None or getattr(model, "num_classes", None) is None:
            return []
        return [f"val/{accuracy_key(classifier)}"]

    def score(self, trainer, pl_module, stage: str) -> dict[str, float]:
        classifier = trainer.datamodule.classifier
        if classifier is None or pl_module.num_classes is None:
            return {}
        with self.own_random_stream(pl_module):
            samples = evaluation_samples(trainer, pl_module, self.num_samples, self.seed, self.batch_size)
        metrics = {f"{stage}/{accuracy_key(classifier)}": label_accuracy(samples.images, samples.labels, classifier)}
        pl_module.log_dict(metrics, sync_dist=True)  # every process scores the same samples
        return metrics
