"""A tiny random GPT-2 and its tokenizer, saved as a pretrained model folder (``save_pretrained``).

The tests and the fine-tuning benchmark use it where a user would name ``gpt2``: nothing is
downloaded. The tokenizer is GPT-2's scheme (byte-level BPE, ``<|endoftext|>``) trained on
CPython's help topics (``pydoc_data.topics``, shipped with Python).

    python tests/helpers/tiny_gpt2.py <folder>
"""

import sys
from pathlib import Path


def save_tiny_gpt2(folder: str | Path, vocab_size: int = 512, n_layer: int = 2, n_embd: int = 64) -> Path:
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(topics.values(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=128,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    folder = Path(folder)
    GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(save_tiny_gpt2(sys.argv[1]))
