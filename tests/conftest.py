import atexit
import functools
import gc
import os
import shutil

# One compute thread per process: pytest's two workers, and the commands and DDP workers they
# start, share 2 cores; torch's default of a thread per core oversubscribes them (measured: a
# quarter of the suite's time). Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
HELPERS = Path(__file__).resolve().parent / "helpers"

# Every model family (conf/model/*.yaml): the config, fuzz and evaluation tests loop over them,
# so a new family is tested as soon as its yaml exists.
MODELS = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
INSTANTIATE_KEYS = {"_target_", "_partial_", "_args_", "_convert_", "_recursive_", "defaults"}


def scratch_folder() -> Path:
    """A folder of this test process's own, removed when the process exits (the helpers below make
    theirs once per process; left behind, a suite run leaked ~50 MB of them into /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="aigc-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def shared_store() -> str:
    """A SQLite store for the tests of this process that make no run (building, composing): its
    tables, which take MLflow a second or two to make, are made once."""
    return f"sqlite:///{scratch_folder()}/mlflow.db"


@functools.cache
def tiny_gpt2() -> str:
    """A tiny random GPT-2 saved as a pretrained model folder, made once per test process."""
    from tests.helpers.tiny_gpt2 import save_tiny_gpt2

    return str(save_tiny_gpt2(scratch_folder() / "tiny-gpt2"))


@functools.cache
def tiny_image_folder() -> str:
    """A folder of six captioned 8x8 PNGs in two class subfolders (data=image_folder), made once per test process."""
    from PIL import Image

    folder = scratch_folder() / "images"
    for label, name in enumerate(("circle", "square")):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (200 * label, 40 * i, 90)).save(folder / name / f"{i}.png")
            (folder / name / f"{i}.txt").write_text(f"a {name}, shade {i}")
    return str(folder)


@functools.cache
def tiny_stable_diffusion() -> str:
    """A tiny random SD 1.x-shaped diffusers pipeline folder (model=stable_diffusion), made once per test process."""
    from tests.helpers.tiny_stable_diffusion import save_tiny_stable_diffusion

    return str(save_tiny_stable_diffusion(scratch_folder() / "tiny-sd"))


# what the tests give for a key that a model's config leaves to the command line (???), by key or
# by (model, key); data.path: for data=image_folder (data=text is given a file of its own)
REQUIRED_VALUES = {
    ("stable_diffusion", "model.pretrained"): tiny_stable_diffusion,
    "model.pretrained": tiny_gpt2,
    "data.path": tiny_image_folder,
}


def required_value(model: str, key: str):
    """The function that makes the tests' value of ``key`` for ``model`` (None: the tests have none)."""
    return REQUIRED_VALUES.get((model, key), REQUIRED_VALUES.get(key))


