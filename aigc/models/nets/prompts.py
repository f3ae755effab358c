"""Prompts as token ids: CLIP's byte-level BPE (Radford et al., 2021), the tokenizer of every Stable
Diffusion text encoder, read without a download.

CLIP's 49,408-token vocabulary ships inside the open_clip_torch wheel as its merge list
(``bpe_simple_vocab_16e6.txt.gz``); ``clip_tokenizer`` rebuilds from it the vocabulary that
Hugging Face's ``openai/clip-vit-*`` tokenizers hold (byte symbols, the same with ``</w>``, the
merges in order, then ``<|startoftext|>`` and ``<|endoftext|>``) and returns transformers'
``CLIPTokenizer`` over it. A pretrained text encoder brings its own (``CLIPTokenizer.from_pretrained``).
"""

import functools
import gzip
import importlib.util
from pathlib import Path

import torch
from transformers import CLIPTokenizer

MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # CLIP's: the vocabulary is 256 bytes x 2 (with and without </w>) + merges + 2


@functools.cache
def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer (lower-cased, byte-level BPE, 49,408 tokens), from open_clip's shipped merges."""
    spec = importlib.util.find_spec("open_clip")  # its folder only: importing open_clip loads timm
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("CLIP's vocabulary ships with open_clip_torch: pip install open_clip_torch")
    path = Path(spec.submodule_search_locations[0]) / MERGES_FILE
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")[1 : NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=merges)


def token_ids(tokenizer, prompts: list[str], context_length: int) -> torch.Tensor:
    """(N, context_length) ids: start, the prompt's tokens, end, then padding (Stable Diffusion's layout).

    A prompt that does not fit is refused with the limit named, never cut silently: what a prompt
    asks for at its end (a colour, a position) would be lost."""
    encoded = tokenizer(list(prompts), padding="max_length", max_length=context_length, truncation=False)["input_ids"]
    for prompt, ids in zip(prompts, encoded, strict=True):
        if len(ids) > context_length:
            raise ValueError(
                f"the prompt {_shown(prompt)} is {len(ids) - 2} tokens, more than the text encoder reads "
                f"({context_length - 2}): shorten it, or train with a longer "
                "model.net.context_length"
            )
    return torch.tensor(encoded, dtype=torch.long)


def _shown(prompt: str) -> str:
    return repr(prompt if len(prompt) <= 50 else prompt[:47] + "...")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 bytes to printable characters (the BPE's base symbols)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))
