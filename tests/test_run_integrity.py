"""A run's record is its own, true, and safe to open: one folder per command, checkpoints that
only its own run resumes from, no code run from a stored config, secrets recorded as text."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.utils import setup_globals
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aigc.common.stored import NotACheckpoint, UnsafeConfig, check_targets, read_checkpoint
from aigc.data.tokenizers import CharTokenizer
from aigc.evaluate import evaluate
from aigc.jobs.training import train
from aigc.trainer.checkpoint_io import AtomicCheckpointIO
from tests.conftest import CONF_DIR, MODELS, client_for, composed, model_overrides, run_aigc, user_env

SECRET = "tok-3f9a-SECRET-do-not-log"
VAE = ("model=vae", "debug=fast", "data.download=false", "metrics.inception=false")


class Payload:
    """Unpickling this writes a marker file: what a planted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


# the tests on two_runs share one worker, so its two runs are made once (--dist loadgroup), not on each
SAME_SECOND = pytest.mark.xdist_group("two_runs")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    """Two VAE runs started at the same moment into the same folder name (what two commands
    started in the same second get from Hydra's default ``<date>_<time>`` folder), each given a
    secret through ``${oc.env:...}``."""
    folder = tmp_path_factory.mktemp("same_second")
    same_name = f"hydra.run.dir=${{aigc.unique_folder:{folder}/logs/same}}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "aigc.run", *VAE, f"seed={seed}", "+extra.token=${oc.env:MY_API_TOKEN}", same_name],
            cwd=folder,
            env=user_env({"MY_API_TOKEN": SECRET}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=False):
        assert process.returncode == 0, output[-3000:]
    client = client_for(folder)
    runs = client.search_runs([client.get_experiment_by_name("vae-mnist").experiment_id])
    return {"folder": folder, "client": client, "runs": sorted(runs, key=lambda run: run.data.params["seed"])}


@pytest.mark.slow
@SAME_SECOND
def test_runs_started_at_once_get_two_folders_and_their_own_last_artifacts(two_runs, tmp_path):
    client, runs = two_runs["client"], two_runs["runs"]
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    folders = [Path(run.data.tags["aigc.checkpoints"]) for run in runs]
    assert sorted(folder.parent.name for folder in folders) == ["same", "same_1"]
    for run in runs:
        last = client.download_artifacts(run.info.run_id, "last/last.ckpt", str(tmp_path / run.info.run_id))
        assert torch.load(last, weights_only=True)["aigc_run_id"] == run.info.run_id


