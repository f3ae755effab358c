"""A pretrained Hugging Face causal language model behind the built-in nets' interface.

``forward(idx, cache)`` returns ``(logits, cache)`` as the GPT's and the LSTM's do, so the same
LanguageModel trains, scores and samples it. The cache is the model's own key/value cache
(``transformers.DynamicCache``); it is built only when one is handed in (``new_cache()``), so
training and scoring, which read each window once, keep no keys and values.

The architecture (the model's ``config.json``) is kept as a JSON string, ``architecture``:
given it, the net is rebuilt with random weights that a checkpoint then replaces, without the
pretrained files or the hub. Only the classes ``transformers`` itself ships are built
(``trust_remote_code`` stays off): a stored architecture can't run code.
"""

import json
from functools import partial

import torch
from torch import nn
from typing_extensions import TypedDict  # typing's, before Python 3.12, is one pydantic can't check

from aigc.common.constraints import PositiveFloat, PositiveInt, Probability
from aigc.common.hub import load_pretrained
from aigc.models.nets.decay import weight_decay_groups


class LoRA(TypedDict, total=False):
    """Low-rank adapters (``peft``): ``rank`` r, ``alpha`` (the update is scaled by alpha / r),
    ``dropout`` on the adapters' input, ``target_modules`` (module names; None: peft's choice
    for the architecture, e.g. GPT-2's ``c_attn``)."""

    rank: PositiveInt
    alpha: PositiveFloat
    dropout: Probability
    target_modules: list[str] | None


class PretrainedCausalLM(nn.Module):
    """Args:
    vocab_size: the tokenizer's size; the embeddings grow to it when the model has fewer rows.
    pretrained: a hub name or a ``save_pretrained`` folder (weights in float32: precision is
        the Trainer's ``precision``).
    architecture: the model's config as JSON: build it with random weights instead of loading.
    lora: train low-rank adapters only (the pretrained weights frozen); None: every weight.
    gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
    """

    def __init__(
        self,
        vocab_size: PositiveInt,
        pretrained: str,
        architecture: str | None = None,
        lora: LoRA | None = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM  # seconds to import: only for this net

        if architecture is None:
            load = partial(AutoModelForCausalLM.from_pretrained, dtype=torch.float32)
            model = load_pretrained(load, pretrained)
        else:
            config = json.loads(architecture)
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        self.architecture = model.config.to_json_string(use_diff=False)
        if vocab_size > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(vocab_size)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            settings = LoraConfig(
                r=lora.get("rank", 8),
                lora_alpha=lora.get("alpha", 16),
                lora_dropout=lora.get("dropout", 0.05),
                target_modules=lora.get("target_modules"),
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, settings)
        self.model = model.train()  # from_pretrained returns it in eval mode (no dropout)

    def forward(self, idx: torch.Tensor, cache=None):
        """Logits (B, T, vocab) for token ids (B, T); ``cache`` (from ``new_cache()``) is extended
        with these tokens and returned, None is returned as None."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        length = (cache.get_seq_length() if cache is not None else 0) + idx.shape[1]
        if limit is not None and length > limit:  # past it the position table runs out (an index error, or worse)
            raise ValueError(
                f"{length} tokens is more than the model's context of {limit} positions: "
                "a shorter prompt or fewer new tokens (max_new_tokens), or data.block_size <= the context"
            )
        out = self.model(input_ids=idx, cache=cache, use_cache=cache is not None)
        return out.logits, out.cache if cache is not None else None

    @staticmethod
    def new_cache():
        from transformers import DynamicCache

        return DynamicCache()

    def param_groups(self) -> list[dict]:
        return weight_decay_groups(self)

    def parameter_counts(self) -> dict[str, int]:
        """Total and trainable parameters (with LoRA, only the adapters train)."""
        params = list(self.parameters())
        return {
            "params_total": sum(p.numel() for p in params),
            "params_trainable": sum(p.numel() for p in params if p.requires_grad),
        }
