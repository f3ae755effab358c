"""A trained model as something that generates: images or text from a checkpoint file alone.

The file is a run's checkpoint, or the slimmer copy an MLflow model carries (``slim``: weights,
config and tokenizer, no optimizer state). Either is read as untrusted input: tensors only
(``weights_only``), and the model's config is rebuilt only from allowed classes
(``aigc.common.stored``). ``aigc.sample`` and the MLflow pyfunc model (``aigc.serving.pyfunc``) both use this.
"""

from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException

from aigc.common.capabilities import ConditionedOnText, GeneratesImages, GeneratesText
from aigc.common.errors import first_line
from aigc.common.hub import PretrainedUnavailable
from aigc.common.stored import CONFIG_KEY, RUN_KEY, instantiate_stored, read_checkpoint
from aigc.data.text import TextDataModule
from aigc.data.tokenizers import load_tokenizer
from aigc.metrics.images import to_uint8

TOKENIZER_KEY = TextDataModule.__qualname__  # Lightning keeps a datamodule's state (the fitted tokenizer) under it
# what a generator keeps of an image datamodule's state (image_folder's), wherever Lightning put it
DATA_FACTS = ("class_names", "caption_source")


class Generator:
    """``kind`` is ``"images"`` or ``"text"``; ``images(...)`` or ``text(...)`` generate."""

    def __init__(
        self, model, tokenizer=None, source: str = "", class_names: list[str] | None = None, run_id: str | None = None
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.kind = "text" if tokenizer is not None else "images"
        self.class_names = class_names
        self.run_id = run_id  # the MLflow run that trained it, where the file says

    @classmethod
    def from_file(cls, path: str | Path, source: str | None = None) -> "Generator":
        """``source`` names the model in messages (a model URI); the file's path by default."""
        return cls.from_checkpoint(read_checkpoint(path), source or str(path))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, where: str) -> "Generator":
        """From a checkpoint already read as untrusted input (``read_checkpoint``)."""
        if CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
            raise ValueError(f"{where} holds no model config and weights: it is not an aigc checkpoint")
        try:
            model = instantiate_stored(checkpoint[CONFIG_KEY]["model"], f"{where}: model", _convert_="all")
        except InstantiationException as error:  # Hydra's wrapper: the cause is the one line to say
            cause = error.__cause__ or error
            if isinstance(cause, PretrainedUnavailable):  # a model that keeps only what it trained
                raise ValueError(f"{where} draws with a base it does not hold: {first_line(cause)}") from None
            raise ValueError(f"{where}: {first_line(cause)}") from None
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
        run_id = checkpoint.get(RUN_KEY)
        return cls(model, tokenizer, where, data_facts(checkpoint).get("class_names"), str(run_id) if run_id else None)

    @property
    def num_classes(self) -> int | None:
        """The labels a class-conditional model draws images of (0 .. num_classes - 1); None for the others."""
        return getattr(self.model, "num_classes", None)

    @property
    def takes_prompts(self) -> bool:
        """Whether it draws what a prompt says (a text-to-image model)."""
        return isinstance(self.model, ConditionedOnText)

    @property
    def sampling_options(self) -> dict[str, int | float | str]:
        """What drawing images takes besides the count, the seed and the label (a diffusion model's
        sampler, steps and guidance), with the model's defaults."""
        return dict(getattr(self.model, "sampling_options", {}))

    @property
    def sampling_choices(self) -> dict[str, list]:
        """The values a sampling option can take, where the model names them (a diffusion model's samplers)."""
        return dict(getattr(self.model, "sampling_choices", {}))

    def images(
        self,
        num_samples: int,
        seed: int = 0,
        label: int | str | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        **options,
    ) -> np.ndarray:
        """uint8 images, (N, H, W, C): the same for the same seed (and label or prompt, and options).
        A label is a number or, where the data named its classes, a name."""
        self._expect("images", "num_samples")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples={num_samples!r}: ask for at least one image")
        unknown = sorted(set(options) - set(self.sampling_options))
        if unknown:
            takes = ", ".join(self.sampling_options) or "no sampling options"
            raise ValueError(f"{', '.join(unknown)}: {self.source} takes {takes}")
        if self.takes_prompts:
            extra = self._prompted(label, prompt, negative_prompt)
        else:
            extra = self._labelled(num_samples, label, prompt, negative_prompt)
        drawn = self.model.sample(num_samples, seed=seed, **extra, **options)
        return to_uint8(drawn).permute(0, 2, 3, 1).cpu().numpy()

    def _prompted(self, label, prompt: str | None, negative_prompt: str | None) -> dict:
        if label is not None:
            raise ValueError(f"label={label}: {self.source} draws what a prompt says: give prompt=..., not a label")
        if prompt is None or not str(prompt).strip():
            raise ValueError(f'{self.source} draws what a prompt says: give a prompt (prompt="two red circles")')
        negative = [] if negative_prompt is None else [negative_prompt]
        self.model.check_prompts([prompt, *negative])
        return {"prompts": prompt, "negative_prompt": negative_prompt}

    def _labelled(self, num_samples: int, label, prompt: str | None, negative_prompt: str | None) -> dict:
        given = [
            name for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)) if value is not None
        ]
        if given:
            what = "draws the label it is given" if self.num_classes else "is unconditional"
            raise ValueError(f"{given[0]}=...: {self.source} {what}, it takes no prompt")
        if label is None:
            return {"labels": None} if self.num_classes else {}
        if not self.num_classes:
            raise ValueError(f"label={label}: {self.source} is unconditional, it takes no label")
        label = self.label_index(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label={label}: {self.source} draws labels 0 to {self.num_classes - 1}")
        return {"labels": torch.full((num_samples,), label)}

    def label_index(self, label: int | str) -> int:
        """A label given by number, or by the name of its class (the folder it came from)."""
        if isinstance(label, int | np.integer) and not isinstance(label, bool):
            return int(label)
        names = self.class_names or []
        if isinstance(label, str) and label in names:
            return names.index(label)
        if isinstance(label, str) and label.lstrip("-").isdigit():
            return int(label)
        known = f"one of {', '.join(names)}, or a number" if names else "a whole number (its classes have no names)"
        raise ValueError(f"label={label!r}: {self.source} draws {known}")

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
    """What generating needs from a checkpoint: weights, the model's config, the tokenizer, the
    names of the data's classes, the run id."""
    kept = {"state_dict": checkpoint["state_dict"], CONFIG_KEY: {"model": checkpoint[CONFIG_KEY]["model"]}}
    if "tokenizer" in checkpoint.get(TOKENIZER_KEY, {}):
        kept[TOKENIZER_KEY] = {"tokenizer": checkpoint[TOKENIZER_KEY]["tokenizer"]}
    if facts := data_facts(checkpoint):
        kept[DATA_FACTS_KEY] = facts
    if RUN_KEY in checkpoint:
        kept[RUN_KEY] = checkpoint[RUN_KEY]
    return kept


DATA_FACTS_KEY = "aigc_data_facts"  # in a slim checkpoint


def data_facts(checkpoint: dict) -> dict:
    """What an image datamodule kept in the checkpoint (its state, under its class's name; a slim
    copy's under ``DATA_FACTS_KEY``): the names of its classes, where its captions came from."""
    for state in [checkpoint.get(DATA_FACTS_KEY), *checkpoint.values()]:
        if isinstance(state, dict) and any(key in state for key in DATA_FACTS):
            return {key: state[key] for key in DATA_FACTS if state.get(key) is not None}
    return {}


def model_card(checkpoint: dict) -> dict[str, str]:
    """What a fine-tuned model's card says: the base it was fine-tuned from (``model.pretrained``)
    and what its weights hold (``model.holds``: ``adapters``, LoRA's only, which draw with that base
    loaded again; or ``weights``)."""
    config = checkpoint.get(CONFIG_KEY, {}).get("model", {})
    if not config.get("pretrained"):
        return {}
    keys = list(checkpoint["state_dict"])
    adapters = bool(keys) and all(".lora_A." in key or ".lora_B." in key for key in keys)
    return {"model.pretrained": str(config["pretrained"]), "model.holds": "adapters" if adapters else "weights"}
