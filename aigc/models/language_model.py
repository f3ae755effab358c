"""An autoregressive language model as a LightningModule; the net (GPT or LSTM) comes from config.

Batches are ``(x, y)`` token ids of shape (B, T) with ``y`` = ``x`` shifted by one, and the
net maps ``(x, state)`` to ``(logits, state)``. Training minimises the mean cross-entropy
of the next token, in nats per token.

The vocabulary is known only once the datamodule has fitted its tokenizer, so ``net`` is a
partial missing ``vocab_size``; Lightning's ``configure_model`` finishes it from
``trainer.datamodule.vocab_size`` and the size is stored in the hyperparameters. Restoring
from a checkpoint outside a Trainer (sample and evaluate scripts)::

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = hydra.utils.instantiate(run_config.model)      # net still a partial
    model.build(checkpoint["hyper_parameters"]["vocab_size"])
    model.load_state_dict(checkpoint["state_dict"])

Logged: ``train/loss`` (per step, and ``train/loss_epoch``), ``train/tokens_per_sec`` (over the
steps since the previous point) and ``train/tokens_per_sec_epoch``,
``val/loss`` and ``val/ppl`` (``test/*`` likewise), where ``val/loss`` is the mean NLL over
every token of the validation set and ``val/ppl`` its exponential.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from lightning import LightningModule
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import LRScheduler

from aigc.common.constraints import NonNegativeInt, PositiveFloat, PositiveInt, Probability
from aigc.models import sampling
from aigc.models.batches import IGNORED_TARGET
from aigc.models.training_log import TrainingLog


class WarmupCosineLR(LRScheduler):
    """nanoGPT's learning-rate schedule, stepped once per optimizer step: linear warmup over
    ``warmup_steps``, then a cosine from the base lr down to ``min_lr_ratio`` times it at
    ``decay_steps``, constant after that."""

    def __init__(
        self,
        optimizer,
        warmup_steps: NonNegativeInt,
        decay_steps: PositiveInt,
        min_lr_ratio: Probability = 0.1,
        last_epoch: int = -1,
    ):
        self.check_arguments(warmup_steps=warmup_steps, decay_steps=decay_steps)
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def check_arguments(warmup_steps: int, decay_steps: int, **_) -> None:
        """The cosine starts where the warmup ends (``aigc.common.constraints``)."""
        if decay_steps <= warmup_steps:
            raise ValueError(f"decay_steps={decay_steps} must be greater than warmup_steps={warmup_steps}")

    def factor(self, step: int) -> float:
        """The multiple of the base learning rate used at optimizer step ``step`` (from 0)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if step >= self.decay_steps:
            return self.min_lr_ratio
        progress = (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)
        return self.min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - self.min_lr_ratio)

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]


@dataclass
class _Tally:
    """What training adds up over a stretch of batches."""

    tokens: int = 0
    seconds: float = 0.0


