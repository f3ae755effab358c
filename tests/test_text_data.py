"""Text data: corpora, tokenizers and the windows a language model trains on.

Nothing here reaches the network: sockets are blocked, so tiny-shakespeare's download is
exercised up to its error; real text comes from pydoc_data, and a stand-in for tiny-shakespeare
(its length and its 65 characters) is built by the tests.
"""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning import seed_everything
from omegaconf.errors import MissingMandatoryValue

from aigc.data.corpora import TINY_SHAKESPEARE_CHARS, PyDocs, TextFile, TinyShakespeare
from aigc.data.shuffle import EpochLoader
from aigc.data.text import TextDataModule
from aigc.data.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

# tiny-shakespeare's 65 characters (nanoGPT's shakespeare_char vocabulary) and its length
SHAKESPEARE_CHARACTERS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def shakespeare_stand_in(folder: Path) -> Path:
    """A file with tiny-shakespeare's length and characters, in its place under ``folder``."""
    path = folder / TinyShakespeare.filename
    path.write_text((SHAKESPEARE_CHARACTERS * (TINY_SHAKESPEARE_CHARS // 65 + 1))[:TINY_SHAKESPEARE_CHARS])
    return path


pytestmark = pytest.mark.usefixtures("no_network")


def pydocs(tokenizer=None, **kwargs) -> TextDataModule:
    datamodule = TextDataModule(PyDocs(), tokenizer or CharTokenizer(), **kwargs)
    datamodule.setup("fit")
    return datamodule


def test_pydocs_loads_offline_and_splits_90_10_by_position():
    assert getattr(TextDataModule(PyDocs(), CharTokenizer()), "vocab_size", None) is None  # known after setup
    text, location, source = PyDocs().read()
    assert len(text) > 400_000 and "assert" in text and source == "pydoc_data" and "pydoc_data.topics" in location
    datamodule = pydocs()
    cut = int(len(text) * 0.9)
    assert datamodule.train_text == text[:cut] and datamodule.val_text == text[cut:]
    # char tokens are characters: the counts are the split's lengths
    assert (datamodule.train_tokens, datamodule.val_tokens) == (cut, len(text) - cut)
    assert datamodule.source.name == "pydocs" and datamodule.source.source == "pydoc_data"
    assert (datamodule.source.num_train, datamodule.source.num_val) == (cut, len(text) - cut)
    assert datamodule.source.digest == pydocs().source.digest  # the same text, the same digest


def test_char_tokenizer_round_trips_and_maps_unseen_characters_to_one_id():
    text = "To be, or not to be:\nthat is the question.\r\n"
    tokenizer = CharTokenizer().fit(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.vocab_size == len(set(text)) + 1  # + U+FFFD for characters training never saw
    assert tokenizer.encode("é") == tokenizer.encode("日") == tokenizer.encode("\ufffd")
    assert tokenizer.encode("\n ,") == [0, 2, 3]  # sorted order, as nanoGPT's stoi ("\n", "\r", " ", ",")


def test_bpe_is_fitted_on_the_training_split_only(tmp_path):
    # the last 10% is a word the first 90% never contains: it must get no merges
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abab " * 900 + "xyzw " * 100, encoding="utf-8")
    datamodule = TextDataModule(TextFile(str(corpus)), BPETokenizer(vocab_size=300), block_size=8)
    datamodule.setup()
    assert datamodule.val_text == "xyzw " * 100
    tokenizer = datamodule.tokenizer
    assert len(tokenizer.encode("abab")) == 1  # merged: it is all the training text has
    assert len(tokenizer.encode("xyzw")) == 4  # bytes only: validation text was not seen
    assert datamodule.val_tokens == len("xyzw " * 100)
    assert tokenizer.vocab_size < 300  # so little text stops short of the requested size


def test_bpe_round_trips_any_text():
    tokenizer = BPETokenizer(vocab_size=300).fit(PyDocs().read()[0][:50_000])
    for text in ("def f(x):\n\treturn x  # ok\r\n", "héllo wörld, 日本語 🙂", "", "   \n\n  "):
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert 256 < tokenizer.vocab_size <= 300


def test_windows_have_block_size_tokens_and_targets_shifted_by_one():
    datamodule = pydocs(block_size=16, batch_size=4, batches_per_epoch=3)
    batches = list(datamodule.train_dataloader())
    assert len(batches) == len(datamodule.train_dataloader()) == 3
    for x, y in batches:
        assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.tolist(), y.tolist(), strict=False):
            # a window and its next token are a real stretch of the training text
            assert datamodule.tokenizer.decode(row_x + row_y[-1:]) in datamodule.train_text
    assert datamodule.vocab_size == datamodule.tokenizer.vocab_size


def training_loader(epoch: list[int], seed: int = 3, **settings) -> EpochLoader:
    """A run's training loader (the seed set, then the data built), in the trainer's epoch ``epoch[0]``."""
    seed_everything(seed, verbose=False)
    loader = pydocs(**settings).train_dataloader()
    loader.next_epoch = lambda: epoch[0]
    return loader


def test_training_windows_follow_the_seed_and_the_epoch():
    def two_epochs(seed):
        epoch = [0]
        loader = training_loader(epoch, seed, batches_per_epoch=2)
        first = torch.cat([x for x, _ in loader])
        epoch[0] = 1
        return first, torch.cat([x for x, _ in loader])

    first, second = two_epochs(7)
    assert torch.equal(first, two_epochs(7)[0]) and torch.equal(second, two_epochs(7)[1])
    assert not torch.equal(first, second)
    assert not torch.equal(first, two_epochs(8)[0])


@pytest.mark.parametrize("contiguous", [False, True])
def test_training_batches_resume_in_the_middle_of_an_epoch_and_at_its_end(contiguous):
    """A loader state saved after some batches (a preempted run's checkpoint) continues with the
    batches that came next; the next epoch starts at its first batch, also when the epoch ended
    before its data did (trainer.limit_train_batches)."""
    epoch, settings = [0], {"block_size": 8, "batch_size": 2, "batches_per_epoch": 6, "contiguous": contiguous}
    whole = training_loader(epoch, **settings)
    first = [x for x, _ in whole]
    epoch[0] = 1
    second = [x for x, _ in whole][:2]

    epoch[0] = 0
    stopped = training_loader(epoch, **settings)
    started = iter(stopped)
    served = [next(started)[0] for _ in range(3)]
    resumed = training_loader(epoch, **settings)
    resumed.load_state_dict(stopped.state_dict())
    rest = [x for x, _ in resumed]
    assert len(served + rest) == len(first)
    assert all(torch.equal(got, expected) for got, expected in zip(served + rest, first, strict=True))

    epoch[0] = 1  # a checkpoint from the end of epoch 0, after two of its batches
    after_the_end = training_loader(epoch, **settings)
    after_the_end.load_state_dict(stopped.state_dict())
    started = iter(after_the_end)
    assert all(torch.equal(next(started)[0], expected) for expected in second)


def test_validation_windows_are_consecutive_and_deterministic():
    datamodule = pydocs(block_size=32, batch_size=8)
    first = list(datamodule.val_dataloader())
    second = list(datamodule.val_dataloader())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True))
    xs = torch.cat([x for x, _ in first]).flatten()
    ys = torch.cat([y for _, y in first]).flatten()
    val_ids = torch.tensor(datamodule.tokenizer.encode(datamodule.val_text))
    assert len(xs) == (len(val_ids) - 1) // 32 * 32  # every full window, no overlap
    assert torch.equal(xs, val_ids[: len(xs)]) and torch.equal(ys, val_ids[1 : len(xs) + 1])


def test_contiguous_rows_continue_the_previous_batch():
    datamodule = pydocs(block_size=16, batch_size=4, contiguous=True)
    loader = datamodule.train_dataloader()
    stream = datamodule.train_tokens // 4
    assert len(loader) == (stream - 1) // 16  # one pass over the streams
    batches = iter(loader)
    (x0, y0), (x1, _) = next(batches), next(batches)
    assert torch.equal(y0[:, -1], x1[:, 0])
    for i in range(4):  # row i is stream i: the training text from i * stream on
        text = datamodule.tokenizer.decode(x0[i].tolist() + x1[i].tolist())
        assert text == datamodule.train_text[i * stream : i * stream + 32]


def test_text_file_source(tmp_path):
    corpus = tmp_path / "notes.txt"
    corpus.write_bytes("line one\r\nline two ü\n".encode() * 20)
    text, location, source = TextFile(str(corpus)).read()
    assert text == "line one\r\nline two ü\n" * 20  # bytes as they are: "\r\n" kept
    assert (location, source) == (str(corpus), "file")
    with pytest.raises(RuntimeError) as missing:
        TextFile(str(tmp_path / "nope.txt")).read()
    assert str(missing.value) == f"text file not found: data.path={tmp_path / 'nope.txt'} is not a file"


def test_shakespeare_offline_error_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(RuntimeError) as offline:
        TinyShakespeare(str(tmp_path)).read()
    message = str(offline.value)
    assert "\n" not in message
    assert "data.path=<file>" in message and f"paths.data_dir={tmp_path}" in message
    assert "network access attempted in a test" in message  # the download was tried, and failed here
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_shakespeare_from_data_dir_splits_like_nanogpt(tmp_path):
    shakespeare_stand_in(tmp_path)
    datamodule = TextDataModule(TinyShakespeare(str(tmp_path)), CharTokenizer())
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.train_text) + len(datamodule.val_text) == 1_115_394
    assert (len(datamodule.train_text), len(datamodule.val_text)) == (1_003_854, 111_540)
    assert datamodule.vocab_size == 65 + 1  # nanoGPT's 65 characters, + U+FFFD
    assert datamodule.source.source == "local" and datamodule.source.location == str(tmp_path / "tinyshakespeare.txt")
    assert (datamodule.source.num_train, datamodule.source.num_val) == (1_003_854, 111_540)


