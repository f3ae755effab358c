"""The language models: GPT (KV cache, causality, AdamW groups), LSTM (state), the shared
sampling, and the LightningModule both train with (logging, perplexity, checkpoints)."""

import math
from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from lightning import LightningDataModule, Trainer
from omegaconf import OmegaConf
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from aigc.models.language_model import LanguageModel, WarmupCosineLR
from aigc.models.nets.gpt import GPT
from aigc.models.nets.recurrent import RecurrentLanguageModel
from aigc.models.sampling import filter_logits, generate, next_token
from tests.conftest import CONF_DIR

VOCAB = 11


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: a second thread gains nothing, and when the cores are busy its
    OpenMP spin-waiting made the training tests 30 times slower (measured: 0.7 s -> 21 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_gpt(**kwargs) -> GPT:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)
    return GPT(**(settings | kwargs)).eval()


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


# --- GPT ------------------------------------------------------------------------------------


@torch.no_grad()
def test_gpt_with_float32_products_in_bf16_gives_the_float32_outputs_to_bf16_rounding():
    # float32 matmul precision "medium" (bf16 products on AMX CPUs): the attention runs SDPA's
    # math kernel there, with the causal mask and a KV cache as in float32
    net, prompt = tiny_gpt(), tokens(2, 8)
    exact, cache = net(prompt[:, :6])
    exact_next, _ = net(prompt[:, 6:], cache)
    torch.set_float32_matmul_precision("medium")
    try:
        rounded, cache = net(prompt[:, :6])
        rounded_next, _ = net(prompt[:, 6:], cache)
    finally:
        torch.set_float32_matmul_precision("highest")
    torch.testing.assert_close(rounded, exact, atol=0.05, rtol=0.05)
    torch.testing.assert_close(rounded_next, exact_next, atol=0.05, rtol=0.05)


@torch.no_grad()
def test_gpt_cached_generation_matches_full_recomputation_at_every_step():
    net = tiny_gpt()
    prompt = tokens(2, 5)
    context, cache, new_ids = prompt, None, prompt
    # 15 steps from a 5-token prompt: past block_size=12, where the cache falls back to recomputing
    for _ in range(15):
        cached, cache = net(new_ids, cache)
        full, _ = net(context[:, -net.block_size :])
        assert cached.shape == (2, new_ids.shape[1], VOCAB)
        torch.testing.assert_close(cached[:, -1], full[:, -1], atol=1e-5, rtol=0)
        new_ids = full[:, -1].argmax(-1, keepdim=True)
        context = torch.cat([context, new_ids], dim=1)
    assert len(cache) == net.block_size

    def cached_step(ids, state):
        logits, state = net(ids, state)
        return logits[:, -1], state

    history = {"ids": None}

    def uncached_step(ids, _):
        history["ids"] = ids if history["ids"] is None else torch.cat([history["ids"], ids], dim=1)
        return net(history["ids"][:, -net.block_size :])[0][:, -1], None

    greedy = partial(generate, prompt_ids=prompt, max_new_tokens=15, temperature=0)
    assert torch.equal(greedy(cached_step), greedy(uncached_step))
    assert torch.equal(greedy(cached_step), context[:, prompt.shape[1] :])


@torch.no_grad()
def test_gpt_cache_takes_several_new_tokens_at_once():
    net = tiny_gpt()
    idx = tokens(2, 9)
    full, _ = net(idx)
    _, cache = net(idx[:, :5])
    extended, cache = net(idx[:, 5:], cache)  # 4 new queries after 5 cached positions
    torch.testing.assert_close(extended, full[:, 5:], atol=1e-5, rtol=0)
    assert len(cache) == 9 and cache.keys[0].shape == (2, 2, 9, 8)


