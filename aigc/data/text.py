"""Language-model data: a corpus, a tokenizer, and (x, y) windows of token ids.

The text is split by position as nanoGPT's shakespeare_char prepare.py does: the first
90% of the characters train, the rest validate (tiny-shakespeare: 1,003,854 / 111,540),
so numbers compare with nanoGPT's. The tokenizer is fitted on the training text only.

Batches are ``(x, y)``, both int64 ``(batch_size, block_size)``, ``y`` being ``x`` shifted
one token left (the next token at every position).

- Training, by default, draws ``batches_per_epoch`` batches of windows at random offsets,
  like nanoGPT's ``get_batch``. Each epoch's draws follow from the run's seed (``seed=``
  repeats a run), the epoch and the process, and a checkpoint keeps how far the epoch got: a
  run resumed from the middle of an epoch trains on the batches that came next.
- Training with ``contiguous: true`` serves the classic truncated-BPTT layout for a
  recurrent model that carries its hidden state from batch to batch: the training tokens
  are cut into ``batch_size`` equal streams and batch ``k`` row ``i`` is the ``k``-th
  window of stream ``i``, so row ``i`` continues row ``i`` of the previous batch. An epoch
  is one pass over the streams (``batches_per_epoch`` is not used); it starts again at
  the beginning, so reset the state when ``batch_idx == 0``.
- Validation (and test) is every consecutive, non-overlapping window of the validation
  tokens, in order: the same batches every time. The last partial window is left out.

Under DDP each process draws its own random batches (``batches_per_epoch`` each), or
takes its own share of the streams; DataLoader workers split an epoch's batches between them.
"""

import warnings
from functools import partial

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from aigc.common.constraints import NonNegativeInt, OpenFraction, PositiveInt
from aigc.data.corpora import Corpus
from aigc.data.sharding import IGNORE_INDEX, evaluation_data, rank_and_world
from aigc.data.shuffle import EpochLoader, next_epoch
from aigc.data.source import DataSource, digest
from aigc.data.tokenizers import BPETokenizer, CharTokenizer, PretrainedTokenizer

# Lightning warns about every IterableDataset that has __len__, in case workers duplicate data;
# ours splits its batches between workers (and defines __len__ so the epoch length, the progress
# bar and trainer.estimated_stepping_batches are known).
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


