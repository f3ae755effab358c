"""Tokenizers: text <-> token ids, fitted on the training split only.

Every kind shares one interface: ``fit(text) -> self``, ``encode(str) -> list[int]``,
``decode(list[int]) -> str``, ``vocab_size`` (after fitting), and ``to_json()`` /
``from_json(str)``. The JSON is a plain string so it can be an MLflow artifact and live
inside a Lightning checkpoint that ``torch.load(weights_only=True)`` opens;
``load_tokenizer(json)`` rebuilds either kind from it.
"""

import json
from typing import Annotated

from annotated_types import Gt
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aigc.common.constraints import PositiveInt


class CharTokenizer:
    """One id per character, as in nanoGPT's shakespeare_char: ids follow sorted character order.

    Characters that the training text lacks map to one extra id, U+FFFD (the Unicode
    replacement character), so validation or prompt text never fails to encode. It sorts
    after every ASCII character, so on tiny-shakespeare ids 0-64 are nanoGPT's and 65 is U+FFFD.
    """

    kind = "char"
    unknown = "\ufffd"

    def __init__(self):
        self.chars: list[str] | None = None

    def fit(self, text: str) -> "CharTokenizer":
        return self._with_chars(sorted(set(text) | {self.unknown}))

    def _with_chars(self, chars: list[str]) -> "CharTokenizer":
        self.chars = list(chars)
        self._ids = {char: i for i, char in enumerate(self.chars)}
        self._unknown_id = self._ids[self.unknown]
        return self

    @property
    def vocab_size(self) -> int:
        return len(self._fitted().chars)

    def encode(self, text: str) -> list[int]:
        ids, unknown = self._fitted()._ids, self._unknown_id
        return [ids.get(char, unknown) for char in text]

    def decode(self, ids: list[int]) -> str:
        chars = self._fitted().chars
        return "".join(chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": self._fitted().chars}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        return cls()._with_chars(json.loads(text)["chars"])

    def _fitted(self) -> "CharTokenizer":
        if self.chars is None:
            raise RuntimeError("CharTokenizer is not fitted: call fit(train_text) first")
        return self


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) trained with Hugging Face ``tokenizers``.

    The base vocabulary is the 256 bytes, so any text encodes and decodes back exactly;
    ``vocab_size`` (the 256 bytes plus the merges) is an upper bound: a small training
    text may stop with fewer merges. Pairs seen fewer than ``min_frequency`` times are
    never merged.
    """

    kind = "bpe"

    def __init__(self, vocab_size: Annotated[int, Gt(256)] = 512, min_frequency: PositiveInt = 2):
        if vocab_size < 256:
            raise ValueError(f"BPE vocab_size={vocab_size} is below the 256 bytes it starts from")
        self.requested_vocab_size = vocab_size
        self.min_frequency = min_frequency
        self._tokenizer: Tokenizer | None = None

    def fit(self, text: str) -> "BPETokenizer":
        tokenizer = _byte_level(Tokenizer(models.BPE()))
        trainer = trainers.BpeTrainer(
            vocab_size=self.requested_vocab_size,
            min_frequency=self.min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in training or not
            special_tokens=[],
            show_progress=False,
        )
        # one string, not lines: training then pre-tokenizes exactly as encode() will
        tokenizer.train_from_iterator([text], trainer=trainer)
        self._tokenizer = tokenizer
        return self

    @property
    def vocab_size(self) -> int:
        return self._fitted().get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._fitted().encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self._fitted().decode(list(ids))

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "vocab_size": self.requested_vocab_size,
                "min_frequency": self.min_frequency,
                "tokenizer": json.loads(self._fitted().to_str()),  # nested, so the artifact reads as one JSON
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        state = json.loads(text)
        tokenizer = cls(vocab_size=state["vocab_size"], min_frequency=state["min_frequency"])
        tokenizer._tokenizer = Tokenizer.from_str(json.dumps(state["tokenizer"]))
        return tokenizer

    def _fitted(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("BPETokenizer is not fitted: call fit(train_text) first")
        return self._tokenizer


def _byte_level(tokenizer: Tokenizer) -> Tokenizer:
    # no prefix space: encode(text) must decode to text itself, not " " + text
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class PretrainedTokenizer:
    """A pretrained model's own tokenizer (``model=hf_causal_lm``): loaded, never fitted.

    ``pretrained`` is a hub name or a ``save_pretrained`` folder. Texts are encoded without
    special tokens (a BOS a model's tokenizer would add to every text has no place inside a
    stream of windows). Only the fast tokenizer (Hugging Face ``tokenizers``) is kept, so the
    JSON holds everything encoding and decoding need and a checkpoint samples without the hub.
    """

    kind = "pretrained"

    def __init__(self, pretrained: str):
        self.pretrained = pretrained
        self._tokenizer: Tokenizer | None = None

    def fit(self, text: str) -> "PretrainedTokenizer":
        from transformers import AutoTokenizer  # a second or two to import: only for pretrained models

        from aigc.common.hub import load_pretrained

        loaded = load_pretrained(AutoTokenizer.from_pretrained, self.pretrained)
        if not loaded.is_fast:
            raise ValueError(f"model.pretrained={self.pretrained} has no fast (tokenizers) tokenizer")
        self._tokenizer = loaded.backend_tokenizer
        return self

    @property
    def vocab_size(self) -> int:
        return self._fitted().get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._fitted().encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._fitted().decode(list(ids))

    def to_json(self) -> str:
        state = {"kind": self.kind, "pretrained": self.pretrained, "tokenizer": json.loads(self._fitted().to_str())}
        return json.dumps(state, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "PretrainedTokenizer":
        state = json.loads(text)
        tokenizer = cls(state["pretrained"])
        tokenizer._tokenizer = Tokenizer.from_str(json.dumps(state["tokenizer"]))
        return tokenizer

    def _fitted(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("PretrainedTokenizer is not loaded: call fit(train_text) first")
        return self._tokenizer


TOKENIZERS = {cls.kind: cls for cls in (CharTokenizer, BPETokenizer, PretrainedTokenizer)}


def load_tokenizer(text: str) -> CharTokenizer | BPETokenizer | PretrainedTokenizer:
    """Rebuild a fitted tokenizer of any kind from its ``to_json()`` string."""
    kind = json.loads(text)["kind"]
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r} (known: {', '.join(TOKENIZERS)})")
    return TOKENIZERS[kind].from_json(text)
