import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
HELPERS = Path(__file__).resolve().parent / "helpers"


@pytest.fixture
def compose_cfg(tmp_path):
    """Compose the real configs as `python -m aigc.run` would, rooted in a temporary directory."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/out", *overrides],
                return_hydra_config=True,
            )
        HydraConfig().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: proves that code works offline without trying."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def run_aigc(cwd: Path, *overrides: str, timeout: float = 300, env: dict | None = None, module: str = "aigc.run"):
    """Run `python -m aigc.run ...` as a user would, in `cwd`."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env |= {"PYTHONPATH": str(HELPERS), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def client_for(directory: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{directory}/mlflow.db")


def only_run(client: MlflowClient):
    runs = [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]
    assert len(runs) == 1, f"expected one run, found {len(runs)}"
    return runs[0]