def model_yaml(model: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml"), resolve=False)


def uses_images(model: str) -> bool:
    """Image models read ${data.image_shape}, which image data declares; the others read text data."""
    return "data.image_shape" in (CONF_DIR / "model" / f"{model}.yaml").read_text()


def model_overrides(model: str) -> list[str]:
    """``model=<model>``, data that fits it, and a value for each key its config leaves ??? (one
    the tests don't know fails here, naming the key: give it a value in ``REQUIRED_VALUES``)."""
    required = [f"model.{key}" for key, value in leaves(model_yaml(model)) if value == "???"]
    unknown = [key for key in required if required_value(model, key) is None]
    assert not unknown, f"conf/model/{model}.yaml leaves {unknown} to the command line: add them to REQUIRED_VALUES"
    return [
        f"model={model}",
        f"data={fitting_data(model)}",
        *(f"{key}={required_value(model, key)()}" for key in required),
    ]


def fitting_data(model: str) -> str:
    """Models of prompts read ${data.captions}, which captioned data declares (data=shapes ships)."""
    if "data.captions" in (CONF_DIR / "model" / f"{model}.yaml").read_text():
        return "shapes"
    return "mnist" if uses_images(model) else "pydocs"


def leaves(config, prefix: str = ""):
    """(dotted key, value) of every value a user may set in a config: not Hydra's keys."""
    for key, value in config.items():
        if key in INSTANTIATE_KEYS:
            continue
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


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


@contextmanager
def composed(config_name: str, folder: Path, *overrides: str) -> Iterator[DictConfig]:
    """The config `python -m aigc.<command> <overrides>` composes when run in ``folder``, with
    Hydra's runtime set as a command's is (its own output folder): a command's function called
    inside the block does in this process what the command does, without the seconds a process
    takes to import torch, Lightning and MLflow."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=[f"paths.root_dir={folder}", *overrides], return_hydra_config=True)
            with open_dict(cfg.hydra.runtime):
                cfg.hydra.runtime.output_dir = str(folder / "logs" / config_name / uuid.uuid4().hex)
                cfg.hydra.runtime.cwd = str(folder)
            Path(cfg.hydra.runtime.output_dir).mkdir(parents=True)
            HydraConfig().set_config(cfg)
            yield cfg
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: proves that code works offline without trying."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def user_env(env: dict | None = None) -> dict:
    """The environment of a user's shell, plus tests/helpers on the path (for failure injection)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "AIGC_SWEEP_PARENT_RUN_ID")}
    return full_env | {"PYTHONPATH": str(HELPERS), **(env or {})}


def output_folders(root: Path) -> list[Path]:
    """The output folders of the commands run in ``root`` (each holds Hydra's ``.hydra``)."""
    return [p.parent for p in root.glob("logs/**/.hydra")]


def run_aigc(cwd: Path, *overrides: str, timeout: float = 300, env: dict | None = None, module: str = "aigc.run"):
    """Run `python -m aigc.run ...` as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=user_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_aigc(cwd: Path, *overrides: str, module: str = "aigc.run") -> subprocess.Popen:
    """Start `python -m aigc.run ...` in the background; stdout and stderr together."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# A sweep of two short VAE runs, for the tests of sweeps, the compare report and the MLflow UI.
VAE_SWEEP = (
    "-m",
    "model=vae",
    "model.beta=0.5,4",
    "debug=fast",
    "trainer.max_epochs=1",
    "data.download=false",
    "register=vae-of-a-sweep",
)


@pytest.fixture(scope="session")
def vae_sweep(tmp_path_factory) -> Path:
    """The folder where `python -m aigc.run -m model=vae model.beta=0.5,4 ...` ran (once per session)."""
    folder = tmp_path_factory.mktemp("vae_sweep")
    result = run_aigc(folder, *VAE_SWEEP)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def client_for(directory: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{directory}/mlflow.db")


def new_experiment(client: MlflowClient, name: str, directory: Path) -> str:
    """An experiment whose artifacts stay in ``directory`` (a SQLite store's default is ./mlruns)."""
    return client.create_experiment(name, artifact_location=(directory / "artifacts").as_uri())


def all_runs(client: MlflowClient) -> list:
    return [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]


def only_run(client: MlflowClient):
    runs = all_runs(client)
    assert len(runs) == 1, f"expected one run, found {len(runs)}"
    return runs[0]


def interrupt_when(process: subprocess.Popen, folder: Path, ready, signum: int, what: str, timeout: float = 180) -> str:
    """Send ``signum`` to ``process`` once ``ready(client)`` holds for the store in ``folder``
    (polled); returns what the process printed."""
    try:
        client = client_for(folder)
        deadline = time.monotonic() + timeout
        while not ((folder / "mlflow.db").exists() and ready(client)):
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"{what} never happened")
            time.sleep(0.3)
        process.send_signal(signum)
        return process.communicate(timeout=120)[0]
    finally:
        process.kill()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Python's collector never walks again what this process has made so far, torch's and the
    other libraries' objects among it, as ``aigc.common.collector.started`` does in a command: the
    tests that run in this process took 8% longer with it walking them."""
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, each in its place among them. ``pytest -n 2 --dist loadgroup`` hands
    tests out in this order, and files are collected alphabetically: the end-to-end runs of the last
    files (sweeps, tracking faults) started last, and a worker could be left running them for
    minutes while the other had nothing to do. Started first, they are followed by hundreds of
    short tests, which even out the ends of the two workers."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
