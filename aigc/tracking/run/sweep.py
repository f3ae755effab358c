"""A Hydra sweep (``-m``) as one MLflow parent run, with a child run per job.

``SweepRun`` is a Hydra callback (``hydra.callbacks`` in ``conf/hydra/default.yaml``).
When a multirun starts, in the process that runs the sweeper, it creates the store,
the experiment and the parent run before any job exists (so parallel jobs never
race to create them) and hands the parent's id to the jobs through the
environment (``AIGC_SWEEP_PARENT_RUN_ID``, which ``logger.mlflow.parent_run_id``
reads). Each job's ``MLflowLogger`` then files its run under the parent.

When the sweep ends, the parent records the best job by the objective its jobs
recorded (with ``register=<name>``, that job's MLflow model becomes a new version of the
registered model ``name``, ``register_alias`` pointing at it) and ends FINISHED; a sweep
that stops on an exception ends FAILED, one stopped by SIGINT/SIGTERM KILLED, and so do
its own children still RUNNING.

Run the same sweep command again after an interrupt or a crash, and it goes on in
the same parent run: an Optuna sweep (known by ``hydra.sweeper.study_name``) continues
its study, finished or not; a grid (known by a digest of its experiment and command
line) continues if it didn't finish, and its jobs that finished are not run again
(``MLflowLogger.finished_twin``). A grid that finished runs anew, in a new parent.

What it reads from the sweep's config: ``logger.mlflow`` (store and experiment; no
``logger.mlflow``, no tracking), ``objective`` (``{metric, mode}``), ``register``,
``register_alias`` and ``hydra.sweeper.study_name``.
"""

import atexit
import copy
import hashlib
import json
import math
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from mlflow.entities import Param, Run, RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from aigc.common import tags
from aigc.common.errors import SignInRefused, one_line
from aigc.serving.registry import register
from aigc.tracking.run.logger import UninterruptedClient, optional_write
from aigc.tracking.run.record import flatten, objective_tag, read_objective, recorded, typed_overrides
from aigc.tracking.run.signals import interrupted_by, raise_on_signals, restore_signals
from aigc.tracking.store.client import TrackingUnreachable, experiment_id, open_store, reachable_store
from hydra_plugins.aigc_optuna_sweeper.optuna_sweeper import TARGET as OPTUNA_SWEEPER

PARENT_RUN_ENV = "AIGC_SWEEP_PARENT_RUN_ID"


