"""``val/clip_score``: how well a text-to-image model's images match their prompts by a CLIP model
(torchmetrics' formula, ``aigc.metrics.clip_score``), when one is configured (``metrics.clip_model``)."""

from typing import Annotated

from annotated_types import Ge, MinLen

from aigc.callbacks.evaluation_samples import evaluation_samples
from aigc.callbacks.scoring import ScoringCallback
from aigc.common import tags
from aigc.common.capabilities import ConditionedOnText, GeneratesImages
from aigc.common.constraints import PositiveInt
from aigc.metrics.clip_score import clip_score, load_clip


class ClipScore(ScoringCallback):
    """Logs ``<stage>/clip_score`` over the evaluation's samples, the same ones the image metrics
    score (``evaluation_samples``: drawn once, for the data's validation captions in turn), each
    against the caption it was drawn for.

    Needs a model that draws images of prompts (``GeneratesImages``, ``ConditionedOnText``).
    ``clip_model`` (a hub name or ``save_pretrained`` folder) is loaded when the callback is built,
    so that one that can't be had stops the command before any run exists; without one nothing is
    scored, which the first evaluation says in one line.
    """

    needs_model = (GeneratesImages, ConditionedOnText)

    def __init__(
        self,
        clip_model: Annotated[str, MinLen(1)] | None = None,
        num_samples: Annotated[int, Ge(1)] = 5000,
        every_n_epochs: PositiveInt = 1,
        seed: int = 1_000_000,
        batch_size: PositiveInt = 500,
    ):
        self.clip_model = clip_model
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.batch_size = batch_size
        self._told = False
        if clip_model is not None:
            load_clip(clip_model)

    def logged_metrics(self, model, datamodule) -> list[str]:
        """``val/clip_score`` when a CLIP model is configured (``LogsMetrics``)."""
        return ["val/clip_score"] if self.clip_model is not None else []

    def score(self, trainer, pl_module, stage: str) -> dict[str, float]:
        if self.clip_model is None:
            if not self._told and trainer.is_global_zero:
                print("CLIP score: no CLIP model configured (metrics.clip_model=<hub name or folder>); not scored.")
            self._told = True
            return {}
        with self.own_random_stream(pl_module):
            samples = evaluation_samples(trainer, pl_module, self.num_samples, self.seed, self.batch_size)
        value = clip_score(samples.images, samples.prompts, self.clip_model, device=pl_module.device)
        metrics = {f"{stage}/clip_score": value}
        pl_module.log_dict(metrics, sync_dist=True)  # every process scores the same samples
        self.set_tags(
            trainer,
            {
                f"{tags.PROMPT_METRICS}clip_model": self.clip_model,
                f"{tags.PROMPT_METRICS}clip_num_samples": str(self.num_samples),
            },
        )
        return metrics