@pytest.mark.parametrize("tokenizer", [CharTokenizer(), BPETokenizer(vocab_size=300)], ids=["char", "bpe"])
def test_tokenizer_json_survives_a_weights_only_checkpoint(tmp_path, tokenizer):
    text = PyDocs().read()[0][:20_000]
    tokenizer.fit(text)
    torch.save({"tokenizer": tokenizer.to_json()}, tmp_path / "ckpt.pt")
    restored = load_tokenizer(torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"])
    assert type(restored) is type(tokenizer) and restored.vocab_size == tokenizer.vocab_size
    assert restored.encode(text) == tokenizer.encode(text)
    assert restored.decode(restored.encode(text)) == text


def test_text_configs_compose_and_instantiate(compose_cfg, tmp_path):
    datamodule = instantiate(compose_cfg("data=pydocs").data, _convert_="all")
    assert isinstance(datamodule.corpus, PyDocs) and isinstance(datamodule.tokenizer, CharTokenizer)
    assert (datamodule.block_size, datamodule.batch_size) == (64, 12)

    cfg = compose_cfg("data=pydocs", "data/tokenizer=bpe", "data.tokenizer.vocab_size=300")
    datamodule = instantiate(cfg.data, _convert_="all")
    assert isinstance(datamodule.tokenizer, BPETokenizer) and datamodule.tokenizer.requested_vocab_size == 300

    datamodule = instantiate(compose_cfg("data=shakespeare").data, _convert_="all")
    assert datamodule.corpus.data_dir == tmp_path / "data" and datamodule.corpus.path is None

    text_file = shakespeare_stand_in(tmp_path)
    datamodule = instantiate(compose_cfg("data=text", f"data.path={text_file}").data, _convert_="all")
    assert datamodule.corpus.path == text_file
    with pytest.raises(MissingMandatoryValue, match="data.path"):
        instantiate(compose_cfg("data=text").data, _convert_="all")
