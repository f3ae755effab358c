"""Every config group option composes and instantiates; bad overrides fail the way Hydra users expect."""

from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from mlflow import MlflowClient

from aigc.callbacks import ReconstructionGrid, TextMetrics
from aigc.common.capabilities import Contract, MissingCapability
from aigc.jobs.training import build_training, train
from aigc.tracking.run.logger import MLflowLogger
from aigc.trainer.distributed import DDPStrategy
from tests.conftest import CONF_DIR, run_aigc

GROUPS = ["data", "data/tokenizer", "model", "trainer", "logger", "callbacks", "debug", "experiment", "metrics"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]


PRETRAINED = ["model=hf_causal_lm", "model.pretrained=gpt2"]


def uses_images(group: str, option: str) -> bool:
    """Image models read ${data.image_shape}, which image data declares: pair like with like."""
    text = (CONF_DIR / group / f"{option}.yaml").read_text()
    return "image_shape" in text


def partner(group: str, option: str) -> list[str]:
    if group == "data":
        # data=text needs a file; building does not read it
        path = [f"data.path={CONF_DIR / 'train.yaml'}"] if option == "text" else []
        return [] if uses_images(group, option) else ["model=transformer", *path]
    if group == "data/tokenizer":
        # the pretrained tokenizer is the pretrained model's (building loads neither)
        return ["data=pydocs", *(PRETRAINED if option == "pretrained" else ["model=transformer"])]
    if group == "model":
        return [] if uses_images(group, option) else ["data=pydocs", *(PRETRAINED if option == "hf_causal_lm" else [])]
    return []


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(compose_cfg, group, option):
    cfg = compose_cfg(*partner(group, option), f"{group}={option}")
    if group == "trainer" and cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(InstantiationException, match="No supported gpu backend"):
            build_training(cfg)
        return
    job = build_training(cfg)
    assert job.model is not None and job.datamodule is not None and job.trainer is not None
    assert (job.tracker.logger is None) == (cfg.get("logger") is None or "mlflow" not in cfg.logger)


def test_image_shape_comes_from_data_config(compose_cfg):
    cfg = compose_cfg("data.image_shape=[1,32,32]")
    job = build_training(cfg)
    fake = job.model.sample(2)
    assert fake.shape == (2, 1, 32, 32)


def test_tracking_uri_honours_environment(compose_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    job = build_training(compose_cfg())
    assert isinstance(job.tracker.logger, MLflowLogger)
    assert job.tracker.logger.tracking_uri == f"sqlite:///{tmp_path}/elsewhere.db"


def test_seed_makes_a_run_repeatable(compose_cfg, tmp_path):
    overrides = ("debug=fast", "logger=none", "data.download=false", "seed=7")
    first = train(compose_cfg(*overrides))
    second = train(compose_cfg(*overrides, f"paths.output_dir={tmp_path}/second"))  # a run's folder is its own
    assert first is not None and first == second


def test_scoring_every_few_epochs_scores_and_checkpoints_those_epochs_and_the_last(compose_cfg, tmp_path):
    overrides = ("debug=fast", "data.download=false", "metrics.inception=false")
    cfg = compose_cfg(*overrides, "trainer.max_epochs=5", "metrics.every_n_epochs=2")
    assert train(cfg) is not None  # the objective, val/fid_mnist, from the last scored epoch
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.mlflow.experiment_name).experiment_id])
    history = client.get_metric_history(run.info.run_id, "val/fid_mnist")
    assert len(history) == 3  # epochs 2 and 4 (every 2nd) and 5 (the last)
    checkpoints = tmp_path / "out" / "checkpoints"
    saved = sorted(p.name for p in checkpoints.iterdir())
    assert saved in [[f"best-epoch00{epoch}.ckpt", "last.ckpt"] for epoch in (1, 3, 4)]  # 0-based
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 4  # resume starts after the last


def test_cfg_job_prints_the_composed_config(tmp_path: Path):
    result = run_aigc(tmp_path, "--cfg", "job", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "_target_: aigc.models.gan.GAN" in result.stdout
    assert "_target_: aigc.data.mnist.MNISTDataModule" in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=nonexistent", "Could not find 'model/nonexistent'"),
        ("trainer.max_epoch=3", "Key 'max_epoch' is not in struct"),
    ],
)
def test_bad_override_gives_hydra_error_and_nonzero_exit(tmp_path: Path, override, message):
    result = run_aigc(tmp_path, override, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_slurm_launcher_is_sized_from_the_trainer(compose_cfg):
    cfg = compose_cfg("hydra/launcher=slurm", "trainer=multinode", "trainer.num_nodes=3", "trainer.devices=4")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 4, 4)


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_cpu", "multinode"])
def test_trainer_configs_instantiate(compose_cfg, trainer):
    cfg = compose_cfg(f"trainer={trainer}")
    if trainer in ("ddp", "ddp_cpu", "multinode"):
        strategy = instantiate(cfg.trainer.strategy)
        assert isinstance(strategy, DDPStrategy)
        assert strategy.process_group_backend == ("gloo" if trainer == "ddp_cpu" else "nccl")


@pytest.mark.parametrize(
    ("overrides", "family"),
    [
        (("model=gan",), {"sample_grid", "image_metrics"}),
        (("model=vae",), {"sample_grid", "image_metrics", "reconstruction_grid"}),
        (("model=transformer", "data=pydocs"), {"text_metrics"}),
        (("model=lstm", "data=pydocs"), {"text_metrics"}),
        (("model=hf_causal_lm", "data=pydocs", "model.pretrained=gpt2"), {"text_metrics"}),
    ],
)
def test_a_model_family_brings_its_callbacks_and_they_find_what_they_need(compose_cfg, overrides, family):
    cfg = compose_cfg(*overrides)
    shared = {"model_checkpoint", "learning_rates", "stop_on_non_finite_loss", "float32_matmul_precision"}
    assert set(cfg.callbacks) == shared | {"progress_bar"} | family
    model, datamodule = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
    for node in cfg.callbacks.values():
        callback = instantiate(node)
        if isinstance(callback, Contract):
            callback.check(model, datamodule)


def test_a_callback_that_can_not_apply_says_which_contract_is_missing(compose_cfg):
    cfg = compose_cfg("model=gan")
    model, datamodule = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
    with pytest.raises(MissingCapability) as missing:
        TextMetrics().check(model, datamodule)
    assert str(missing.value).startswith("TextMetrics needs a model that meets GeneratesText (generate(prompt_ids")
    assert "GAN does not" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(MissingCapability, match="ReconstructionGrid needs a model that meets Reconstructs"):
        ReconstructionGrid().check(model, datamodule)
