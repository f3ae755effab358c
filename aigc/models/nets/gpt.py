"""A decoder-only Transformer language model (GPT), written to be read top to bottom.

It follows Karpathy's nanoGPT: token and learned position embeddings, ``n_layer`` pre-norm
blocks (LayerNorm -> causal self-attention, LayerNorm -> MLP, each added back to the
residual stream), a final LayerNorm, and an output head that shares its weight with the
token embedding.

``forward(idx, cache)`` returns ``(logits, cache)``, the same interface as the LSTM's
``forward(idx, state)``, so one training and sampling loop serves both. The cache holds each
layer's keys and values for the tokens seen so far: given it, only the new tokens are run
through the net, which makes generating ``n`` tokens cost ``O(n)`` token-forwards instead of
``O(n^2)``.
"""

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from aigc.common.constraints import PositiveInt, Probability
from aigc.models.nets.decay import weight_decay_groups


@dataclass
class KVCache:
    """What the net has seen: the token ids (needed to recompute, see ``GPT.forward``) and, per
    layer, the attention keys and values, each of shape (B, n_head, T, head_dim).

    Each step concatenates onto these tensors (a copy of the cache per step): simple, and
    cheap next to the forward pass for the block sizes of this project."""

    tokens: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def __len__(self) -> int:
        return self.tokens.shape[1]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.n_head = n_head  # n_embd divisible by it: GPT.check_arguments
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # queries, keys and values in one matmul
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x: (B, T, C) for the T new positions; past: keys and values of the positions before
        them. Returns the output (B, T, C) and the keys and values of all positions."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim): every head attends independently
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]  # positions attended to: the past ones and the new ones

        # Each new query may see every past position and the new ones up to itself.
        # SDPA's is_causal aligns its mask to the top-left corner, right only when S == T;
        # one new query sees everything; several new queries after a past need the mask
        # aligned to the bottom-right corner, written out.
        mask, is_causal = None, False
        if S == T:
            is_causal = True
        elif T > 1:
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        with _attention_kernel(x.device):
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.proj(y)), (k, v)


def _attention_kernel(device: torch.device):
    """SDPA's math kernel where float32 products run in bf16 on a CPU (float32 matmul precision
    ``medium``): there the CPU flash kernel turns slower, while the math kernel's products gain
    (experiments/gpt_kernels.md). Otherwise SDPA's own choice."""
    if device.type == "cpu" and torch.backends.mkldnn.matmul.fp32_precision == "bf16":
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm: each sublayer reads a normalised copy and adds its output to the residual stream."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor, past=None):
        attended, present = self.attn(self.ln_1(x), past)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT(nn.Module):
    """Maps token ids (B, T) to next-token logits (B, T, vocab_size).

    Args:
        vocab_size: number of token ids (from the tokenizer).
        block_size: the longest context the net attends to (the length of its position table).
        n_layer, n_head, n_embd: depth, attention heads per layer, width of the residual stream.
        dropout: on embeddings, attention weights and every residual branch (0 for none).
        bias: biases in the linear layers and LayerNorms, as GPT-2 (False is a little better and faster).
    """

    def __init__(
        self,
        vocab_size: PositiveInt,
        block_size: PositiveInt,
        n_layer: PositiveInt,
        n_head: PositiveInt,
        n_embd: PositiveInt,
        dropout: Probability = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        self.check_arguments(n_embd=n_embd, n_head=n_head)
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)  # token embedding
        self.wpe = nn.Embedding(block_size, n_embd)  # position embedding
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        # Weight tying (Press & Wolf, 2017): one matrix reads tokens in and scores them out.
        self.lm_head.weight = self.wte.weight

        # GPT-2's initialisation: N(0, 0.02), and the projections that write into the residual
        # stream scaled by 1/sqrt(2 * n_layer) so its variance doesn't grow with depth.
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def check_arguments(n_embd: int, n_head: int, **_) -> None:
        """Every head attends over an equal share of the width (``aigc.common.constraints``)."""
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Logits for the positions of ``idx`` (B, T), and the cache extended by them.

        Without a cache, ``idx`` is a whole context (T <= block_size). With one, ``idx`` holds
        only the tokens that follow the cached ones; their positions continue from ``len(cache)``.

        When the cached and new tokens together exceed ``block_size`` the position table has
        run out: the net keeps the last ``block_size`` tokens and recomputes them from
        scratch (their positions, hence every key and value, change, so nothing cached can
        be reused). The logits returned are still those of the new tokens. This is what
        nanoGPT's uncached ``generate`` does, so past ``block_size`` the cached and uncached
        paths agree and each step costs a full ``block_size`` forward.

        In training the returned keys and values are tensors that autograd keeps for the
        backward pass anyway; callers that don't need the cache drop it.
        """
        new_tokens = idx.shape[1]
        if new_tokens > self.block_size:
            raise ValueError(f"{new_tokens} tokens at once is more than block_size={self.block_size}")
        if cache is not None and len(cache) + new_tokens > self.block_size:
            idx, cache = torch.cat([cache.tokens, idx], dim=1)[:, -self.block_size :], None

        past_len = 0 if cache is None else len(cache)
        positions = torch.arange(past_len, past_len + idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, (k, v) = block(x, None if cache is None else (cache.keys[i], cache.values[i]))
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.ln_f(x[:, -new_tokens:]))
        tokens = idx if cache is None else torch.cat([cache.tokens, idx], dim=1)
        return logits, KVCache(tokens, keys, values)

    def param_groups(self) -> list[dict]:
        """Parameter groups for AdamW: weight decay on the 2-D weights of the linear layers only.

        Biases, LayerNorm weights and the embeddings are not decayed (the output head shares
        the token embedding's weight, so it is not decayed either; this is minGPT's and early
        nanoGPT's choice; today's nanoGPT decays every 2-D tensor, embeddings included). The
        first group takes the optimizer's ``weight_decay``; the second sets it to 0.
        """
        return weight_decay_groups(self)
