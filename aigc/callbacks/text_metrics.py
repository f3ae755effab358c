"""BLEU and ROUGE of a language model's continuations of held-out prompts, per validation and at test.

Prompts are evenly spaced windows of the validation text; each continuation is
scored against the true text that follows its prompt. The prompts, their true
continuations and the model's are also saved as a text file with the step.
"""

from typing import Annotated

import torch
from annotated_types import Gt, Le

from aigc.callbacks.image_logging import metrics_step
from aigc.callbacks.scoring import ScoringCallback
from aigc.common import tags
from aigc.common.capabilities import GeneratesText, OffersReferenceText
from aigc.common.constraints import NonNegativeFloat, PositiveInt
from aigc.metrics.text import BLEU_SIGNATURE, ROUGE_KEYS, bleu, rouge


class TextMetrics(ScoringCallback):
    """Logs ``<stage>/bleu`` (sacrebleu, 13a, 0-100) and ``<stage>/rouge1``, ``rouge2``, ``rougeL`` (F, 0-1).

    Needs a model that continues text and data that holds out text to continue
    (``aigc.common.capabilities``: ``GeneratesText``, ``OffersReferenceText``).
    """

    needs_model = (GeneratesText,)
    needs_data = (OffersReferenceText,)

    def __init__(
        self,
        num_prompts: PositiveInt = 50,
        prompt_tokens: PositiveInt = 32,
        continuation_tokens: PositiveInt = 32,
        temperature: NonNegativeFloat = 0.0,
        top_k: PositiveInt | None = None,
        top_p: Annotated[float, Gt(0), Le(1)] | None = None,
        seed: int = 0,
        every_n_epochs: PositiveInt = 1,
    ):
        self.num_prompts = num_prompts
        self.prompt_tokens = prompt_tokens
        self.continuation_tokens = continuation_tokens
        self.decoding = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        self.seed = seed
        self.every_n_epochs = every_n_epochs
        self._prompts: list[tuple[list[int], str]] | None = None

    def logged_metrics(self, model, datamodule) -> list[str]:
        """``val/bleu`` and ``val/rouge1`` ... (``LogsMetrics``), as ``score`` names them."""
        return ["val/bleu", *(f"val/{key}" for key in ROUGE_KEYS)]

    def prompts(self, datamodule) -> list[tuple[list[int], str]]:
        """(prompt ids, true continuation text) pairs, evenly spaced over the validation text."""
        if self._prompts is None:
            ids = datamodule.tokenizer.encode(datamodule.val_text)
            span = self.prompt_tokens + self.continuation_tokens
            if len(ids) < span:
                raise ValueError(f"the validation split has {len(ids)} tokens, fewer than one prompt + continuation")
            starts = torch.linspace(0, len(ids) - span, self.num_prompts).long().unique().tolist()
            self._prompts = [
                (ids[s : s + self.prompt_tokens], datamodule.tokenizer.decode(ids[s + self.prompt_tokens : s + span]))
                for s in starts
            ]
        return self._prompts

    def score(self, trainer, pl_module, stage: str) -> dict[str, float]:
        datamodule = trainer.datamodule
        if not trainer.is_global_zero:
            return {}
        tokenizer = datamodule.tokenizer
        pairs = self.prompts(datamodule)
        with self.own_random_stream(pl_module):
            continuations = [
                tokenizer.decode(
                    pl_module.generate(
                        prompt, max_new_tokens=self.continuation_tokens, seed=self.seed + index, **self.decoding
                    )
                )
                for index, (prompt, _) in enumerate(pairs)
            ]
        truths = [truth for _, truth in pairs]
        metrics = {f"{stage}/bleu": bleu(continuations, truths)}
        metrics |= {f"{stage}/{name}": value for name, value in rouge(continuations, truths).items()}
        pl_module.log_dict(metrics, rank_zero_only=True)

        step = metrics_step(trainer)
        report = "\n\n".join(
            f"--- prompt {i}\n{tokenizer.decode(prompt)}\n--- true continuation\n{truth}\n--- model\n{model}"
            for i, ((prompt, truth), model) in enumerate(zip(pairs, continuations, strict=False))
        )
        described = {
            "num_prompts": str(len(pairs)),
            "prompt_tokens": str(self.prompt_tokens),
            "continuation_tokens": str(self.continuation_tokens),
            "decoding": ", ".join(f"{k}={v}" for k, v in self.decoding.items()),
            "bleu_signature": BLEU_SIGNATURE,
        }
        self.set_tags(trainer, {f"{tags.TEXT_METRICS}{key}": value for key, value in described.items()})
        for logger in trainer.loggers:
            if hasattr(logger, "log_text_artifact"):
                logger.log_text_artifact(report, f"samples/{stage}_step_{step:07d}.txt")
        return metrics
