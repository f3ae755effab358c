"""A Hydra sweeper on current Optuna: ``python -m aigc.run -m hparams_search=<name>``.

Why our own: hydra-optuna-sweeper 1.3 pins optuna<3, and its SQLite storage fails
with SQLAlchemy 2. This one is small and uses Optuna's ask-and-tell interface:

- the search space is Hydra's sweep syntax, from ``hydra.sweeper.params`` and the
  command line: ``choice(a,b)`` is categorical, ``range(1,9)`` integers,
  ``interval(lo,hi)`` floats, ``int(interval(lo,hi))`` integers, and
  ``tag(log, ...)`` a log scale;
- each trial is one Hydra job, launched by the configured launcher (``n_jobs``
  trials at a time) with job number = trial number; the value it returns is the
  objective, and a job that fails or returns nothing is a failed trial;
- the study lives in ``storage`` under ``study_name``: a SQLite file, a PostgreSQL (or other
  SQL) database that several machines reach, or Optuna's journal file on a shared filesystem
  (``journal:///<path>``). Run the same command again, or on another machine at the same time,
  and it works on the study until it holds ``n_trials`` finished trials. Trials cut short by an
  interrupt are failed and not counted, and so is a trial two sweepers asked for at once when
  one was left: the later-numbered one is given up unrun (``beyond_n_trials``). On a database,
  while a trial's job runs its sweeper records the trial's heartbeat every ``heartbeat_s``; a
  trial whose heartbeat stopped (its sweeper was SIGKILLed) is failed by the next sweeper on the
  study and its parameters are tried again (Optuna's ``RetryHeartbeatStaleTrialCallback``), the
  failed one not counted. Each trial's point is drawn by the sampler (a partial:
  ``sampler(seed=...)``) seeded with ``seed`` plus the trial's number: the same command draws
  the same points on a new study, a resumed study doesn't replay its first points, and sweepers
  that open a study in the same second draw different ones (the database numbers the trials);
- each job reports its objective to its trial after every evaluation
  (``aigc.callbacks.trial_pruning``), and the study's ``pruner`` (``hydra/sweeper/pruner``:
  none, median, hyperband) may stop it there: such a job returns ``optuna.TrialPruned``, and its
  trial is PRUNED, a finished trial that counts towards ``n_trials``.
"""

import math
import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

