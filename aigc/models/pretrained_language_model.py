"""A pretrained Hugging Face causal LM, fine-tuned, scored and sampled like the built-in language models.

    python -m aigc.run model=hf_causal_lm model.pretrained=gpt2 data=shakespeare
    python -m aigc.run model=hf_causal_lm model.pretrained=<save_pretrained folder> model.peft=lora

Everything but the net is ``LanguageModel``'s: the loss, ``val/loss`` and ``val/ppl`` over every
token, text samples, BLEU/ROUGE, sampling with a seed. The data is tokenized by the model's own
tokenizer (``conf/model/hf_causal_lm.yaml`` selects ``data/tokenizer=pretrained``).

Checkpoints hold what sampling needs: the weights, the tokenizer (the datamodule's state) and,
added to the stored model config here, the architecture, so ``aigc.sample`` and
``aigc.evaluate`` rebuild the net without the pretrained files.
"""

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch.optim.lr_scheduler import LRScheduler

from aigc.common.constraints import PositiveFloat, PositiveInt
from aigc.common.stored import CONFIG_KEY
from aigc.models.language_model import LanguageModel
from aigc.models.nets.pretrained import LoRA, PretrainedCausalLM


class PretrainedLanguageModel(LanguageModel):
    """Args:
    pretrained: a Hugging Face hub name or a ``save_pretrained`` folder (model and tokenizer).
    optimizer, scheduler, grad_clip, compile: as ``LanguageModel``.
    peft: ``lora`` trains low-rank adapters (settings in ``lora``) with the pretrained weights
        frozen; ``none`` trains every weight.
    lora: rank, alpha, dropout, target_modules (see ``aigc.models.nets.pretrained.LoRA``).
    gradient_checkpointing: recompute activations in the backward pass to save memory.
    architecture: the model's config as JSON; set in checkpoints, so a restore builds the net
        without loading the pretrained weights it replaces.
    vocab_size: as ``LanguageModel``.
    """

    def __init__(
        self,
        pretrained: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        grad_clip: PositiveFloat | None = None,
        peft: Literal["none", "lora"] = "none",
        lora: LoRA | None = None,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        architecture: str | None = None,
        vocab_size: PositiveInt | None = None,
    ):
        net = partial(
            PretrainedCausalLM,
            pretrained=pretrained,
            architecture=architecture,
            lora=(lora or {}) if peft == "lora" else None,
            gradient_checkpointing=gradient_checkpointing,
        )
        super().__init__(net, optimizer, scheduler, grad_clip, compile=compile, vocab_size=vocab_size)

    def on_fit_start(self) -> None:
        # how much of the model trains (with LoRA, a small fraction): params of the run
        if self.logger is not None:
            self.logger.log_hyperparams(self.net.parameter_counts())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning calls this after the callbacks', so the run's config (ConfigSnapshot) is there
        stored = checkpoint.get(CONFIG_KEY)
        if stored and "model" in stored:
            checkpoint[CONFIG_KEY] = {**stored, "model": {**stored["model"], "architecture": self.net.architecture}}
