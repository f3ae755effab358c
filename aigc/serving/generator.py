"""A trained model as something that generates: images or text from a checkpoint file alone.

The file is a run's checkpoint, or the slimmer copy an MLflow model carries (``slim``: weights,
config and tokenizer, no optimizer state). Either is read as untrusted input: tensors only
(``weights_only``), and the model's config is rebuilt only from allowed classes
(``aigc.common.stored``). ``aigc.sample`` and the MLflow pyfunc model (``aigc.serving.pyfunc``) both use this.
"""

from pathlib import Path

import numpy as np
import torch

from aigc.common.capabilities import GeneratesImages, GeneratesText
from aigc.common.stored import CONFIG_KEY, RUN_KEY, instantiate_stored, read_checkpoint
from aigc.data.text import TextDataModule
from aigc.data.tokenizers import load_tokenizer
from aigc.metrics.images import to_uint8

TOKENIZER_KEY = TextDataModule.__qualname__  # Lightning keeps a datamodule's state (the fitted tokenizer) under it


class Generator:
    """``kind`` is ``"images"`` or ``"text"``; ``images(...)`` or ``text(...)`` generate."""

    def __init__(self, model, tokenizer=None, source: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.kind = "text" if tokenizer is not None else "images"

    @classmethod
    def from_file(cls, path: str | Path, source: str | None = None) -> "Generator":
        """``source`` names the model in messages (a model URI); the file's path by default."""
        return cls.from_checkpoint(read_checkpoint(path), source or str(path))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, where: str) -> "Generator":
        """From a checkpoint already read as untrusted input (``read_checkpoint``)."""
        if CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
            raise ValueError(f"{where} holds no model config and weights: it is not an aigc checkpoint")
        model = instantiate_stored(checkpoint[CONFIG_KEY]["model"], f"{where}: model", _convert_="all")
        tokenizer = None
        if isinstance(model, GeneratesText):
            state = checkpoint.get(TOKENIZER_KEY, {})
            if "tokenizer" not in state:
                raise ValueError(f"{where} is a language model's checkpoint without its tokenizer")
            tokenizer = load_tokenizer(state["tokenizer"])
            model.build(tokenizer.vocab_size)
        elif not isinstance(model, GeneratesImages):
            raise ValueError(f"{where}: {type(model).__name__} generates neither images nor text")
        model.load_state_dict(checkpoint["state_dict"])
        return cls(model, tokenizer, where)

    @property
    def num_classes(self) -> int | None:
        """The labels a class-conditional model draws images of (0 .. num_classes - 1); None for the others."""
        return getattr(self.model, "num_classes", None)

    @property
    def sampling_options(self) -> dict[str, int | float | str]:
        """What drawing images takes besides the count, the seed and the label (a diffusion model's
        sampler, steps and guidance), with the model's defaults."""
        return dict(getattr(self.model, "sampling_options", {}))

    def images(self, num_samples: int, seed: int = 0, label: int | None = None, **options) -> np.ndarray:
        """uint8 images, (N, H, W, C): the same for the same seed (and label and options)."""
        self._expect("images", "num_samples")
        unknown = sorted(set(options) - set(self.sampling_options))
        if unknown:
            takes = ", ".join(self.sampling_options) or "no sampling options"
            raise ValueError(f"{', '.join(unknown)}: {self.source} takes {takes}")
        if label is not None and not self.num_classes:
            raise ValueError(f"label={label}: {self.source} is unconditional, it takes no label")
        if label is not None and not 0 <= label < self.num_classes:
            raise ValueError(f"label={label}: {self.source} draws labels 0 to {self.num_classes - 1}")
        labels = None if label is None else torch.full((num_samples,), int(label))
        extra = {"labels": labels} if self.num_classes else {}
        drawn = self.model.sample(num_samples, seed=seed, **extra, **options)
        return to_uint8(drawn).permute(0, 2, 3, 1).cpu().numpy()

    def text(
        self,
        prompt: str,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 200,
        top_p: float | None = None,
        seed: int = 0,
    ) -> str:
        """The prompt and its continuation: the same for the same seed."""
        self._expect("text", "prompt")
        new_ids = self.model.generate(
            self.tokenizer.encode(prompt),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
        return prompt + self.tokenizer.decode(new_ids)

    def _expect(self, kind: str, argument: str) -> None:
        if self.kind != kind:
            raise ValueError(
                f"{self.source} is a model that generates {self.kind}, not {kind}: "
                f"{'give it a prompt' if self.kind == 'text' else 'ask it for num_samples images'}, not {argument}"
            )


def slim(checkpoint: dict) -> dict:
    """What generating needs from a checkpoint: weights, the model's config, the tokenizer, the run id."""
    kept = {"state_dict": checkpoint["state_dict"], CONFIG_KEY: {"model": checkpoint[CONFIG_KEY]["model"]}}
    if "tokenizer" in checkpoint.get(TOKENIZER_KEY, {}):
        kept[TOKENIZER_KEY] = {"tokenizer": checkpoint[TOKENIZER_KEY]["tokenizer"]}
    if RUN_KEY in checkpoint:
        kept[RUN_KEY] = checkpoint[RUN_KEY]
    return kept