# what ``hydra.sweeper._target_`` says when this sweeper runs a sweep
TARGET = f"{__name__}.OptunaSweeper"
DIRECTIONS = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
INTERRUPTED = "interrupted"  # user attribute of trials a signal or crash of the sweep cut short
NOT_RUN = "not_run"  # user attribute of trials given up unrun: n_trials was taken (``beyond_n_trials``)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str,
        storage: str,
        direction: str,
        n_trials: int,
        n_jobs: int = 1,
        sampler: Callable[..., optuna.samplers.BaseSampler] = optuna.samplers.TPESampler,
        seed: int | None = None,
        params: dict[str, str] | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        heartbeat_s: int | None = 30,
    ):
        if direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction={direction!r}: use one of {sorted(DIRECTIONS)}")
        for name, count in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if count < 1:  # no trial would ever be asked for: a sweep of none, or one that never ends
                raise ValueError(f"hydra.sweeper.{name}={count}: should be at least 1")
        self.study_name = study_name
        self.storage = storage
        self.heartbeat_s = heartbeat_s
        try:
            study_storage(storage, heartbeat_s)  # opened now: a path that can't hold the database fails before any job
        except Exception as error:
            raise ValueError(
                f"hydra.sweeper.storage={storage}: the study's database can't be opened "
                f"({(str(error) or type(error).__name__).splitlines()[0]}); "
                "give a writable sqlite:///<path>, a reachable postgresql+psycopg://<user>@<host>/<database>, "
                "or journal:///<path on a shared filesystem>"
            ) from None
        self.direction = DIRECTIONS[direction]
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.seed = seed
        self.params = dict(params or {})
        self.pruner = pruner  # built here so that a bad pruner config fails before any job; the jobs prune

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> optuna.Study:
        space, fixed = search_space([f"{key}={value}" for key, value in self.params.items()] + arguments)
        if not space:
            raise ValueError("nothing to search: give hydra.sweeper.params or sweep overrides like x=interval(0,1)")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        study = optuna.create_study(
            study_name=self.study_name,
            storage=study_storage(self.storage, self.heartbeat_s),
            direction=self.direction,
            pruner=self.pruner,
            load_if_exists=True,
        )
        done = finished_trials(study)
        print(f"Optuna study '{self.study_name}' in {self.storage}: {done} of {self.n_trials} trials finished")
        while True:
            optuna.storages.fail_stale_trials(study)  # a SIGKILLed sweeper's trials: FAIL, then tried again
            if (left := self.n_trials - places_taken(study)) <= 0:
                break
            trials = [ask(study, space, self.sampler, self.seed) for _ in range(min(self.n_jobs, left))]
            trials = [trial for trial in trials if not beyond_n_trials(study, trial, self.n_trials)]
            for group in consecutive(trials):
                with Heartbeat(study, group, self.heartbeat_s):
                    self._run(study, group, fixed)

        self._report(study, sweep_dir)
        return study

    def _run(self, study: optuna.Study, trials: list[optuna.Trial], fixed: list[str]) -> None:
        batch = [fixed + [f"{key}={value}" for key, value in trial.params.items()] for trial in trials]
        self.validate_batch_is_legal(batch)
        try:
            returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
        except BaseException:
            for trial in trials:
                trial.set_user_attr(INTERRUPTED, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        for trial, job in zip(trials, returns, strict=False):
            try:
                value = job.return_value  # raises the job's exception if it failed
            except Exception as error:
                print(f"Trial {trial.number} failed: {type(error).__name__}: {error}")
                study.tell(trial, state=TrialState.FAIL)
                continue
            if isinstance(value, optuna.TrialPruned):  # the job said why
                study.tell(trial, state=TrialState.PRUNED)
            elif value is None or not math.isfinite(value):
                print(f"Trial {trial.number} gave no finite objective ({value}): counted as failed")
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, float(value))

    def _report(self, study: optuna.Study, sweep_dir: Path) -> None:
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not complete:
            print(f"Optuna study '{self.study_name}': no trial completed")
            return
        best = study.best_trial
        pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
        results = {
            "study_name": self.study_name,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
            "trials_complete": len(complete),
            "trials_pruned": len(pruned),
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        print(
            f"Optuna study '{self.study_name}': best trial {best.number}, value {best.value:.6g}, params {best.params} "
            f"({len(complete)} trials complete, {len(pruned)} pruned)"
        )


# Optuna marks heartbeats experimental (since 2.8, unchanged through 5.1) and expects them from
# Study.optimize; this sweeper uses them with ask-and-tell on purpose
for _message in (
    r"Argument ``heartbeat_interval`` is an experimental feature",
    r".*(fail_stale_trials|RetryHeartbeatStaleTrialCallback\S*) is experimental",
    r"Heartbeat of storage is supposed to be used with Study.optimize",
):
    warnings.filterwarnings("ignore", message=_message)

JOURNAL = "journal:///"  # Optuna's journal file: hydra.sweeper.storage=journal:///<path>
MAX_RETRIES = 2  # how often a trial whose sweeper died is tried again


def study_storage(url: str, heartbeat_s: int | None = None) -> optuna.storages.BaseStorage:
    """The study's storage, shared by the sweepers and their jobs (which report to their trials):
    each kind of database with its own connection arguments, heartbeats where Optuna has them."""
    if url.startswith(JOURNAL):
        # file locks only: no heartbeats in Optuna's journal storage (5.1)
        path = "/" + url.removeprefix(JOURNAL)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    # SQLite under concurrent workers: wait for the lock instead of failing at 5 s. A server's
    # driver takes no such argument (psycopg: "invalid connection option"); stale connections are
    # replaced rather than failing a trial's report
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    beats = {}
    if heartbeat_s:
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        beats = {"heartbeat_interval": heartbeat_s, "heartbeat_stale_trial_callback": retry}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beats)
    except sqlalchemy.exc.DBAPIError:
        # sweepers on several machines creating a new database's tables at once: one wins
        # (PostgreSQL: "duplicate key value violates unique constraint"), the others open its tables
        time.sleep(1 + random.random())
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beats)