class LanguageModel(LightningModule):
    """Args:
    net: a partial of the net taking ``vocab_size`` (``_partial_: true`` in config).
    optimizer: a partial of the optimizer; it gets the net's ``param_groups()`` when the net
        has them (the GPT: no weight decay on biases, norms, embeddings), else its parameters.
    scheduler: a partial of a learning-rate scheduler, stepped every optimizer step; or None.
    grad_clip: max global gradient norm (None: whatever the Trainer's ``gradient_clip_val`` says).
    carry_state: for recurrent nets (the LSTM): start each training batch from the previous
        batch's final hidden state, detached (truncated backpropagation through time), instead
        of zeros. It helps only when row i of each batch continues row i of the previous one
        (a datamodule that streams the text in order, e.g. ``data.contiguous=true``); with
        randomly drawn windows leave it off. The state is reset at each epoch and whenever the
        batch size changes; validation and test always start each window from zeros, so their
        scores compare with the Transformer's.
    compile: ``torch.compile`` the net for training (sampling runs it eagerly: its shapes
        change every step).
    vocab_size: build the net at once (set by ``load_from_checkpoint`` from the hyperparameters).
    """

    # trainer.precision=auto keeps float32 on a CPU: there the default GPT (0.8M parameters) runs
    # slower in bf16 and the LSTM hardly faster (experiments/precision.md)
    faster_in_bf16_on_cpu = False
    # what it logs while fitting (what may be monitored: aigc.common.capabilities); its callbacks declare theirs
    logged_metrics = (
        *TrainingLog.names("train/loss"),
        "train/tokens_per_sec",
        "train/tokens_per_sec_epoch",
        "val/loss",
        "val/ppl",
    )

    def __init__(
        self,
        net: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        grad_clip: PositiveFloat | None = None,
        carry_state: bool = False,
        compile: bool = False,
        vocab_size: PositiveInt | None = None,
    ):
        super().__init__()
        # Only plain values go into checkpoints; the net is rebuilt from the run's config.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.make_net = net
        self.net: nn.Module | None = None
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_clip = grad_clip
        self.carry_state = carry_state
        self._nll_sum = self._num_tokens = None  # over a whole validation or test run
        self._state = None  # the hidden state carried between training batches
        self._compiled = False
        self._clock = 0.0
        self._epoch, self._window = _Tally(), _Tally()  # throughput: this epoch's, since the last point logged
        self._training_log = TrainingLog()
        if vocab_size is not None:
            self.build(vocab_size)

    def build(self, vocab_size: int) -> nn.Module:
        """Make the net for ``vocab_size`` tokens (once) and record the size in the hyperparameters."""
        if self.net is not None:
            if vocab_size != self.hparams.vocab_size:
                raise ValueError(
                    f"the net was built for {self.hparams.vocab_size} tokens but the data has {vocab_size}: "
                    "was the checkpoint trained with another tokenizer?"
                )
            return self.net
        net = self.make_net(vocab_size=vocab_size)
        if self.carry_state and not getattr(net, "recurrent", False):
            raise ValueError(f"carry_state=true needs a recurrent net (e.g. model=lstm), not {type(net).__name__}")
        self.net = net
        self.hparams.vocab_size = vocab_size
        return net

    def configure_model(self) -> None:
        # Called by every trainer.fit/validate/test after datamodule.setup, before a checkpoint
        # is restored: the vocabulary is known here and the weights have somewhere to go.
        # (load_from_checkpoint calls it too, without a Trainer, having passed vocab_size.)
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # not attached to a Trainer
            datamodule = None
        vocab_size = getattr(datamodule, "vocab_size", None)
        if vocab_size is not None:
            self.build(vocab_size)
        elif self.net is None:
            raise RuntimeError(
                "LanguageModel learns its vocabulary size from the datamodule: pass a datamodule with a "
                "`vocab_size` to the Trainer, or call model.build(vocab_size) first"
            )
        if self.hparams.compile and not self._compiled:
            self.net.compile()  # in place: the state dict keeps its keys
            self._compiled = True

    def forward(self, idx: torch.Tensor, state=None):
        """Next-token logits (B, T, vocab_size) for token ids (B, T), and the net's state after them."""
        return self.net(idx, state)

    # --- training -------------------------------------------------------------------------

    def configure_optimizers(self):
        params = self.net.param_groups() if hasattr(self.net, "param_groups") else self.net.parameters()
        optimizer = self.optimizer(params=params)
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning calls this before every optimizer step (after unscaling, under mixed
        # precision); the model's grad_clip takes the Trainer's place when set.
        if self.grad_clip:
            gradient_clip_val, gradient_clip_algorithm = self.grad_clip, "norm"
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_epoch_start(self) -> None:
        self._state = None
        self._epoch = _Tally()
        self._window = _Tally()
        self._clock = time.perf_counter()

    def training_step(self, batch, batch_idx):
        x, y = batch
        state = self._state if self.carry_state and self._fits(self._state, x) else None
        logits, state = self.net(x, state)
        if self.carry_state:
            # keep the values, cut the graph: gradients flow back one window only
            self._state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        # logged when Lightning writes it; its epoch mean, train/loss_epoch, when the epoch ends
        self._training_log.step(self, {"train/loss": loss}, len(x))
        return loss

    @staticmethod
    def _fits(state, x: torch.Tensor) -> bool:
        return state is not None and state[0].shape[1] == x.shape[0]  # (h, c) are (layers, batch, hidden)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # Throughput over the wall time since the previous batch ended: loading this batch,
        # forward, backward and optimizer step, nothing excluded. All processes' tokens count
        # (each takes a batch of the same shape). On a GPU the clock reads when the CPU has
        # queued the step; the queue is bounded, so over many steps the rate is the real one.
        now = time.perf_counter()
        tokens = batch[0].numel() * self.trainer.world_size
        for tally in (self._epoch, self._window):
            tally.tokens += tokens
            tally.seconds += now - self._clock
        self._clock = now
        # The loggers write every log_every_n_steps optimizer steps (Lightning's own test, as seen
        # from this hook): log the rate over all the batches since the last point written.
        every = self.trainer.log_every_n_steps
        if every and self.global_step % every == 0:
            self.log("train/tokens_per_sec", self._window.tokens / self._window.seconds)
            self._window = _Tally()

    def on_train_epoch_end(self) -> None:
        self._training_log.epoch_end(self)
        if self._epoch.seconds > 0:
            self.log("train/tokens_per_sec_epoch", self._epoch.tokens / self._epoch.seconds, sync_dist=True)

    def on_validation_end(self) -> None:
        # Validation (and the checkpoint saved after it) is not training time.
        self._clock = time.perf_counter()

    # --- scoring --------------------------------------------------------------------------

    # The loss is the mean NLL over every token of the run, not a mean of batch means (the last
    # batch may be smaller), and the perplexity its exponential, not a mean of batch perplexities:
    # sums are kept over the run, added up across processes, and divided once.

    def on_validation_epoch_start(self) -> None:
        self._start_scoring()

    def validation_step(self, batch, batch_idx):
        self._score(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_start(self) -> None:
        self._start_scoring()

    def test_step(self, batch, batch_idx):
        self._score(batch)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def _start_scoring(self) -> None:
        self._nll_sum = torch.zeros((), device=self.device)
        self._num_tokens = torch.zeros((), dtype=torch.long, device=self.device)

    def _score(self, batch) -> None:
        x, y = batch
        logits, _ = self.net(x)  # every window starts from a fresh state
        # blank windows that pad a process's share under DDP count nowhere
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum", ignore_index=IGNORED_TARGET)
        self._nll_sum += nll.float()
        self._num_tokens += (y != IGNORED_TARGET).sum()

    def _log_scores(self, stage: str) -> None:
        nll_sum = self.trainer.strategy.reduce(self._nll_sum, reduce_op="sum")
        num_tokens = self.trainer.strategy.reduce(self._num_tokens, reduce_op="sum")
        loss = nll_sum / num_tokens
        # already the same on every process; sync_dist (a mean of equal values) only tells Lightning so
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log(f"{stage}/ppl", loss.exp(), sync_dist=True)

    # --- sampling -------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: list[int] | torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> list[int]:
        """The ids of ``max_new_tokens`` tokens continuing ``prompt_ids`` (the prompt not
        included). ``temperature=0`` is greedy; ``seed`` fixes the draws on every device.

        Named ``generate``, not ``sample``: image callbacks take a module with ``sample(n, seed)``
        for an image generator, and the text callbacks and ``aigc.sample`` call ``generate``."""
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.device).view(1, -1)

        def step(ids, state):
            if state is None and hasattr(self.net, "new_cache"):
                state = self.net.new_cache()  # a net that keeps a cache only when handed one (Hugging Face's)
            # net.forward, not net(): a compiled net would recompile for every new shape
            logits, state = self.net.forward(ids, state)
            return logits[:, -1], state

        was_training = self.net.training
        self.net.eval()  # no dropout
        try:
            new = sampling.generate(step, prompt, max_new_tokens, temperature, top_k, top_p, seed)
        finally:
            self.net.train(was_training)
        return new[0].tolist()