@torch.no_grad()
def test_gpt_is_causal():
    net = tiny_gpt()
    idx = tokens(1, 10)
    changed = idx.clone()
    changed[0, 6] = (idx[0, 6] + 1) % VOCAB
    before, after = net(idx)[0], net(changed)[0]
    torch.testing.assert_close(before[:, :6], after[:, :6], atol=0, rtol=0)
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_gpt_rejects_contexts_longer_than_block_size_and_ties_its_head():
    net = tiny_gpt()
    with pytest.raises(ValueError, match="block_size=12"):
        net(tokens(1, 13))
    assert net.lm_head.weight is net.wte.weight


def test_gpt_weight_decay_groups_skip_biases_norms_and_embeddings():
    net = tiny_gpt(bias=True)
    decay, no_decay = net.param_groups()
    assert "weight_decay" not in decay and no_decay["weight_decay"] == 0.0
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    names = {id(p): name for name, p in net.named_parameters()}
    decayed = {names[i] for i in ids(decay["params"])}
    assert ids(decay["params"]).isdisjoint(ids(no_decay["params"]))
    assert ids(decay["params"]) | ids(no_decay["params"]) == ids(net.parameters())
    assert decayed == {n for n in names.values() if n.endswith(("qkv.weight", "proj.weight", "fc.weight"))}
    assert not any(n.endswith("bias") or "ln" in n or n.startswith(("wte", "wpe")) for n in decayed)

    model = LanguageModel(
        net=partial(GPT, block_size=12, n_layer=1, n_head=2, n_embd=8),
        optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1),
        vocab_size=VOCAB,
    )
    optimizer = model.configure_optimizers()
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.1, 0.0]


# --- LSTM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("embedding_dim", [16, 8])  # equal to hidden_size: no projection; else one
@torch.no_grad()
def test_recurrent_shapes_tied_head_and_state_carry(embedding_dim, cell):
    torch.manual_seed(0)
    net = RecurrentLanguageModel(VOCAB, embedding_dim, hidden_size=16, num_layers=2, dropout=0.1, cell=cell).eval()
    assert type(net.rnn).__name__ == cell.upper()
    idx = tokens(3, 10)
    logits, state = net(idx)
    assert logits.shape == (3, 10, VOCAB)
    assert len(state) == (2 if cell == "lstm" else 1) and all(s.shape == (2, 3, 16) for s in state)  # (h, c) or (h,)
    assert net.head.weight is net.embedding.weight
    first, state = net(idx[:, :4])
    rest, _ = net(idx[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), logits, atol=1e-6, rtol=0)
    assert not torch.allclose(net(idx[:, 4:])[0], rest)  # a fresh state forgets the start


# --- sampling -------------------------------------------------------------------------------


def random_step(ids, state):
    """A stand-in model: logits that depend on the tokens so far."""
    seen = ids if state is None else torch.cat([state, ids], dim=1)
    logits = torch.randn(ids.shape[0], VOCAB, generator=torch.Generator().manual_seed(int(seen.sum()) + seen.shape[1]))
    return logits * 3, seen


def test_sampling_is_seeded_and_greedy_in_every_limit():
    prompt = tokens(2, 3)
    sample = partial(generate, random_step, prompt, max_new_tokens=12)
    assert torch.equal(sample(seed=1), sample(seed=1))
    assert not torch.equal(sample(seed=1), sample(seed=2))
    greedy = sample(temperature=0)
    assert greedy.shape == (2, 12)
    assert torch.equal(sample(top_k=1, seed=3), greedy)
    assert torch.equal(sample(top_p=1e-6, seed=4), greedy)
    assert torch.equal(sample(temperature=1e-4, seed=5), greedy)
    assert sample(max_new_tokens=0).shape == (2, 0)


def test_greedy_is_argmax_and_the_filters_keep_what_they_should():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    assert next_token(logits, temperature=0).tolist() == [0, 3]
    # no filter: the whole distribution, only rescaled by the temperature
    torch.testing.assert_close(filter_logits(logits, temperature=2.0, top_k=None, top_p=1.0), logits / 2)
    kept = lambda **kw: torch.isfinite(filter_logits(logits, **kw)).sum(-1).tolist()  # noqa: E731
    assert kept(top_k=2) == [2, 2]
    assert kept(top_p=0.45) == [1, 1]  # 0.5 alone reaches 0.45
    assert kept(top_p=0.7) == [2, 2]  # 0.5 + 0.3
    assert kept(top_p=0.9) == [3, 3]
    assert kept(top_p=0.0) == [1, 1]  # never empty
    assert kept(top_k=3, top_p=0.9) == [3, 3]
    drawn = {next_token(logits, top_k=2, generator=torch.Generator().manual_seed(s))[0].item() for s in range(50)}
    assert drawn == {0, 1}


