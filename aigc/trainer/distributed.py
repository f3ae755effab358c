"""Lightning's DDP, with the one decision a model knows best left to the model, and the
processes of one machine kept to that machine.

DDP's reducer expects every parameter to get a gradient in every backward pass,
unless told to look for unused ones (an extra pass over the graph each step). A
GAN with manual optimization makes two backward passes per batch, each through
one net, so it declares ``ddp_find_unused_parameters = True``; the other models
use every parameter every step and don't pay for the search.

When Lightning starts the processes itself (one machine: ``trainer=ddp_cpu``, ``trainer=ddp``),
they meet through a file instead of torch's TCP store, which listens on every network
interface, and gloo and NCCL talk over loopback. Each worker dies with the process that
started it (Linux's parent-death signal), so a killed run leaves no workers behind. Under
torchrun or SLURM (``trainer=multinode``) the cluster's own rendezvous is used as it is.
"""

import atexit
import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import torch
from lightning.pytorch.strategies import DDPStrategy as LightningDDPStrategy
from torch.nn import Module
from torch.nn.parallel import DistributedDataParallel

from aigc.common.capabilities import trait

_PR_SET_PDEATHSIG = 1


class DDPStrategy(LightningDDPStrategy):
    def __init__(self, *args, start_method: str = "popen", **kwargs):
        super().__init__(*args, start_method=start_method, **kwargs)
        # "spawn", "fork", "forkserver": Lightning starts the workers itself, on this machine
        self._starts_workers = start_method != "popen"
        # named here, in the process that starts the workers: each worker gets the same path
        self._rendezvous = Path(tempfile.gettempdir()) / f"aigc-rendezvous-{uuid.uuid4().hex}"

    def _setup_model(self, model: Module) -> DistributedDataParallel:
        if "find_unused_parameters" not in self._ddp_kwargs:
            self._ddp_kwargs["find_unused_parameters"] = trait(self.lightning_module, "ddp_find_unused_parameters")
        return super()._setup_model(model)

    def setup_distributed(self) -> None:
        if self.num_nodes == 1 and self._starts_workers:
            _die_with_parent()
            self.set_world_ranks()
            for interface in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
                os.environ.setdefault(interface, "lo")
            backend = self.process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")
            torch.distributed.init_process_group(
                backend, init_method=f"file://{self._rendezvous}", rank=self.global_rank, world_size=self.world_size
            )
            atexit.register(_leave_group)
            if self.global_rank == 0:
                print(
                    f"DDP: {self.world_size} processes on this machine, meeting through {self._rendezvous} "
                    "(no network port)"
                )
        super().setup_distributed()  # Lightning's own set-up; it finds the process group made


def _die_with_parent() -> None:
    """SIGKILL this worker when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux") and multiprocessing.parent_process() is not None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _leave_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