class Heartbeat:
    """Records the heartbeats of ``trials`` every ``interval_s`` while their jobs run (in a thread:
    with the basic launcher the jobs run in this one)."""

    def __init__(self, study: optuna.Study, trials: list[optuna.Trial], interval_s: int | None):
        storage = study._storage  # Optuna's own heartbeat thread reads it the same way
        beating = interval_s and is_heartbeat_enabled(storage)
        self._beat = (lambda: [storage.record_heartbeat(t._trial_id) for t in trials]) if beating else None
        self._interval_s = interval_s or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-trial-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._beat()
            except Exception:  # a database hiccup: the next beat tries again
                pass

    def __enter__(self) -> "Heartbeat":
        if self._beat is not None:
            self._beat()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def ask(
    study: optuna.Study,
    space: dict[str, BaseDistribution],
    sampler: Callable[..., optuna.samplers.BaseSampler],
    seed: int | None,
) -> optuna.Trial:
    """A new trial (or one queued for a retry, its point fixed), its point drawn by ``sampler``
    seeded with ``seed`` plus the trial's number, which the study's storage gives once."""
    trial = study.ask()
    study.sampler = sampler(seed=None if seed is None else seed + trial.number)
    for name, choices in space.items():
        suggest(trial, name, choices)
    return trial


def suggest(trial: optuna.Trial, name: str, choices: BaseDistribution) -> Any:
    if isinstance(choices, CategoricalDistribution):
        return trial.suggest_categorical(name, choices.choices)
    if isinstance(choices, IntDistribution):
        return trial.suggest_int(name, choices.low, choices.high, step=choices.step, log=choices.log)
    assert isinstance(choices, FloatDistribution)
    return trial.suggest_float(name, choices.low, choices.high, step=choices.step, log=choices.log)


def counted(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards ``n_trials``: finished, not cut short by an interrupt, not
    failed for a dead sweeper and tried again, and not given up unrun."""
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    skipped = (INTERRUPTED, NOT_RUN)
    return [
        t
        for t in trials
        if t.state in finished and not any(t.user_attrs.get(key) for key in skipped) and t.number not in retried
    ]


def finished_trials(study: optuna.Study) -> int:
    return len(counted(study.get_trials(deepcopy=False)))


def places_taken(study: optuna.Study, before: int | None = None) -> int:
    """The places of ``n_trials`` taken: by counted trials, and by trials a sweeper is running (or
    has queued for a retry), which will count when they finish; only those numbered below
    ``before``, if given."""
    trials = study.get_trials(deepcopy=False)
    waiting = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return sum(before is None or t.number < before for t in counted(trials) + waiting)


def beyond_n_trials(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Sweepers that counted the places left at the same moment may each have asked for the last
    one. The database numbers the trials in the order they were asked: a trial whose earlier ones
    already take all ``n_trials`` places is given up unrun, failed with ``NOT_RUN``, so that the
    study never runs more than ``n_trials``."""
    if places_taken(study, before=trial.number) < n_trials:
        return False
    trial.set_user_attr(NOT_RUN, True)
    study.tell(trial, state=TrialState.FAIL)
    print(f"Trial {trial.number} not run: another sweeper on the study took the last of its {n_trials} trials")
    return True


def consecutive(trials: Sequence[optuna.Trial]) -> list[list[optuna.Trial]]:
    """Groups of consecutive trial numbers (another worker on the study may take numbers in
    between), so that one launch gives each job the number of its trial."""
    groups: list[list[optuna.Trial]] = []
    for trial in trials:
        if groups and trial.number == groups[-1][-1].number + 1:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


def search_space(overrides: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Hydra sweep overrides -> Optuna distributions; plain overrides are passed to every job."""
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    sweep: Any = override.value()
    log = "log" in sweep.tags
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=lambda v: v)))
    if isinstance(sweep, RangeSweep):
        if all(isinstance(x, int) for x in (sweep.start, sweep.stop, sweep.step)) and sweep.step > 0:
            last = sweep.start + (sweep.stop - 1 - sweep.start) // sweep.step * sweep.step
            return IntDistribution(sweep.start, last, step=sweep.step, log=log and sweep.step == 1)
        return CategoricalDistribution(list(override.sweep_iterator(transformer=lambda v: v)))
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ValueError(f"{override.input_line}: use choice(...), range(...) or interval(...)")
