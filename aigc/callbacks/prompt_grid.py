"""A grid of a text-to-image model's images for fixed prompts after every N-th epoch's validation:
a row per prompt, a column per seed, the prompt written under its row, so that the same cell
compares across steps and runs."""

from collections.abc import Sequence
from pathlib import Path

import torch

from aigc.callbacks.image_logging import captioned_grid, save_and_log
from aigc.callbacks.schedule import due
from aigc.common.capabilities import ConditionedOnText, Contract, GeneratesImages
from aigc.common.constraints import PositiveInt
from aigc.metrics.images import to_uint8


class PromptGrid(Contract):
    """Needs a model that draws images of prompts (``GeneratesImages``, ``ConditionedOnText``).

    ``prompts``: the rows, as a list or a text file of one prompt a line; None takes the first
    ``num_prompts`` distinct captions of the data's validation split. Column ``j`` is drawn from
    seed ``seed + j`` for every prompt.
    """

    needs_model = (GeneratesImages, ConditionedOnText)

    def __init__(
        self,
        prompts: Sequence[str] | str | None = None,
        num_prompts: PositiveInt = 8,
        seeds: PositiveInt = 8,
        seed: int = 0,
        every_n_epochs: PositiveInt = 1,
        key: str = "prompts",
    ):
        self.prompts = prompts_from_file(prompts) if isinstance(prompts, str) else prompts and list(prompts)
        self.num_prompts, self.seeds, self.seed = num_prompts, seeds, seed
        self.every_n_epochs = every_n_epochs
        self.key = key

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.prompts is not None:
            pl_module.check_prompts(self.prompts)  # a configured prompt too long: refused at set-up, not at epoch 10

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not due(trainer, self.every_n_epochs):
            return
        prompts = self.prompts or list(dict.fromkeys(trainer.datamodule.captions("val")))[: self.num_prompts]
        save_and_log(trainer, self.key, prompt_grid(pl_module, prompts, self.seeds, self.seed))


def prompts_from_file(path: str) -> list[str]:
    """The prompts of a text file, one a line (blank lines left out)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"metrics.prompts={path}: no such file (give a list of prompts, or a file of one a line)")
    prompts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"metrics.prompts={path} holds no prompt (one a line)")
    return prompts


def prompt_grid(model, prompts: Sequence[str], seeds: int, seed: int = 0):
    """The picture: a row per prompt, column ``j`` from seed ``seed + j``."""
    columns = [model.sample(len(prompts), seed=seed + column, prompts=list(prompts)) for column in range(seeds)]
    images = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: prompt, then seed
    return captioned_grid(to_uint8(images), seeds, list(prompts))
