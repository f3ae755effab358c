"""Every config group option composes and instantiates; bad overrides fail the way Hydra users expect."""

import os
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from aigc.callbacks import ReconstructionGrid, TextMetrics
from aigc.common.capabilities import Contract, MissingCapability
from aigc.jobs.training import build_training, train
from aigc.tracking.run.logger import MLflowLogger
from aigc.trainer.distributed import DDPStrategy
from tests.conftest import CONF_DIR, MODELS, model_overrides, model_yaml, run_aigc, shared_store, tiny_image_folder

GROUPS = ["data", "data/tokenizer", "model", "trainer", "logger", "callbacks", "debug", "experiment", "metrics"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]

# the model whose tokenizer data/tokenizer=pretrained takes
PRETRAINED_MODEL = next(model for model in MODELS if "pretrained" in model_yaml(model))


def partner(group: str, option: str) -> list[str]:
    if group == "data":
        # data=text needs a file; building does not read it
        path = {"text": [f"data.path={CONF_DIR / 'train.yaml'}"], "image_folder": [f"data.path={tiny_image_folder()}"]}
        return (
            path.get(option, [])
            if "image_shape" in (CONF_DIR / "data" / f"{option}.yaml").read_text()
            else ["model=transformer", *path.get(option, [])]
        )
    if group == "data/tokenizer":
        return model_overrides(PRETRAINED_MODEL if option == "pretrained" else "transformer")
    if group == "model":
        return model_overrides(option)
    return []


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(compose_cfg, group, option, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_store())  # building makes no run: one store for all
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


def test_a_run_leaves_its_process_tracking_uri_as_it_was(compose_cfg, tmp_path, monkeypatch):
    """Lightning points its process's MLflow at the run's store (MLFLOW_TRACKING_URI too): the next
    run of the same process (a sweep's job, a notebook's cell) would land there, whatever it says."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train(compose_cfg("debug=fast", "data.download=false", "metrics.inception=false", "trainer.max_epochs=1"))
    assert "MLFLOW_TRACKING_URI" not in os.environ


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


@pytest.mark.parametrize("model", MODELS)
def test_a_model_family_brings_its_callbacks_and_they_find_what_they_need(compose_cfg, model):
    """Each family has its callbacks file, named after the model, and its model and data meet every
    need of every callback it brings (conf/callbacks/family/<model>.yaml)."""
    family_file = CONF_DIR / "callbacks" / "family" / f"{model}.yaml"
    assert family_file.is_file(), f"model={model} has no {family_file.relative_to(CONF_DIR.parent)}"
    cfg = compose_cfg(*model_overrides(model))
    shared = set(OmegaConf.load(CONF_DIR / "callbacks" / "default.yaml"))
    assert shared < set(cfg.callbacks), f"model={model} lost callbacks of callbacks/default.yaml"
    model_, datamodule = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
    for node in cfg.callbacks.values():
        callback = instantiate(node)
        if isinstance(callback, Contract):
            callback.check(model_, datamodule)


def test_a_callback_that_can_not_apply_says_which_contract_is_missing(compose_cfg):
    cfg = compose_cfg("model=gan")
    model, datamodule = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
    with pytest.raises(MissingCapability) as missing:
        TextMetrics().check(model, datamodule)
    assert str(missing.value).startswith("TextMetrics needs a model that meets GeneratesText (generate(prompt_ids")
    assert "GAN does not" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(MissingCapability, match="ReconstructionGrid needs a model that meets Reconstructs"):
        ReconstructionGrid().check(model, datamodule)
