"""What runs of earlier versions of aigc stored still loads: a checkpoint and an MLflow model
that a tiny GAN run wrote before aigc's modules moved into packages (tests/fixtures/earlier_gan:
``last.ckpt``, and ``model/``, its MLflow model folder, whose ``pyfunc_model.py`` imports
``aigc.serving.GeneratorModel``)."""

import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from aigc.common.stored import CONFIG_KEY, check_targets, read_checkpoint
from aigc.evaluate import evaluate
from aigc.serving.generator import Generator
from tests.conftest import CONF_DIR

EARLIER = Path(__file__).parent / "fixtures" / "earlier_gan"


def test_the_model_folder_of_an_earlier_run_loads_and_generates_what_its_checkpoint_does(tmp_path):
    assert "from aigc.serving import GeneratorModel" in (EARLIER / "model" / "pyfunc_model.py").read_text()
    folder = shutil.copytree(EARLIER / "model", tmp_path / "model")  # MLflow may write beside what it loads
    served = mlflow.pyfunc.load_model(str(folder)).predict(pd.DataFrame({"num_samples": [3]}), params={"seed": 5})
    sampled = Generator.from_file(EARLIER / "last.ckpt").images(3, seed=5)
    assert served.shape == (3, 28, 28, 1) and served.dtype == np.uint8
    assert np.array_equal(served, sampled)


def test_the_checkpoint_of_an_earlier_run_passes_the_allow_list_and_is_scored(tmp_path):
    checkpoint = read_checkpoint(EARLIER / "last.ckpt")
    check_targets(checkpoint[CONFIG_KEY]["model"])  # its classes are where they were, or re-exported
    GlobalHydra.instance().clear()
    overrides = [
        f"ckpt_path={EARLIER / 'last.ckpt'}",
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path}/out",
        "metrics.num_samples=20",
        "metrics.inception=false",
        "trainer.accelerator=cpu",
        "+trainer.limit_test_batches=1",
        "logger=none",  # its run is in the store of the machine that trained it
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        scores = evaluate(cfg)
    GlobalHydra.instance().clear()
    assert {"test/fid_mnist", "test/is_mnist", "test/loss_d"} <= set(scores)
    assert all(torch.isfinite(torch.tensor(value)) for value in scores.values())
