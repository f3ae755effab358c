"""Data-parallel training on this machine's CPU: spawned DDP workers (trainer=ddp_cpu) and two
torchrun "nodes" on loopback (trainer=multinode). Each job is one output folder and one MLflow run,
written by rank zero only."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hydra.utils import instantiate

from aigc.data.text import ConsecutiveWindows
from aigc.evaluate import evaluate
from tests.conftest import client_for, composed, only_run, output_folders, run_aigc, user_env
from tests.test_diffusion import TINY

pytestmark = pytest.mark.slow
ONE_EPOCH = ("debug=fast", "trainer.max_epochs=1")


def scores_on_one_and_two_processes(folder: Path, checkpoint: str) -> tuple[dict, dict]:
    """The checkpoint scored by `aigc.evaluate` in this process (trainer=cpu) and on 2 processes."""
    scoring = (f"ckpt_path={checkpoint}", "metrics.num_samples=300", "metrics.num_prompts=6", "logger=none")
    with composed("evaluate", folder, *scoring, "trainer=cpu") as cfg:
        one = evaluate(cfg)
    result = run_aigc(folder, *scoring, "trainer=ddp_cpu", module="aigc.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line.split(" = ") for line in result.stdout.splitlines() if " = " in line]
    return one, {name: float(value) for name, value in printed}


def test_a_gan_trains_on_two_cpu_processes_into_one_run_and_scores_the_same_on_one_and_two(tmp_path: Path):
    """Manual optimization (two backward passes, each through one net) under DDP; and the 2
    processes' last validation scores the configured samples as one process scores its checkpoint."""
    result = run_aigc(tmp_path, "trainer=ddp_cpu", "model=gan", "data.download=false", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DDP: 2 processes on this machine, meeting through" in result.stdout + result.stderr
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.devices"] == "2"
    assert run.data.params["objective.metric"] in run.data.metrics
    assert (
        run.data.tags["aigc.objective"] == f"{run.data.params['objective.mode']} {run.data.params['objective.metric']}"
    )
    assert len(output_folders(tmp_path)) == 1

    checkpoint = f"{run.data.tags['aigc.checkpoints']}/last.ckpt"  # saved after the last validation
    as_trained = (f"metrics.num_samples={run.data.params['metrics.num_samples']}", "trainer=cpu", "logger=none")
    with composed("evaluate", tmp_path, f"ckpt_path={checkpoint}", *as_trained) as cfg:
        one = evaluate(cfg)
    for name in ("fid_mnist", "is_mnist", "kid_mnist"):
        assert run.data.metrics[f"val/{name}"] == pytest.approx(one[f"test/{name}"], rel=1e-5), name


def test_a_diffusion_model_trains_on_two_cpu_processes_and_scores_as_one_process_scores_it(tmp_path: Path):
    """A conditional diffusion model under DDP: its samples' scores and label accuracy after the
    last epoch equal what one process gives its checkpoint."""
    result = run_aigc(tmp_path, "trainer=ddp_cpu", *TINY, "data.download=false", "metrics.inception=false", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    checkpoint = f"{run.data.tags['aigc.checkpoints']}/last.ckpt"
    as_trained = (f"metrics.num_samples={run.data.params['metrics.num_samples']}", "trainer=cpu", "logger=none")
    with composed("evaluate", tmp_path, f"ckpt_path={checkpoint}", "metrics.inception=false", *as_trained) as cfg:
        one = evaluate(cfg)
    for name in ("fid_mnist", "is_mnist", "acc_mnist"):
        assert run.data.metrics[f"val/{name}"] == pytest.approx(one[f"test/{name}"], rel=1e-5), name


def test_sweep_of_language_models_on_two_cpu_processes_is_one_folder_and_one_run_per_job(tmp_path, compose_cfg):
    """Automatic optimization under DDP, in a sweep whose workers start no sweeps of their own; and
    each validation window and prompt is scored once on 2 processes, also when an odd number of
    windows would make Lightning's own sampler repeat one."""
    block_size = f"data.block_size={odd_window_block_size(compose_cfg)}"
    result = run_aigc(
        tmp_path, "-m", "model=transformer,lstm", "data=pydocs", block_size, "trainer=ddp_cpu", *ONE_EPOCH
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Launching 2 jobs") == 1  # no worker started a sweep of its own
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("transformer+lstm-pydocs").experiment_id])
    parents = [r for r in runs if r.data.tags.get("aigc.sweep.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    assert sorted(c.data.params["model._target_"] for c in children) == ["aigc.models.language_model.LanguageModel"] * 2
    assert sorted(c.data.params["model.net._target_"].rsplit(".", 1)[-1] for c in children) == [
        "GPT",
        "RecurrentLanguageModel",
    ]
    assert all(c.info.status == "FINISHED" and "val/loss" in c.data.metrics for c in children)
    assert sorted(p.name for p in output_folders(tmp_path)) == ["0", "1"]
    # the sweep's own config holds only the default model's objective; the jobs' agreed one decides
    (parent,) = parents
    best = min(children, key=lambda c: c.data.metrics["val/loss"])
    assert parent.data.tags["aigc.sweep.objective"] == "min val/loss"
    assert parent.data.tags["aigc.sweep.best_run_id"] == best.info.run_id

    (gpt,) = [c for c in children if c.data.params["model.net._target_"].endswith("GPT")]
    one, two = scores_on_one_and_two_processes(tmp_path, f"{gpt.data.tags['aigc.checkpoints']}/last.ckpt")
    for name in ("test/loss", "test/ppl", "test/bleu", "test/rouge1", "test/rouge2", "test/rougeL"):
        assert two[name] == pytest.approx(one[name], rel=1e-5), name


def start_torchrun_nodes(folder: Path, *overrides: str) -> list[subprocess.Popen]:
    """Two torchrun "nodes" of one process each on loopback, each in its own process group."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    overrides = (
        "trainer=multinode",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
        "trainer.strategy.process_group_backend=gloo",
        *overrides,
        f"hydra.run.dir={folder}/logs/run",  # one folder for the job, whichever node writes
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    torchrun += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    return [
        subprocess.Popen(
            [*torchrun, "--node_rank", str(rank), "-m", "aigc.run", *overrides],
            cwd=folder,
            env=user_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for rank in (0, 1)
    ]


def test_two_torchrun_nodes_train_one_run(tmp_path: Path):
    nodes = start_torchrun_nodes(tmp_path, "model=transformer", "data=pydocs", *ONE_EPOCH)
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=False):
        assert node.returncode == 0, output[-3000:]
    assert "Starting with 2 processes" in outputs[0]
    assert "MLflow run" in outputs[0] and "mlflow" not in outputs[1].lower()  # rank zero tracks, alone
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FINISHED" and "val/loss" in run.data.metrics
    assert output_folders(tmp_path) == [tmp_path / "logs/run"]


def test_a_ddp_process_killed_fails_the_run_at_once_naming_its_rank(tmp_path: Path):
    kill = ("+callbacks.kill._target_=failures.KillRankAtBatch", "+callbacks.kill.rank=1", "+callbacks.kill.batch=2")
    result = run_aigc(tmp_path, "trainer=ddp_cpu", "model=vae", *ONE_EPOCH, "data.download=false", *kill)
    assert result.returncode == 1
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    assert error.startswith("Error: LostRank: DDP rank 1 died (signal SIGKILL); the other processes were stopped")
    run = only_run(client_for(tmp_path))
    assert run.info.status == "FAILED"
    saved = client_for(tmp_path).download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    assert "DDP rank 1 died" in Path(saved).read_text()


def test_a_silent_torchrun_node_fails_the_others_after_the_collective_timeout_naming_its_rank(tmp_path: Path):
    stop = ("+callbacks.stop._target_=failures.StopRankAtBatch", "+callbacks.stop.rank=1", "+callbacks.stop.batch=2")
    started = time.monotonic()
    nodes = start_torchrun_nodes(
        tmp_path, "model=vae", "data.download=false", *ONE_EPOCH, *stop, "trainer.strategy.collective_timeout_s=10"
    )
    try:
        output = nodes[0].communicate(timeout=120)[0]
        took = time.monotonic() - started
    finally:
        for node in nodes:  # the stopped rank (torchrun starts it in a session of its own) and its agent
            with contextlib.suppress(psutil.NoSuchProcess):
                for process in [*psutil.Process(node.pid).children(recursive=True), psutil.Process(node.pid)]:
                    process.kill()
            node.wait(timeout=30)
    assert nodes[0].returncode != 0
    assert "Error: LostRank: DDP rank 1 was lost" in output and "collective_timeout_s=10" in output
    assert took < 10 + 45  # the timeout, plus starting two processes and a few batches
    assert only_run(client_for(tmp_path)).info.status == "FAILED"


def listening_addresses(pid: int) -> list[str]:
    """The local addresses of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.append(fields[1].split(":")[0])
    return addresses


def test_ddp_workers_listen_on_loopback_only_and_die_with_their_parent(tmp_path: Path):
    main = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aigc.run",
            "trainer=ddp_cpu",
            "model=vae",
            "debug=fast",
            "trainer.max_epochs=1000",
            "data.download=false",
            "metrics.inception=false",
            "logger=none",
        ],
        cwd=tmp_path,
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in main.stdout:
            if "DDP: 2 processes on this machine" in line:
                break
        time.sleep(3)  # past the rendezvous: the workers train
        workers = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(main.pid), "-f", "multiprocessing"], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(workers) >= 2
        addresses = [address for worker in workers for address in listening_addresses(worker)]
        assert addresses and all(address in ("0100007F", "00000000000000000000000001000000") for address in addresses)
        main.kill()  # SIGKILL: no handler in the parent runs
        main.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{worker}").exists() for worker in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
    finally:
        main.kill()


def odd_window_block_size(compose_cfg) -> int:
    """A data.block_size for which pydocs' validation text is an odd number of windows: on two
    processes one share is a window short, which Lightning's own sampler fills with a repeat."""
    for block_size in range(64, 80):
        dm = instantiate(compose_cfg("model=transformer", "data=pydocs", f"data.block_size={block_size}").data)
        dm.prepare_data()
        dm.setup("fit")
        if len(ConsecutiveWindows(dm._val_ids, block_size)) % 2:
            return block_size
    raise AssertionError("no block size gives an odd number of windows")


LIVENESS_AT_EXIT = """
import tempfile, time, torch.distributed as dist
from aigc.trainer.distributed import RankLiveness
dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
RankLiveness(0, 1, every_s=0)  # counting without pause: always inside the store's add
time.sleep(0.3)
"""


def test_a_process_exits_cleanly_while_its_liveness_counter_runs():
    """Python ends a daemon thread that wants the GIL back while the interpreter finalizes; inside
    the store's add (pybind11 releases the GIL there) that became std::terminate, SIGABRT, after a
    rank's work was done: "DDP rank 0 died (signal SIGABRT)". The counter is stopped at exit."""
    exited = subprocess.run([sys.executable, "-c", LIVENESS_AT_EXIT], capture_output=True, text=True, timeout=60)
    assert exited.returncode == 0, exited.stderr[-2000:]  # without the stop: SIGABRT in 10 of 10 tries