# --- the LightningModule --------------------------------------------------------------------

PATTERN = 8  # tokens 0..7 repeating: next-token prediction can be learnt to ~zero loss


class PatternData(LightningDataModule):
    """A stand-in for the text datamodule: windows of a repeating pattern, (x, y) shifted by one."""

    vocab_size = PATTERN

    def __init__(self, block_size: int = 8, batch_size: int = 8, val_windows: int = 5):
        super().__init__()
        self.block_size, self.batch_size = block_size, batch_size
        stream = torch.arange(400) % PATTERN
        self.train = self._windows(stream, range(0, 300, 3))
        # random tokens for validation: losses differ per batch; batches of 2, 2 and 1
        random = torch.randint(PATTERN, (200,), generator=torch.Generator().manual_seed(0))
        self.val = self._windows(random, range(0, block_size * val_windows, block_size))

    def _windows(self, stream, offsets):
        x = torch.stack([stream[o : o + self.block_size] for o in offsets])
        y = torch.stack([stream[o + 1 : o + 1 + self.block_size] for o in offsets])
        return TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=2)


NETS = {
    "gpt": partial(GPT, block_size=8, n_layer=2, n_head=2, n_embd=32),
    "lstm": partial(RecurrentLanguageModel, embedding_dim=32, hidden_size=32, num_layers=1, dropout=0.0),
    "gru": partial(RecurrentLanguageModel, embedding_dim=32, hidden_size=32, num_layers=1, dropout=0.0, cell="gru"),
}


def language_model(name: str, **kwargs) -> LanguageModel:
    return LanguageModel(
        net=NETS[name],
        optimizer=partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.0),
        scheduler=partial(WarmupCosineLR, warmup_steps=5, decay_steps=60),
        grad_clip=1.0,
        **kwargs,
    )


def trainer(tmp_path, **kwargs) -> Trainer:
    settings = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    return Trainer(**(settings | kwargs))


