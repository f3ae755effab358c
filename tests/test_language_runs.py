"""Both language models train on pydocs, log perplexity/BLEU/ROUGE and samples, and sample from the store."""

from pathlib import Path

import pytest

from aigc.jobs.training import train
from aigc.sample import sample
from tests.conftest import client_for, composed, only_run, run_aigc

pytestmark = pytest.mark.slow
TEXT_METRICS = {
    "train/loss",
    "train/tokens_per_sec",
    "val/loss",
    "val/ppl",
    "val/bleu",
    "val/rouge1",
    "val/rouge2",
    "val/rougeL",
}


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_language_model_run_logs_text_metrics_and_samples_from_the_store(tmp_path: Path, model: str):
    with composed(
        "train", tmp_path, f"model={model}", "data=pydocs", "debug=fast", "logger.mlflow.system_metrics_s=60"
    ) as cfg:
        train(cfg)
    client = client_for(tmp_path)
    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert TEXT_METRICS <= set(run.data.metrics)
    assert 0 <= run.data.metrics["val/bleu"] <= 100 and 0 <= run.data.metrics["val/rouge1"] <= 1
    # the learning rate of each parameter group (the GPT has two: decayed and not), and the machine
    learning_rates = {"transformer": {"lr-AdamW/pg1", "lr-AdamW/pg2"}, "lstm": {"lr-AdamW"}}[model]
    assert learning_rates <= set(run.data.metrics)
    # ... sampled for a minute, but a shorter run still ends with one point for the time it ran
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    tags = run.data.tags
    assert tags["data.source"] == "pydoc_data" and tags["aigc.precision"].startswith(
        "32-true (auto: a CPU"
    )  # language models: float32 on CPUs
    assert tags["metrics.text.num_prompts"] == "4" and tags["metrics.text.prompt_tokens"] == "16"
    assert "tok:13a" in tags["metrics.text.bleu_signature"]
    run_id = run.info.run_id

    # debug=fast: 2 epochs of 3 batches, every step logged; each epoch's loss is its steps' mean
    steps = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    epochs = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss_epoch"))
    assert [step for step, _ in steps] == list(range(6)) and len(epochs) == 2
    for epoch, (_, loss) in enumerate(epochs):
        assert loss == pytest.approx(sum(v for _, v in steps[3 * epoch : 3 * epoch + 3]) / 3, rel=1e-5)
    rates = client.get_metric_history(run_id, "train/tokens_per_sec")
    assert sorted(m.step for m in rates) == list(range(6)) and all(m.value > 0 for m in rates)
    samples = [a.path for a in client.list_artifacts(run_id, "samples")]
    assert len(samples) == 1 and all(p.endswith(".txt") for p in samples)  # scored after the last epoch only
    assert "data/tokenizer.json" in {a.path for a in client.list_artifacts(run_id, "data")}

    # the checkpoint carries the config and the tokenizer: the store alone samples (the GPT in a fresh process)
    sampling = (f"run_id={run_id}", "prompt=The", "max_new_tokens=20", "temperature=0")
    if model == "transformer":
        sampled = run_aigc(tmp_path, *sampling, module="aigc.sample")
        assert sampled.returncode == 0, sampled.stderr[-2000:]
        text = sampled.stdout
    else:
        with composed("sample", tmp_path, *sampling) as cfg:
            text = sample(cfg)
    assert text.startswith("The") and len(text.strip()) > len("The")
