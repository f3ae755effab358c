"""What a model or a datamodule can do, as contracts the callbacks check at set-up, and the
traits a model may state about itself.

A callback that makes image grids needs a model that generates images; one that scores text
needs a model that continues text and data that holds out text to continue. The contracts are
``typing.Protocol``s: a class meets one by having the methods and attributes, without naming
it. A callback declares what it needs (``needs_model``, ``needs_data``) and ``Contract.setup``
refuses, with one line, a model or data that lacks it, instead of skipping silently.

A new model meets these by its methods; a new callback declares what it needs by them; the
model family's config (``conf/callbacks/family/<model>.yaml``) lists the callbacks that apply.
A model states its traits (``Traits``) as class attributes; ``trait`` reads them.

The metric names a run logs are declared where they are logged: a model's own in its class
attribute ``logged_metrics``, a callback's by ``LogsMetrics``; ``metrics_logged`` gathers them,
so that what a checkpoint, early stopping or the objective monitors is checked before a run exists.
"""

from fnmatch import fnmatchcase
from typing import Protocol, runtime_checkable

import torch
from lightning import Callback


@runtime_checkable
class GeneratesImages(Protocol):
    """``sample(num_samples, seed)``: images in [-1, 1], (N, C, H, W), the same for a seed on every device."""

    def sample(self, num_samples: int, seed: int = 0) -> torch.Tensor: ...


@runtime_checkable
class ConditionedOnLabels(Protocol):
    """``num_classes``: ``sample(num_samples, seed, labels=...)`` draws images of the labels
    (N,) 0 .. num_classes - 1; None for a model of the family trained without labels."""

    num_classes: int | None


@runtime_checkable
class ConditionedOnText(Protocol):
    """``sample(num_samples, seed, prompts=..., negative_prompt=...)`` draws images of the prompts
    (one for all, or one each); ``check_prompts(prompts)`` refuses, in one line, one it can't read."""

    def check_prompts(self, prompts) -> None: ...


@runtime_checkable
class OffersPromptSet(Protocol):
    """Prompts held out from training, each with the category it tests and what a verifier must
    see (``evaluation_prompts``), and the ``classifier`` (verifier) that reads generated images."""

    evaluation_prompts: list
    classifier: str | None


@runtime_checkable
class Reconstructs(Protocol):
    """``reconstruct(images)``: images in [-1, 1] mapped to their reconstructions in [-1, 1] (a
    model conditioned on labels also takes the images' ``labels``)."""

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class GeneratesText(Protocol):
    """``generate(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed)``: the new token ids."""

    def generate(
        self,
        prompt_ids: list[int] | torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> list[int]: ...


@runtime_checkable
class OffersReferenceImages(Protocol):
    """Real images to score samples against: ``real_images(split)`` as uint8 (N, C, H, W), the
    data's ``name``, its ``source`` (with a digest, after ``setup``) and the ``classifier`` that
    scores it offline (or None)."""

    name: str
    classifier: str | None

    def real_images(self, split: str = "val") -> torch.Tensor: ...


@runtime_checkable
class OffersReferenceText(Protocol):
    """Held-out text to continue: ``val_text`` and the fitted ``tokenizer`` (after ``setup``)."""

    val_text: str
    tokenizer: object


@runtime_checkable
class LogsMetrics(Protocol):
    """``logged_metrics(model, datamodule)``: the names of the metrics a callback logs (or, as a
    checkpoint the epoch, lets be monitored) while fitting this model on this data
    (``val/fid_mnist``); a name may be a pattern (``lr-*``)."""

    def logged_metrics(self, model, datamodule) -> list[str]: ...


def metrics_logged(model, datamodule, callbacks) -> list[str] | None:
    """The metric names (or patterns) a fit of ``model`` on ``datamodule`` with ``callbacks``
    logs: the model's class attribute ``logged_metrics`` (what it logs itself while fitting:
    ``train/*``, ``val/*``) and the callbacks' ``LogsMetrics``. None when the model declares
    nothing: a new family is then not checked, rather than refused."""
    own = getattr(model, "logged_metrics", None)
    if own is None:
        return None
    names = list(own)
    for callback in callbacks:
        if isinstance(callback, LogsMetrics):
            names += callback.logged_metrics(model, datamodule)
    return list(dict.fromkeys(names))


def is_logged(metric: str, names: list[str]) -> bool:
    """Whether ``metric`` is one of ``names`` (``metrics_logged``), a pattern included."""
    return any(fnmatchcase(metric, name) for name in names)


class MissingCapability(ValueError):
    """A configured callback that can't apply to this model or data."""


class Contract(Callback):
    """A callback's needs, checked when training or testing starts."""

    needs_model: tuple[type, ...] = ()
    needs_data: tuple[type, ...] = ()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.check(pl_module, getattr(trainer, "datamodule", None))

    def check(self, model, datamodule) -> None:
        """Raise ``MissingCapability`` (one line) unless the model and the data meet the needs."""
        for needed, subject, what in [(self.needs_model, model, "a model"), (self.needs_data, datamodule, "data")]:
            for contract in needed:
                if not isinstance(subject, contract):
                    raise MissingCapability(
                        f"{type(self).__name__} needs {what} that meets {contract.__name__} "
                        f"({contract.__doc__.split(': ')[0].strip('`')}); {type(subject).__name__} does not: "
                        "drop the callback (~callbacks.<name>) or use a model and data that have it"
                    )


class Traits:
    """What a model may state about itself, as class attributes of its LightningModule; a model
    that states nothing has these defaults. Read them with ``trait(model, name)``.

    - ``faster_in_bf16_on_cpu``: ``trainer.precision=auto`` trains it in ``bf16-mixed`` on a CPU
      with AMX (``aigc.trainer.precision``). ``False`` for a model that runs slower there
      (measure it: ``experiments/precision.py``).
    - ``ddp_find_unused_parameters``: DDP looks for parameters without a gradient after every
      backward pass (``aigc.trainer.distributed``). ``True`` for a model whose backward passes each
      reach only some of its parameters (a GAN's: one net each).
    - ``trains_on_any_image_size``: it trains on batches of any size (a latent diffusion model's
      UNet), so aspect-ratio buckets (``data.buckets=true``) may feed it; the others train on
      ``data.image_shape`` only.
    """

    faster_in_bf16_on_cpu: bool = True
    ddp_find_unused_parameters: bool = False
    trains_on_any_image_size: bool = False


def trait(model, name: str) -> bool:
    """The trait ``name`` of ``model`` (``Traits``): what its class states, else the default."""
    if name.startswith("_") or not hasattr(Traits, name):
        known = ", ".join(key for key in vars(Traits) if not key.startswith("_"))
        raise AttributeError(f"{name!r} is not a model trait (the traits: {known})")
    return bool(getattr(model, name, getattr(Traits, name)))
