"""A recurrent language model: embedding -> multi-layer LSTM, GRU or RNN -> dropout -> tied linear head.

The architecture of PyTorch's word_language_model example (after Zaremba et al., 2014, and
Press & Wolf, 2017, for the tied head), with its choice of cell: ``lstm``, ``gru`` or ``rnn``
(Elman, tanh). ``forward(idx, state)`` returns ``(logits, state)``, the same interface as the
GPT's ``forward(idx, cache)``, so one training and sampling loop serves both.
"""

from typing import Literal

import torch
from torch import nn

from aigc.common.constraints import PositiveInt, Probability

# every cell's state as a tuple of (num_layers, B, hidden_size) tensors: (h, c) for the LSTM, (h,) otherwise
State = tuple[torch.Tensor, ...]
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RecurrentLanguageModel(nn.Module):
    """Maps token ids (B, T) to next-token logits (B, T, vocab_size).

    The head shares its weight with the embedding, so it reads vectors of ``embedding_dim``.
    When ``hidden_size`` differs, a linear layer projects the recurrent output down (or up) to
    ``embedding_dim`` before the head; when they are equal there is no projection.

    Dropout is applied to the embeddings, between recurrent layers, and to their output.
    """

    # Its state summarises the whole past, so training may carry it from one window to the next
    # (LanguageModel's carry_state); the GPT's cache cannot outgrow block_size.
    recurrent = True

    def __init__(
        self,
        vocab_size: PositiveInt,
        embedding_dim: PositiveInt,
        hidden_size: PositiveInt,
        num_layers: PositiveInt,
        dropout: Probability = 0.0,
        cell: Literal["lstm", "gru", "rnn"] = "lstm",
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.drop = nn.Dropout(dropout)
        # the cells' own dropout acts between layers only, hence the Dropout modules around them
        self.rnn = CELLS[cell](
            embedding_dim, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0, batch_first=True
        )
        self.project = nn.Linear(hidden_size, embedding_dim) if hidden_size != embedding_dim else nn.Identity()
        self.head = nn.Linear(embedding_dim, vocab_size)
        self.head.weight = self.embedding.weight  # weight tying
        # The example's initialisation: small uniform embeddings (hence head), zero head bias.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits for every position of ``idx`` and the hidden state after its last token.

        ``state=None`` starts from zeros; pass the returned state to continue the same
        sequences (sampling, or training on consecutive windows). Any length of ``idx`` works:
        a recurrent net has no context limit.
        """
        if state is not None and self.cell != "lstm":
            (state,) = state
        output, state = self.rnn(self.drop(self.embedding(idx)), state)
        return self.head(self.project(self.drop(output))), state if self.cell == "lstm" else (state,)