def test_the_default_run_folder_is_created_exclusively_but_shared_by_a_slurm_steps_tasks(tmp_path, monkeypatch):
    setup_globals()  # Hydra's own resolvers: ${now:}
    hydra = OmegaConf.load(CONF_DIR / "hydra/default.yaml")
    config = OmegaConf.create({"paths": {"log_dir": str(tmp_path)}, "task_name": "train", "hydra": hydra})

    def folder() -> str:  # the run folder that a new command's config resolves to
        return OmegaConf.create(OmegaConf.to_container(config)).hydra.run.dir

    first, second = folder(), folder()  # two commands in the same second
    assert Path(second) == Path(f"{first}_1") and Path(first).is_dir()
    for key, value in {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2"}.items():
        monkeypatch.setenv(key, value)
    task_0, task_1 = folder(), folder()  # the two tasks of a job step, started by srun
    assert task_0 == task_1 == str(tmp_path / "train/runs/slurm-77.0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task (srun --pty bash): a command's own folder
    assert len({folder(), folder()}) == 2


@pytest.mark.slow
@SAME_SECOND
def test_an_env_secret_never_reaches_the_store_the_artifacts_or_the_checkpoints(two_runs):
    files = [path for path in two_runs["folder"].rglob("*") if path.is_file()]
    assert any(path.suffix == ".ckpt" for path in files) and any(path.name == "mlflow.db" for path in files)
    leaking = [str(path) for path in files if SECRET.encode() in path.read_bytes()]
    assert leaking == []
    run = two_runs["runs"][0]
    assert run.data.params["extra.token"] == "${oc.env:MY_API_TOKEN}"
    assert "+extra.token=${oc.env:MY_API_TOKEN}" in run.info.run_name
    assert "+extra.token=${oc.env:MY_API_TOKEN}" in run.data.tags["aigc.overrides"]


def train_here(folder: Path, *overrides: str) -> None:
    """What `python -m aigc.run <overrides>` does in ``folder``, in this process."""
    with composed("train", folder, *overrides) as cfg:
        train(cfg)


@pytest.mark.slow
@SAME_SECOND
def test_a_command_given_a_folder_that_holds_another_runs_checkpoints_is_refused_before_a_run_exists(two_runs):
    taken = Path(two_runs["runs"][0].data.tags["aigc.checkpoints"]).parent
    with pytest.raises(FileExistsError, match=f"the checkpoint folder {taken}/checkpoints exists: another run"):
        train_here(two_runs["folder"], *VAE, "seed=3", f"paths.output_dir={taken}")
    assert len(two_runs["client"].search_runs([two_runs["runs"][0].info.experiment_id])) == 2


@pytest.mark.slow
@SAME_SECOND
def test_resume_refuses_checkpoints_that_another_run_wrote(two_runs, capsys):
    first, second = two_runs["runs"]
    client = two_runs["client"]
    client.set_tag(
        second.info.run_id, "aigc.checkpoints", first.data.tags["aigc.checkpoints"]
    )  # as a shared folder left it
    try:
        train_here(two_runs["folder"], *VAE, "seed=2", f"resume={second.info.run_id}")
    finally:
        client.set_tag(second.info.run_id, "aigc.checkpoints", second.data.tags["aigc.checkpoints"])
    printed = capsys.readouterr().out
    assert f"it belongs to run {first.info.run_id}, not {second.info.run_id}" in printed
    assert f"Resume: from {two_runs['folder']}" in printed and "resumed_from" in printed


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(n_bytes)``: a folder on a tmpfs of that size, a disk that fills up."""
    mounts = []

    def mount(size: int) -> Path:
        folder = tmp_path / f"tmpfs{len(mounts)}"
        folder.mkdir()
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_checkpoint_that_does_not_fit_on_the_disk_leaves_the_previous_one_whole(small_disk):
    small_tmpfs = small_disk(1 << 20)
    path = small_tmpfs / "last.ckpt"
    io_plugin = AtomicCheckpointIO()
    io_plugin.save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "epoch": 1}, path)
    with pytest.raises(OSError):
        io_plugin.save_checkpoint({"state_dict": {"w": torch.ones(1_000_000)}, "epoch": 2}, path)  # 4 MB
    assert read_checkpoint(path)["epoch"] == 1
    assert [p.name for p in small_tmpfs.iterdir()] == ["last.ckpt"]  # no partial file left behind


@pytest.mark.slow
@SAME_SECOND
def test_resume_skips_a_last_ckpt_truncated_by_a_full_disk(two_runs, small_disk, capsys):
    run = two_runs["runs"][1]
    folder = Path(run.data.tags["aigc.checkpoints"])
    (best,) = folder.glob("best-*.ckpt")
    small_tmpfs = small_disk(best.stat().st_size + (folder / "last.ckpt").stat().st_size // 2 + (64 << 10))
    shutil.copy(best, small_tmpfs)
    filler = small_tmpfs / "filler"
    free = shutil.disk_usage(small_tmpfs).free
    filler.write_bytes(bytes(max(0, free - (folder / "last.ckpt").stat().st_size // 2)))
    with pytest.raises(OSError):  # how a copy-into-place writer leaves last.ckpt on a full disk
        shutil.copyfile(folder / "last.ckpt", small_tmpfs / "last.ckpt")
    filler.unlink()
    with pytest.raises(NotACheckpoint, match="truncated or corrupt"):
        read_checkpoint(small_tmpfs / "last.ckpt")
    client = two_runs["client"]
    client.set_tag(run.info.run_id, "aigc.checkpoints", str(small_tmpfs))
    capsys.readouterr()
    try:
        train_here(two_runs["folder"], *VAE, "seed=2", f"resume={run.info.run_id}")
    finally:
        client.set_tag(run.info.run_id, "aigc.checkpoints", str(folder))
    printed = capsys.readouterr().out
    assert f"Resume: skipping {small_tmpfs}/last.ckpt is truncated or corrupt" in printed
    assert f"Resume: from {small_tmpfs}/{best.name}" in printed
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def planted_checkpoint(path: Path, marker: Path) -> Path:
    """Opens fine with weights_only=True (bytes and strings only), but its config asks
    ``hydra.utils.instantiate`` to call ``torch.load(..., weights_only=False)`` on a byte string
    whose unpickling writes ``marker``."""
    evil = io.BytesIO()
    torch.save({"x": Payload(marker)}, evil)
    model = {
        "_target_": "torch.load",
        "f": {"_target_": "io.BytesIO", "initial_bytes": evil.getvalue()},
        "weights_only": False,
    }
    config = {"model": model, "data": {"_target_": "aigc.data.mnist.MNISTDataModule"}, "logger": {}}
    tokenizer = CharTokenizer().fit("ab").to_json()
    torch.save({"state_dict": {}, "aigc_config": config, "TextDataModule": {"tokenizer": tokenizer}}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("module", ["aigc.evaluate", "aigc.sample"])
def test_a_checkpoint_whose_config_names_code_is_refused_and_runs_nothing(tmp_path, module):
    marker = tmp_path / "marker"
    checkpoint = planted_checkpoint(tmp_path / "planted.ckpt", marker)
    assert read_checkpoint(checkpoint)  # a loader with weights_only=True alone would let it through
    result = run_aigc(tmp_path, f"ckpt_path={checkpoint}", module=module)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "refused to rebuild" in line and "'torch.load' is not on the allow-list" in line
    assert not marker.exists()


@pytest.mark.parametrize(
    "target",
    [
        "torch.load",
        "os.system",
        "builtins.eval",
        "pickle.loads",
        "subprocess.Popen",
        "io.BytesIO",
        "aigc.tracking.run.record.subprocess.Popen",
        "aigc.common.stored.instantiate",
        "torch.optim.torch.load",
        "torch.nn.modules.module.Module.__init__",
        "aigc.models.gan.missing",
        "diffusers.UNet2DModel",  # a diffusion model's net is named by aigc's wrapper, never diffusers' class
        "diffusers.DiffusionPipeline.from_pretrained",
        "not a name",
        3,
        None,
    ],
)
def test_the_allow_list_refuses_anything_but_allowed_classes(target):
    with pytest.raises(UnsafeConfig):
        check_targets({"model": {"net": [{"_target_": target}]}})


def test_the_allow_list_takes_every_class_the_configs_name(compose_cfg):
    for overrides in [model_overrides(model) for model in MODELS] + [("model=lstm", "data=shakespeare")]:
        cfg = compose_cfg(*overrides)
        for group in ("model", "data", "callbacks"):
            check_targets(cfg[group], group)
    instantiate({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1})


def test_read_checkpoint_says_what_is_wrong_with_a_file(tmp_path):
    empty, garbage, truncated, unsafe = (tmp_path / name for name in ("empty", "garbage", "truncated", "unsafe"))
    empty.write_bytes(b"")
    garbage.write_bytes(os.urandom(4096))
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(100)}}, buffer)
    truncated.write_bytes(buffer.getvalue()[:-300])
    torch.save({"state_dict": {}, "x": Payload(tmp_path / "marker")}, unsafe)
    expected = {
        empty: "is empty (0 bytes), not a checkpoint",
        garbage: "is not a checkpoint: not an archive written by torch.save",
        truncated: "is truncated or corrupt",
        unsafe: "holds objects other than tensors and plain data, which could run code when opened",
        tmp_path / "absent": "no checkpoint file at",
    }
    for path, message in expected.items():
        with pytest.raises(NotACheckpoint) as error:
            read_checkpoint(path)
        assert message in str(error.value) and str(path) in str(error.value)
        assert "weights_only" not in str(error.value)  # never the advice to load it unsafely
    assert not (tmp_path / "marker").exists()


@pytest.mark.slow
@SAME_SECOND
def test_errors_name_the_file_and_what_is_wrong(two_runs, tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    with composed("evaluate", tmp_path, f"ckpt_path={garbage}") as cfg, pytest.raises(NotACheckpoint) as refused:
        evaluate(cfg)
    assert f"{garbage} is not a checkpoint" in str(refused.value) and "weights_only" not in str(refused.value)

    # a valid checkpoint whose run lives in another store
    checkpoint = Path(two_runs["runs"][0].data.tags["aigc.checkpoints"]) / "last.ckpt"
    other_store = tmp_path / "other"
    other_store.mkdir()
    client_for(other_store).search_experiments()  # creates the (empty) store
    with composed("evaluate", other_store, f"ckpt_path={checkpoint}") as cfg, pytest.raises(LookupError) as missing:
        evaluate(cfg)
    run_id = two_runs["runs"][0].info.run_id
    assert f"MLflow run {run_id} (named by {checkpoint}) is not in the store sqlite:///{other_store}/mlflow.db" in str(
        missing.value
    )
