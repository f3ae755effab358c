"""Pretrained Hugging Face causal LMs (model=hf_causal_lm): fine-tuned, sampled and scored like the
built-in language models, offline, against a tiny random GPT-2 saved with save_pretrained."""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aigc.common.hub import PretrainedUnavailable, load_pretrained
from aigc.data.tokenizers import PretrainedTokenizer, load_tokenizer
from aigc.evaluate import evaluate
from aigc.jobs.training import train
from aigc.models.nets.pretrained import PretrainedCausalLM
from aigc.models.pretrained_language_model import PretrainedLanguageModel
from aigc.sample import sample
from tests.conftest import all_runs, client_for, composed, run_aigc
from tests.helpers.tiny_gpt2 import save_tiny_gpt2

TEXT = "def f(x):\n    return x ** 2  # squares ünïcödé"


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-3)


def test_the_model_s_own_tokenizer_round_trips_and_travels_as_json(tiny_gpt2: Path):
    tokenizer = PretrainedTokenizer(str(tiny_gpt2)).fit("not used: a pretrained tokenizer is not fitted")
    reference = AutoTokenizer.from_pretrained(tiny_gpt2)
    ids = tokenizer.encode(TEXT)
    assert ids == reference(TEXT, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.vocab_size == len(reference)
    restored = load_tokenizer(tokenizer.to_json())  # what a checkpoint keeps: no folder needed
    assert isinstance(restored, PretrainedTokenizer) and restored.encode(TEXT) == ids


def test_the_cache_gives_the_logits_of_the_whole_sequence(tiny_gpt2: Path):
    net = PretrainedCausalLM(vocab_size=512, pretrained=str(tiny_gpt2)).eval()
    ids = torch.randint(512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole, no_cache = net(ids)
        first, cache = net(ids[:, :8], net.new_cache())
        rest, cache = net(ids[:, 8:], cache)
    assert no_cache is None  # training and scoring keep no keys and values
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, rtol=1e-4, atol=1e-4)
    # past the model's 128 positions: one clear error, not an index error deep in the model
    with torch.no_grad(), pytest.raises(ValueError, match="130 tokens is more than the model's context of 128"):
        net(torch.zeros(1, 10, dtype=torch.long), net(torch.zeros(1, 120, dtype=torch.long), net.new_cache())[1])


def test_lora_trains_the_adapters_only_and_a_checkpoint_rebuilds_without_the_pretrained_files(tiny_gpt2: Path):
    lora = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["c_attn"]}
    model = PretrainedLanguageModel(str(tiny_gpt2), adamw, peft="lora", lora=lora)
    net = model.build(512)
    counts = net.parameter_counts()
    assert 0 < counts["params_trainable"] < counts["params_total"] / 10
    optimized = [p for group in model.configure_optimizers().param_groups for p in group["params"]]
    assert sum(p.numel() for p in optimized) == counts["params_trainable"]

    # a sampling machine has the checkpoint only: the architecture rebuilds the net, the weights fill it
    elsewhere = PretrainedLanguageModel(
        "/nowhere/tiny-gpt2", adamw, peft="lora", lora=lora, architecture=net.architecture
    )
    elsewhere.build(512)
    elsewhere.load_state_dict(model.state_dict())
    ids = torch.arange(10).view(1, -1)
    assert model.generate(ids[0], 8, temperature=1.0, seed=3) == elsewhere.generate(ids[0], 8, temperature=1.0, seed=3)


def test_without_a_local_copy_or_a_hub_it_stops_at_once_with_the_fix(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(
        PretrainedUnavailable, match=r"model.pretrained=gpt2 .* can't be reached.*model.pretrained=<dir>"
    ):
        load_pretrained(AutoModelForCausalLM.from_pretrained, "gpt2")
    assert time.monotonic() - start < 10  # not transformers' minute of retries
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedUnavailable, match="HF_HUB_OFFLINE is set"):
        load_pretrained(AutoTokenizer.from_pretrained, "gpt2")
    with pytest.raises(PretrainedUnavailable, match="no such folder"):
        load_pretrained(AutoTokenizer.from_pretrained, "./models/gpt2")


@pytest.mark.slow
def test_fine_tune_on_two_processes_sample_resume_and_score_the_base_model_offline(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch
):
    """Fine-tuned on 2 processes (a command of its own), then sampled, scored and resumed here."""
    offline = {"HF_HUB_OFFLINE": "1"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "tiny-gpt2"
    shutil.copytree(tiny_gpt2, folder)
    model = ("model=hf_causal_lm", f"model.pretrained={folder}", "data=pydocs")
    lora = ("model.peft=lora", "model.optimizer.lr=1e-3")
    trained = run_aigc(tmp_path, *model, *lora, "debug=fast", "trainer=ddp_cpu", env=offline)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client = client_for(tmp_path)
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert {"val/loss", "val/ppl", "val/bleu", "val/rouge1", "train/loss"} <= set(run.data.metrics)
    params = run.data.params
    assert 0 < int(params["params_trainable"]) < int(params["params_total"]) and params["trainer.devices"] == "2"
    tokenizer = client.download_artifacts(run.info.run_id, "data/tokenizer.json", str(tmp_path))
    assert json.loads(Path(tokenizer).read_text())["kind"] == "pretrained"

    # the checkpoint holds what sampling needs: the pretrained folder is not
    shutil.rmtree(folder)
    with composed("sample", tmp_path, f"run_id={run.info.run_id}", "prompt=def", "max_new_tokens=12") as cfg:
        text = sample(cfg)
    assert text.startswith("def") and len(text.strip()) > 3
    # scoring rebuilds the data, which needs the tokenizer's folder: a failure leaves the run as it ended
    with composed("evaluate", tmp_path, f"run_id={run.info.run_id}") as cfg, pytest.raises(PretrainedUnavailable):
        evaluate(cfg)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    shutil.copytree(tiny_gpt2, folder)

    resume = (*model, *lora, "debug=fast", "trainer.max_epochs=3", f"resume={run.info.run_id}")
    with composed("train", tmp_path, *resume) as cfg:
        train(cfg)
    (run,) = all_runs(client)
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/loss")) == [2, 5, 8]

    with composed("evaluate", tmp_path, *model, "+trainer.limit_test_batches=4") as cfg:
        evaluate(cfg)
    base = next(r for r in all_runs(client) if r.info.run_id != run.info.run_id)
    assert base.info.status == "FINISHED" and base.data.tags["aigc.task"] == "evaluate"
    assert base.info.experiment_id == run.info.experiment_id  # side by side with the fine-tuned run
    assert {"test/loss", "test/ppl", "test/bleu", "test/rouge1"} <= set(base.data.metrics)
    assert base.data.metrics["test/ppl"] == pytest.approx(2.718281828 ** base.data.metrics["test/loss"], rel=1e-4)
