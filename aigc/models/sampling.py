"""Decoding for autoregressive language models: greedy, temperature, top-k and top-p (nucleus).

One loop, ``generate``, serves every model through a step function::

    step_fn(new_ids (B, t), state) -> (logits of the last position (B, vocab_size), state)

where ``state`` is whatever the model carries between calls (the GPT's key/value cache, the
LSTM's hidden state) and ``None`` on the first call, which receives the whole prompt.

Random draws come from a CPU ``torch.Generator`` seeded by ``seed`` and the logits are moved
to the CPU in float32 before drawing, so a seed fixes the text whatever device the model runs
on (up to the device's own rounding of the logits).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Logits (B, V) divided by ``temperature`` (> 0), with the tokens that top-k and top-p
    exclude set to -inf; softmax of the result is the distribution tokens are drawn from.

    top_k keeps the k highest logits (None or 0: all; tokens tied with the k-th are kept too);
    top_p keeps the smallest set of most likely tokens whose probabilities sum to at least
    top_p (Holtzman et al., 2020; None or 1.0: all), always at least the most likely one.
    top-k is applied first, then top-p on what is left (Hugging Face's order).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 here (0 means greedy, handled by the caller), got {temperature}")
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens before it already reach top_p: the first always stays.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop_sorted[:, 0] = False  # even for top_p = 0
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V): the argmax when ``temperature`` is 0, else a
    draw from the filtered distribution. Returns (B,) on the device of ``logits``."""
    device = logits.device
    logits = logits.detach().float().cpu()  # draws on the CPU generator: the same on every device
    if temperature == 0:
        token = logits.argmax(dim=-1)
    else:
        probs = F.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return token.to(device)


@torch.no_grad()
def generate(
    step_fn: StepFn,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Continue ``prompt_ids`` (B, T >= 1) by ``max_new_tokens`` tokens; returns only the new
    tokens, (B, max_new_tokens). The prompt goes through ``step_fn`` once; after that each call
    feeds the one token just chosen, with the state the previous call returned."""
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ValueError(f"prompt_ids must be (batch, length >= 1), got shape {tuple(prompt_ids.shape)}")
    if max_new_tokens <= 0:
        return prompt_ids.new_empty(prompt_ids.shape[0], 0)
    generator = torch.Generator().manual_seed(seed)
    new = []
    logits, state = step_fn(prompt_ids, None)
    for i in range(max_new_tokens):
        token = next_token(logits, temperature, top_k, top_p, generator)
        new.append(token)
        if i + 1 < max_new_tokens:  # the last token needs no forward
            logits, state = step_fn(token[:, None], state)
    return torch.stack(new, dim=1)