class SweepRun(Callback):
    def __init__(self):
        self.run_id: str | None = None
        self._signal_handlers: dict = {}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # Hydra sets its config only per job, and the logger's config reads it (`${hydra:...}`)
        HydraConfig.instance().set_config(config)
        try:  # Hydra builds the sweeper after this callback: a bad pruner or storage must fail before any run
            if config.hydra.sweeper.get("_target_") == OPTUNA_SWEEPER:  # Hydra's own can't be built from config
                instantiate(config.hydra.sweeper)
        except Exception as error:
            print(f"Error: hydra.sweeper: {one_line(error.__cause__ or error)}", file=sys.stderr)
            sys.exit(1)
        mlflow_cfg = OmegaConf.select(config, "logger.mlflow")
        if mlflow_cfg is None:  # logger=none: nothing is tracked
            return
        # Hydra turns a callback's exception into a warning and sweeps on, untracked: stop instead
        try:
            self.tracking_uri = mlflow_cfg.tracking_uri
            self.experiment_name = experiment_of_sweep(config)
            self.objective = objective_of_sweep(config)
            self.study_name = OmegaConf.select(config, "hydra.sweeper.study_name")
            self.register = OmegaConf.select(config, "register"), OmegaConf.select(config, "register_alias")
            self.sweep_dir = str(Path(config.hydra.sweep.dir).resolve())
            self._client = UninterruptedClient(open_store(self.tracking_uri, must_exist=False))
            with reachable_store(self.tracking_uri, experiment=self.experiment_name):
                self.run_id = self._open_parent(config)
        except (TrackingUnreachable, SignInRefused) as error:
            print(f"Error: {error}", file=sys.stderr)
            sys.exit(1)
        except Exception as error:
            print(
                f"Error: the sweep's MLflow parent run could not be opened: {type(error).__name__}: {error}",
                file=sys.stderr,
            )
            sys.exit(1)
        os.environ[PARENT_RUN_ENV] = self.run_id
        self._signal_handlers = raise_on_signals()
        atexit.register(self._end_unfinished)
        print(f"MLflow sweep run {self.run_id} (sweep {self._sweep_id}, experiment '{self.experiment_name}')")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self._end(RunStatus.to_string(RunStatus.FINISHED))

    def _open_parent(self, config: DictConfig) -> str:
        client = self._client
        experiment = experiment_id(client, self.experiment_name)
        self._experiment_id = experiment
        sweep = {  # as recorded: ${oc.env:...} secrets stay text
            "sweeper": recorded(config.hydra.sweeper),
            "launcher": recorded(config.hydra.launcher),
            "overrides": typed_overrides(config.hydra.overrides.task),
        }
        # what makes two invocations the same sweep: the Optuna study, or for a grid its command line
        grid = json.dumps([self.experiment_name, sweep["sweeper"].get("_target_"), sorted(sweep["overrides"])])
        self._sweep_id = self.study_name or f"grid-{hashlib.sha1(grid.encode()).hexdigest()[:10]}"
        earlier = client.search_runs(
            [experiment],
            filter_string=f"tags.`{tags.SWEEP_ID}` = '{self._sweep_id}' and tags.`{tags.SWEEP_ROLE}` = 'parent'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        # a study goes on from wherever it is; a grid is resumed only if it didn't finish (else: run it anew)
        if earlier and (self.study_name or earlier[0].info.status != "FINISHED"):
            run_id = earlier[0].info.run_id
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            client.set_tag(run_id, tags.SWEEP_DIR, self.sweep_dir)
            print(f"Continuing the MLflow sweep run {run_id} of sweep {self._sweep_id}")
        else:
            run_id = client.create_run(
                experiment,
                run_name=f"sweep {self._sweep_id}",
                tags={
                    tags.SWEEP_ID: self._sweep_id,
                    tags.SWEEP_ROLE: "parent",
                    tags.SWEEP_DIR: self.sweep_dir,
                    tags.SWEEP_OBJECTIVE: objective_tag(self.objective) if self.objective else "(the jobs')",
                    tags.SWEEP_OVERRIDES: " ".join(sweep["overrides"]),
                },
            ).info.run_id
            params = [Param(key, value) for key, value in flatten({"sweeper": sweep["sweeper"]}).items()]
            client.log_batch(run_id, params=params[:100])
            run_id = self._first_parent(experiment, run_id)
        # one file per invocation: a resumed sweep keeps the config of every start
        client.log_text(run_id, OmegaConf.to_yaml(sweep), f"sweep/{Path(self.sweep_dir).name}.yaml")
        return run_id

    def _first_parent(self, experiment: str, created: str) -> str:
        """Sweepers of one study started on several machines at once may each create its parent
        (a server has no lock to serialize them): all keep the first one created, the others'
        are deleted, so that the study's jobs land under one parent."""
        parents = self._client.search_runs(
            [experiment],
            filter_string=f"tags.`{tags.SWEEP_ID}` = '{self._sweep_id}' and tags.`{tags.SWEEP_ROLE}` = 'parent'",
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            max_results=1,
        )
        first = parents[0].info.run_id if parents else created
        if first != created:
            self._client.delete_run(created)
            print(f"Continuing the MLflow sweep run {first} of sweep {self._sweep_id}, started at the same time")
        return first

    def _end_unfinished(self) -> None:
        """At exit, for a sweep that never reached ``on_multirun_end``."""
        self._end(RunStatus.to_string(RunStatus.KILLED if interrupted_by() else RunStatus.FAILED))

    def _end(self, status: str) -> None:
        if self.run_id is None:
            return
        run_id, client = self.run_id, self._client
        self.run_id = None
        atexit.unregister(self._end_unfinished)
        restore_signals(self._signal_handlers)
        os.environ.pop(PARENT_RUN_ENV, None)
        children = client.search_runs(
            [self._experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'", max_results=50000
        )
        for child in children:  # jobs of this sweep that a signal or a crash left RUNNING
            if child.info.status == "RUNNING" and child.data.tags.get(tags.SWEEP_DIR) == self.sweep_dir:
                client.set_terminated(child.info.run_id, status if status != "FINISHED" else "FAILED")
        finished = [run for run in children if run.info.status == "FINISHED"]
        # the objective the jobs recorded: a sweep over models has only the default model's in its own config
        objectives = {read_objective(run.data.tags.get(tags.OBJECTIVE)) for run in finished} - {None}
        metric, mode = next(iter(objectives)) if len(objectives) == 1 else (None, None)
        if metric:
            client.set_tag(run_id, tags.SWEEP_OBJECTIVE, f"{mode} {metric}")
        best = best_run(children, metric, mode) if metric else None
        if best is not None:
            client.set_tag(run_id, tags.BEST_RUN_ID, best.info.run_id)
            client.set_tag(run_id, tags.BEST_RUN_NAME, best.info.run_name)
            client.log_metric(run_id, f"best/{metric}", best.data.metrics[metric])
            print(
                f"Best job of sweep {self._sweep_id}: {best.info.run_name} ({best.info.run_id}), "
                f"{metric}={best.data.metrics[metric]:.6g}"
            )
            name, alias = self.register
            if name:
                optional_write(lambda: register(client, best.info.run_id, name, alias), f"model registration ({name})")
        client.set_terminated(run_id, status)
        print(f"MLflow sweep run {run_id} ended {status} with {len(children)} child runs")


def objective_of_sweep(config: DictConfig) -> dict | None:
    """The sweep's ``objective``, or None when it depends on a swept choice (``-m model=gan,lstm``:
    the sweep's own config has only the swept group's default, whose objective may not even
    resolve with the sweep's data); the jobs' recorded objectives are used then."""
    try:
        return OmegaConf.to_container(config.objective, resolve=True)
    except Exception:
        return None


def best_run(runs: list[Run], metric: str, mode: str) -> Run | None:
    """The run with the lowest (``mode="min"``) or highest final ``metric`` among those that ended
    FINISHED with a finite one: a failed, killed or pruned run's last value is not a result."""
    sign = 1 if mode == "min" else -1
    scored = [
        run for run in runs if run.info.status == "FINISHED" and math.isfinite(run.data.metrics.get(metric, math.nan))
    ]
    return min(scored, key=lambda run: sign * run.data.metrics[metric], default=None)


def experiment_of_sweep(config: DictConfig) -> str:
    """``logger.mlflow.experiment_name`` as a single run would have it, with each swept config-group
    choice shown as all its options: ``-m model=transformer,lstm data=pydocs`` -> ``transformer+lstm-pydocs``
    (the sweep's own config holds only the defaults of swept groups)."""
    choices = dict(config.hydra.runtime.choices)
    for override in OverridesParser.create().parse_overrides(typed_overrides(config.hydra.overrides.task)):
        key = override.get_key_element()
        if key in choices and override.is_sweep_override() and override.is_discrete_sweep():
            choices[key] = "+".join(override.sweep_string_iterator())
    named = copy.deepcopy(config)
    with read_write(named.hydra), open_dict(named.hydra):
        named.hydra.runtime.choices = choices
    HydraConfig.instance().set_config(named)
    try:
        return named.logger.mlflow.experiment_name
    finally:
        HydraConfig.instance().set_config(config)