@pytest.mark.parametrize("name", ["gpt", "lstm"])
@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_trains_logs_and_round_trips_through_a_checkpoint(tmp_path, name):
    torch.manual_seed(0)
    data, model = PatternData(), language_model(name)
    assert model.net is None  # built by configure_model from data.vocab_size

    # val/loss is the mean over every validation token, val/ppl its exponential
    (scores,) = trainer(tmp_path).validate(model, datamodule=data, verbose=False)
    with torch.no_grad():
        per_batch = [
            F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten(), reduction="none") for x, y in data.val_dataloader()
        ]
    token_mean = torch.cat(per_batch).mean().item()
    batch_mean = torch.stack([nll.mean() for nll in per_batch]).mean().item()
    assert abs(token_mean - batch_mean) > 1e-4  # the last batch is smaller: the two differ
    assert scores["val/loss"] == pytest.approx(token_mean, rel=1e-6)
    assert scores["val/ppl"] == pytest.approx(math.exp(scores["val/loss"]), rel=1e-5)

    x, y = data.train[:8]
    with torch.no_grad():
        loss_before = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).item()
    fit = trainer(tmp_path, max_steps=60, limit_val_batches=1)
    fit.fit(model, datamodule=data)
    metrics = fit.callback_metrics
    assert {"train/loss", "train/loss_epoch", "train/tokens_per_sec", "val/loss", "val/ppl"} <= set(metrics)
    assert metrics["train/tokens_per_sec"] > 0
    assert loss_before > 1.5  # about log(8) = 2.08: no better than chance
    assert metrics["train/loss"] < 0.3
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)
    lr = fit.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-2 * 0.1)  # the cosine reached its floor at step 60
    assert model.generate([0, 1, 2], max_new_tokens=6, temperature=0) == [3, 4, 5, 6, 7, 0]
    assert model.generate([5], 10, seed=3, top_k=3) == model.generate(torch.tensor([5]), 10, seed=3, top_k=3)
    assert not hasattr(model, "sample")  # that name means an image generator to the image callbacks

    # checkpoint -> hyperparameters -> build -> load_state_dict, with plain containers only
    path = tmp_path / "model.ckpt"
    fit.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["vocab_size"] == PATTERN
    restored = language_model(name)
    restored.build(checkpoint["hyper_parameters"]["vocab_size"])
    restored.load_state_dict(checkpoint["state_dict"])
    x = data.val[:2][0]
    model.eval()
    torch.testing.assert_close(restored.eval()(x)[0], model(x)[0])
    loaded = LanguageModel.load_from_checkpoint(path, net=NETS[name], optimizer=model.optimizer, weights_only=True)
    torch.testing.assert_close(loaded.eval()(x)[0], model(x)[0])

    # resuming: configure_model builds the net before Lightning restores the weights
    resume = trainer(tmp_path, max_steps=62, limit_val_batches=1)
    resume.fit(language_model(name), datamodule=data, ckpt_path=path, weights_only=True)
    assert resume.global_step == 62


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_carry_state_keeps_the_recurrent_state_between_batches_and_needs_a_recurrent_net(tmp_path, name):
    torch.manual_seed(0)
    model = language_model(name, carry_state=True)
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, datamodule=PatternData())
    assert len(model._state) == (2 if name == "lstm" else 1)
    assert all(s.shape == (1, 8, 32) and not s.requires_grad for s in model._state)
    model.on_train_epoch_start()
    assert model._state is None
    with pytest.raises(ValueError, match="carry_state=true needs a recurrent net"):
        language_model("gpt", carry_state=True).build(PATTERN)


def test_a_net_is_built_once_per_vocabulary_and_compiled_in_place():
    model = language_model("gpt", vocab_size=PATTERN, compile=True)
    assert model.net.vocab_size == PATTERN and model.build(PATTERN) is model.net
    with pytest.raises(ValueError, match="another tokenizer"):
        model.build(PATTERN + 1)
    keys = set(model.state_dict())
    model.configure_model()  # compiles lazily (nothing runs here): checkpoints keep their keys
    assert set(model.state_dict()) == keys and not any("_orig_mod" in key for key in keys)


def test_warmup_then_cosine_to_a_floor():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = WarmupCosineLR(optimizer, warmup_steps=10, decay_steps=110, min_lr_ratio=0.1)
    factors = [schedule.factor(step) for step in range(130)]
    assert factors[0] == pytest.approx(1 / 11) and factors[10] == 1.0
    assert factors[60] == pytest.approx(0.55)  # halfway down the cosine
    assert factors[110:] == [0.1] * 20
    assert all(a <= b for a, b in zip(factors[:10], factors[1:11], strict=False))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / 11)


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_model_configs_build_with_the_vocabulary_from_the_data(name):
    cfg = OmegaConf.create({"data": {"block_size": 16}, "model": OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")})
    model = instantiate(cfg.model, _convert_="all")
    assert "vocab_size" not in OmegaConf.to_container(cfg.model.net)
    model.build(vocab_size=65)
    logits, _ = model(torch.zeros(2, 16, dtype=torch.long))
    assert logits.shape == (2, 16, 65)
    assert OmegaConf.load(CONF_DIR / "objective" / f"{name}.yaml") == {"metric": "val/loss", "mode": "min"}
    if name == "transformer":  # nanoGPT's shakespeare_char CPU settings
        assert (len(model.net.blocks), model.net.wte.embedding_dim, model.net.block_size) == (4, 128, 16)
        scheduler = model.configure_optimizers()["lr_scheduler"]
        assert scheduler["interval"] == "step" and scheduler["scheduler"].decay_steps == 2000
