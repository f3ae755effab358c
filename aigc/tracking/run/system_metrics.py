"""A run's system metrics: MLflow's own monitor (CPU %, memory, disk, network; GPU utilisation
and memory when ``pynvml`` sees a GPU), sampled in a thread of the process that tracks the run.

Metrics are named ``system/<name>`` (``system/<host>/<name>`` when the run spans several nodes:
only rank zero tracks, so they are its node's). The monitor writes with its own client, not
through the run's spool: when the store stops answering it stops, with a warning, and what
training logs is unaffected. Sampling every 10 s costs a few milliseconds of one thread each
time, far below 1% of training (``experiments/logging_cost.py`` measures runs with it on).
"""

import os
import socket
import threading

STOP_TIMEOUT_S = 2.0


class SystemMetrics:
    def __init__(self, run_id: str, tracking_uri: str, interval_s: float, resume: bool = False):
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            run_id,
            sampling_interval=interval_s,
            resume_logging=resume,  # a resumed run's points continue its steps
            node_id=socket.gethostname() if _nodes() > 1 else None,
            tracking_uri=tracking_uri,
        )
        self._monitor.start()

    def __getstate__(self):  # a DDP worker spawned with the logger samples nothing: rank zero does
        return {"_monitor": None}

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop sampling and write what was sampled, waiting at most ``timeout_s`` (a store that
        does not answer must not hold up the end of a run)."""
        if self._monitor is None:
            return
        stopping = threading.Thread(target=self._finish, name="aigc-system-metrics-stop", daemon=True)
        stopping.start()
        stopping.join(timeout_s)

    def _finish(self) -> None:
        self._monitor.finish()
        # MLflow's monitor drops the samples of the interval the run ended in: a run shorter
        # than one interval would have none. They are the run's last point.
        partial = self._monitor.aggregate_metrics()
        if partial:
            self._monitor.publish_metrics(partial)
            self._monitor.mlflow_logger.flush()


def _nodes() -> int:
    """How many nodes this job spans, as SLURM or torchrun say (1 when neither does)."""
    if "SLURM_NNODES" in os.environ:
        return int(os.environ["SLURM_NNODES"])
    world, local = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_WORLD_SIZE", 0))
    return world // local if local else 1