class TextDataModule(LightningDataModule):
    """Token windows from ``corpus`` (aigc.data.corpora) encoded by ``tokenizer`` (aigc.data.tokenizers).

    After ``setup``: ``tokenizer`` (fitted), ``vocab_size``, ``train_text``/``val_text`` (the raw
    splits; ``val_text`` is where prompts and their true continuations come from),
    ``train_tokens``/``val_tokens`` (counts) and ``source`` (recorded by the run).
    ``path`` is only there so a config can declare ``data.path`` once and pass it to its corpus.
    """

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: CharTokenizer | BPETokenizer | PretrainedTokenizer,
        block_size: PositiveInt = 64,
        batch_size: PositiveInt = 12,
        num_workers: NonNegativeInt = 0,
        val_fraction: OpenFraction = 0.1,
        batches_per_epoch: PositiveInt = 250,
        contiguous: bool = False,
        path: str | None = None,
    ):
        super().__init__()
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} must be between 0 and 1")
        self.corpus = corpus
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.batches_per_epoch = batches_per_epoch
        self.contiguous = contiguous
        self.path = path
        # built right after the run's seed is set: the seed of the training windows (read now, since
        # restoring a checkpoint's random state changes what torch reports)
        self.windows_seed = torch.initial_seed()
        self.source: DataSource | None = None
        self.train_text: str | None = None
        self.val_text: str | None = None
        self._train_ids: torch.Tensor | None = None
        self._val_ids: torch.Tensor | None = None

    def prepare_data(self) -> None:
        self.corpus.prepare()  # downloads happen once per machine, before every rank reads

    def setup(self, stage: str | None = None) -> None:
        if self._train_ids is not None:
            return
        text, location, source = self.corpus.read()
        print(f"{self.corpus.name} source: {source} ({location})")
        # nanoGPT: train = data[:int(n*0.9)], val = data[int(n*0.9):], on characters, before tokenizing
        cut = int(len(text) * (1 - self.val_fraction))
        self.train_text, self.val_text = text[:cut], text[cut:]
        self.tokenizer.fit(self.train_text)  # never sees the validation text
        self._train_ids = torch.tensor(self.tokenizer.encode(self.train_text), dtype=torch.int64)
        self._val_ids = torch.tensor(self.tokenizer.encode(self.val_text), dtype=torch.int64)
        for split, ids in (("train", self._train_ids), ("val", self._val_ids)):
            if len(ids) <= self.block_size:
                raise ValueError(
                    f"the {split} split of {self.corpus.name} has {len(ids):,} tokens, too few for one window of "
                    f"data.block_size={self.block_size} (+1 target): lower data.block_size or use more text"
                )
        self.source = DataSource(
            name=self.corpus.name,
            source=source,
            location=location,
            digest=digest(np.frombuffer(text.encode("utf-8"), dtype=np.uint8)),
            num_train=len(self._train_ids),
            num_val=len(self._val_ids),
        )

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the data (Lightning stores it under the class name):
        the fitted tokenizer as a JSON string, so sampling from a checkpoint needs nothing else."""
        return {"tokenizer": self.tokenizer.to_json()} if self._train_ids is not None else {}

    # Known only after setup(); AttributeError before, so getattr(datamodule, "vocab_size", None) works.
    @property
    def vocab_size(self) -> int:
        return self._ready().tokenizer.vocab_size

    @property
    def train_tokens(self) -> int:
        return len(self._ready()._train_ids)

    @property
    def val_tokens(self) -> int:
        return len(self._ready()._val_ids)

    def _ready(self) -> "TextDataModule":
        if self._train_ids is None:
            raise AttributeError("the text is read and tokenized in setup(): call datamodule.setup() first")
        return self

    def train_dataloader(self) -> DataLoader:
        windows = (ContiguousWindows if self.contiguous else RandomWindows)(
            self._train_ids, self.block_size, self.batch_size, self.batches_per_epoch, self.windows_seed
        )
        # the dataset yields whole batches (batch_size=None: no re-batching); resumable mid-epoch
        # (aigc.data.shuffle), told the epoch before its workers copy it (so they are not kept from one
        # epoch to the next); the loader's own generator for its workers' seeds (torch's global one
        # would shift the model's random numbers when a resumed run starts its loader)
        return EpochLoader(
            windows,
            batch_size=None,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.windows_seed),
            next_epoch=partial(next_epoch, self),
        )

    def val_dataloader(self) -> DataLoader:
        # a blank window (targets ignored) pads the processes' shares under DDP: each window scores once
        blank = (torch.zeros(self.block_size, dtype=torch.long), torch.full((self.block_size,), IGNORE_INDEX))
        windows, sampler = evaluation_data(ConsecutiveWindows(self._val_ids, self.block_size), blank)
        return DataLoader(
            windows,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()  # language models are scored on the held-out split


class ConsecutiveWindows(Dataset):
    """Window ``k`` is tokens ``[k*T, (k+1)*T)`` and its targets one token later."""

    def __init__(self, ids: torch.Tensor, block_size: int):
        self.ids, self.block_size = ids, block_size

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block_size

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = k * self.block_size
        return self.ids[start : start + self.block_size], self.ids[start + 1 : start + self.block_size + 1]


class _TrainBatches(IterableDataset):
    """Yields whole training batches; batch ``k`` of an epoch goes to DataLoader worker ``k % num_workers``.

    The DataLoader takes batches from its workers in turn, so they arrive in order ``k = 0, 1, ...``.
    Resumable in the middle of an epoch: the loader (``aigc.data.shuffle.EpochLoader``) tells the
    epoch, and keeps ``state_dict`` (the seed, how many of the epoch's batches were served) in
    the run's checkpoints; a state loaded into the same epoch continues with the batches that
    come next.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int, batches_per_epoch: int, seed: int = 0):
        self.ids, self.block_size, self.batch_size = ids, block_size, batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed, self.epoch = seed, 0
        self._served = 0  # batches of this epoch yielded (by this worker)
        self._loaded: dict | None = None

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "served": self._served}

    def load_state_dict(self, state: dict) -> None:
        self._loaded = state

    def __iter__(self):
        worker = get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        mine = range(first, len(self), step)
        loaded, self._loaded, skip = self._loaded, None, 0
        if loaded is not None and loaded["served"] < len(mine):
            self.seed, skip = loaded["seed"], loaded["served"]
        self.start_epoch()
        self._served = 0
        for k in mine:
            batch = self.batch(k)  # made also when skipped: the draws that follow are the epoch's own
            self._served += 1
            if self._served > skip:
                yield batch

    def start_epoch(self) -> None:
        """Make what the epoch's batches are drawn from."""

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class RandomWindows(_TrainBatches):
    """nanoGPT's get_batch: ``batch_size`` windows at uniformly random offsets, ``batches_per_epoch`` times."""

    def __len__(self) -> int:
        return self.batches_per_epoch

    def start_epoch(self) -> None:
        # the epoch's windows follow from the run's seed, the epoch and the process, never from
        # torch's global generator (whose draws a resumed run would make at other moments): each
        # epoch anew, each DDP process its own, and the same again when a run resumes
        mixed = np.random.SeedSequence([self.seed, self.epoch, rank_and_world()[0]]).generate_state(1, np.uint64)
        self.generator = torch.Generator().manual_seed(int(mixed[0]))
        self.offsets = torch.arange(self.block_size)

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.ids) - self.block_size, (self.batch_size, 1), generator=self.generator)
        index = starts + self.offsets
        return self.ids[index], self.ids[index + 1]


class ContiguousWindows(_TrainBatches):
    """Truncated-BPTT layout: row ``i`` of batch ``k`` is window ``k`` of stream ``i`` (see the module doc).

    Under DDP the tokens are cut into ``batch_size * world_size`` streams and each process
    takes ``batch_size`` of them, so every process's rows still continue its own previous rows.
    """

    def streams(self) -> torch.Tensor:
        rank, world = rank_and_world()
        rows = self.batch_size * world
        length = len(self.ids) // rows
        if length <= self.block_size:
            raise ValueError(
                f"{len(self.ids):,} training tokens make {rows} streams of {length} tokens, too short for "
                f"data.block_size={self.block_size}: lower data.batch_size or data.block_size"
            )
        streams = self.ids[: rows * length].view(rows, length)
        return streams[rank * self.batch_size : (rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return (self.streams().shape[1] - 1) // self.block_size

    def start_epoch(self) -> None:
        self._streams = self.streams()

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = k * self.block_size
        window = self._streams[:, start : start + self.block_size + 1]
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()
