"""How faithfully a text-to-image model draws what a prompt says: ``val/prompt_acc`` and
``val/prompt_acc_<category>``, the share of images drawn for held-out prompts that the data's
shipped verifier reads as the prompt says (``aigc.metrics.prompt_accuracy``), with a grid per
category: the category's prompts in rows, seeds in columns, each prompt under its row."""

from collections import defaultdict
from typing import Annotated

import torch
from annotated_types import Ge

from aigc.callbacks.image_logging import captioned_grid, save_and_log
from aigc.callbacks.scoring import ScoringCallback
from aigc.common import tags
from aigc.common.capabilities import ConditionedOnText, GeneratesImages, OffersPromptSet
from aigc.common.constraints import PositiveInt
from aigc.metrics.images import to_uint8
from aigc.metrics.prompt_accuracy import prompt_accuracy


class PromptAccuracy(ScoringCallback):
    """Needs a model that draws images of prompts (``GeneratesImages``, ``ConditionedOnText``).

    Data that offers a prompt set and its verifier (``OffersPromptSet``: ``data=shapes``) is scored;
    other data (your own captioned images) has no verifier, and logs nothing, saying so once.
    Every evaluation draws the same ``seeds_per_prompt`` images of each prompt (image ``j`` of a
    prompt from seed ``seed + j``), so runs and steps compare.
    """

    needs_model = (GeneratesImages, ConditionedOnText)

    def __init__(
        self,
        seeds_per_prompt: Annotated[int, Ge(1)] = 8,
        every_n_epochs: PositiveInt = 1,
        seed: int = 2_000_000,
        grid_seeds: Annotated[int, Ge(0)] = 8,
    ):
        self.seeds_per_prompt = seeds_per_prompt
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.grid_seeds = min(grid_seeds, seeds_per_prompt)
        self._told = False

    def logged_metrics(self, model, datamodule) -> list[str]:
        """``val/prompt_acc`` and ``val/prompt_acc_<category>`` on data with a prompt set (``LogsMetrics``)."""
        return ["val/prompt_acc", "val/prompt_acc_*"] if isinstance(datamodule, OffersPromptSet) else []

    def score(self, trainer, pl_module, stage: str) -> dict[str, float]:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, OffersPromptSet) or not datamodule.evaluation_prompts:
            if not self._told:
                print(f"Prompt accuracy: {datamodule.name} has no held-out prompt set and verifier; not scored.")
                self._told = True
            return {}
        prompts = datamodule.evaluation_prompts
        with self.own_random_stream(pl_module), torch.no_grad(), trainer.precision_plugin.forward_context():
            columns = [
                to_uint8(pl_module.sample(len(prompts), seed=self.seed + j, prompts=[p.prompt for p in prompts])).cpu()
                for j in range(self.seeds_per_prompt)
            ]
        drawn = torch.stack(columns, dim=1)  # (prompts, seeds, C, H, W)
        scores = prompt_accuracy(drawn.flatten(0, 1), [p for p in prompts for _ in range(self.seeds_per_prompt)])
        metrics = {f"{stage}/{key}": value for key, value in scores.items()}
        pl_module.log_dict(metrics, sync_dist=True)  # every process scores the same images
        self.set_tags(trainer, self.described(datamodule, len(prompts)))
        if stage == "val" and trainer.is_global_zero and self.grid_seeds:
            self.log_grids(trainer, prompts, drawn)
        return metrics

    def described(self, datamodule, num_prompts: int) -> dict[str, str]:
        return {
            f"{tags.PROMPT_METRICS}verifier": str(datamodule.classifier),
            f"{tags.PROMPT_METRICS}num_prompts": str(num_prompts),
            f"{tags.PROMPT_METRICS}seeds_per_prompt": str(self.seeds_per_prompt),
        }

    def log_grids(self, trainer, prompts, drawn: torch.Tensor) -> None:
        rows = defaultdict(list)
        for index, prompt in enumerate(prompts):
            rows[prompt.category].append(index)
        for category, indices in rows.items():
            images = drawn[indices, : self.grid_seeds].flatten(0, 1)
            picture = captioned_grid(images, self.grid_seeds, [prompts[index].prompt for index in indices])
            save_and_log(trainer, f"prompts/{category}", picture)
