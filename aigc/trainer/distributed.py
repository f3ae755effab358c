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
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
from lightning.pytorch.strategies import DDPStrategy as LightningDDPStrategy
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException
from torch.nn import Module
from torch.nn.parallel import DistributedDataParallel

from aigc.common.capabilities import trait
from aigc.common.collector import started
from aigc.common.constraints import PositiveFloat
from aigc.common.errors import first_line

_PR_SET_PDEATHSIG = 1


class LostRank(RuntimeError):
    """A DDP process died or stopped answering; the others stopped instead of waiting for it."""


class DDPStrategy(LightningDDPStrategy):
    """``collective_timeout_s``: how long a process waits in a collective for the others (torch's
    default is 30 minutes); then it fails, and the run ends FAILED naming the rank that was lost."""

    def __init__(self, *args, start_method: str = "popen", collective_timeout_s: PositiveFloat = 300, **kwargs):
        super().__init__(*args, start_method=start_method, timeout=timedelta(seconds=collective_timeout_s), **kwargs)
        self.liveness: RankLiveness | None = None
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
            started()  # a worker of one job: its imports and its job frozen, as a command's imports are
            self.set_world_ranks()
            for interface in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
                os.environ.setdefault(interface, "lo")
            backend = self.process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")
            torch.distributed.init_process_group(
                backend,
                init_method=f"file://{self._rendezvous}",
                rank=self.global_rank,
                world_size=self.world_size,
                timeout=self._timeout,
            )
            atexit.register(_leave_group)
            if self.global_rank == 0:
                print(
                    f"DDP: {self.world_size} processes on this machine, meeting through {self._rendezvous} "
                    "(no network port)"
                )
        super().setup_distributed()  # Lightning's own set-up; it finds the process group made
        if self.liveness is not None:  # set up again (fit, then test, in one process): one counter
            self.liveness.stop()
        self.liveness = RankLiveness(self.global_rank, self.world_size)


class RankLiveness:
    """Every process counts up its own key in the process group's store, once a second, from a
    thread; when a collective fails, the ranks whose counts stand still are the lost ones (counts,
    not clocks: the machines' clocks may differ).

    The thread is stopped and joined at exit, before the interpreter finalizes: Python (< 3.14)
    ends a daemon thread that wants the GIL back during finalization with ``pthread_exit``, and if
    that thread is inside ``store.add`` then, the unwind crosses pybind11's (noexcept) GIL release
    and C++ calls ``std::terminate``: the process dies with SIGABRT after its work is done."""

    KEY = "aigc/alive/{}"

    def __init__(self, rank: int, world_size: int, every_s: float = 1.0):
        self.rank, self.world_size, self.every_s = rank, world_size, every_s
        self.store = torch.distributed.distributed_c10d._get_default_store()  # the group's own rendezvous
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count, name="aigc-rank-liveness", daemon=True)
        self._thread.start()
        # atexit runs its handlers last in, first out: this one before the process group is destroyed
        atexit.register(self.stop)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop counting: the thread finishes the ``store.add`` it may be in, and ends."""
        self._stop.set()
        self._thread.join(timeout_s)
        atexit.unregister(self.stop)

    def _count(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.add(self.KEY.format(self.rank), 1)
            except Exception:  # the store went with the process that held it: nothing to tell
                return
            self._stop.wait(self.every_s)

    def _counts(self) -> dict[int, int]:
        keys = {rank: self.KEY.format(rank) for rank in range(self.world_size)}
        return {rank: self.store.add(key, 0) for rank, key in keys.items()}  # add 0: read without blocking

    def lost(self) -> list[int]:
        """The ranks that stopped counting (waits three counting periods); empty when unknown."""
        try:
            before = self._counts()
            time.sleep(3 * self.every_s)
            after = self._counts()
        except Exception:
            return []
        return [rank for rank in range(self.world_size) if rank != self.rank and after[rank] == before[rank]]


@contextmanager
def lost_ranks_named(trainer) -> Iterator[None]:
    """A failure that comes from losing a DDP process becomes a ``LostRank`` naming it: when
    Lightning started the processes (``ddp_cpu``, ``ddp``), from the process that saw one die;
    under torchrun or SLURM, from the ranks that stopped counting in ``RankLiveness``."""
    try:
        yield
    except ProcessRaisedException:  # a worker failed: first, whether another had died under it
        killed = [
            (index, signal.Signals(-process.exitcode).name)
            for index, process in enumerate(getattr(trainer.strategy.launcher, "procs", []))
            # (negative: killed by that signal; SIGTERM is how torch stops the rest after a failure)
            if process.exitcode is not None and process.exitcode < 0 and -process.exitcode != signal.SIGTERM
        ]
        if not killed:
            raise
        index, name = killed[0]
        raise LostRank(
            f"DDP rank {index} died (signal {name}); the other processes were stopped: "
            "see that rank's log (out of memory? the OOM killer sends SIGKILL)"
        ) from None
    except ProcessExitedException as error:  # Lightning's launcher stopped the others when one died
        how = f"signal {error.signal_name}" if error.signal_name else f"exit code {error.exit_code}"
        raise LostRank(
            f"DDP rank {error.error_index} died ({how}); the other processes were stopped: "
            "see that rank's log (out of memory? the OOM killer sends SIGKILL)"
        ) from None
    except Exception as error:
        strategy = trainer.strategy
        liveness = getattr(strategy, "liveness", None)
        lost = liveness.lost() if isinstance(liveness, RankLiveness) and not isinstance(error, LostRank) else []
        if not lost:
            raise
        ranks = ", ".join(str(rank) for rank in lost)
        raise LostRank(
            f"DDP rank {ranks} was lost ({first_line(error, 160)}); rank {strategy.global_rank} stopped rather "
            f"than wait (at most trainer.strategy.collective_timeout_s={strategy._timeout.total_seconds():g}): "
            f"see rank {ranks}'s log"
        ) from None


def _die_with_parent() -> None:
    """SIGKILL this worker when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux") and multiprocessing.parent_process() is not None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _leave_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
