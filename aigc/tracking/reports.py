"""Compare MLflow runs: which runs, ranked by what, and the table and plots of the report.

Runs are an experiment's (sweep parents left out) or a sweep's children. They are
ranked by their final value of the objective each run recorded (the tag ``aigc.objective``,
``"<mode> <metric>"``), the value a sweep optimises; the best
value over the run's steps is shown beside it. Only a run that ended FINISHED can be named
the best; trials an Optuna pruner stopped are shown as ``KILLED (pruned)``. The plots show only the params that differ
between the runs: the final value against each (``params.png``), and all of them at once as
parallel coordinates, one line per run (``parallel.png``).

Runs that differ only in ``seed`` (``-m seed=1,2,3 ...``) are also grouped (``seed_groups``):
each group's mean ± standard deviation of the final and the best value, groups ranked by the
mean final value, and their curves as a mean with a ±1 sd band.

Text-to-image runs add their prompt accuracy by category (``prompt_accuracy_table``) and their
grids of the same prompts side by side (``prompt_grids``).
"""

import fnmatch
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure  # no pyplot: files only, no display, no global state
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from PIL import Image, ImageDraw, ImageFont

from aigc.common import tags
from aigc.tracking.run.record import read_objective
from aigc.tracking.run.sweep import best_run

# params that differ between runs without being choices of the experimenter
INCIDENTAL_PARAMS = ("paths.", "logger.", "hydra.", "trainer.default_root_dir", "callbacks.model_checkpoint.dirpath")
MAX_PARAM_COLUMNS = 6
MAX_PARALLEL_AXES = 12


@dataclass
class Comparison:
    runs: list[Run]
    metric: str
    mode: str  # "min" or "max"
    key_params: list[str]  # params whose values differ between the runs (the first MAX_PARAM_COLUMNS)
    parent: Run | None = None  # the sweep's parent run, when comparing a sweep
    varying: list[str] | None = None  # every param whose values differ
    experiment_names: dict[str, str] = field(default_factory=dict)  # id -> name, of the experiments compared
    _histories: dict = field(default_factory=dict, repr=False)

    @property
    def spans_experiments(self) -> bool:
        return len({run.info.experiment_id for run in self.runs}) > 1

    def experiment_of(self, run: Run) -> str:
        """The name of the run's experiment (its MLflow experiment id when the name is unknown)."""
        return self.experiment_names.get(run.info.experiment_id, run.info.experiment_id)

    def final(self, run: Run) -> float:
        return run.data.metrics.get(self.metric, math.nan)

    def history(self, client: MlflowClient, run: Run, metric: str) -> dict[int, float]:
        """``metric``'s points of ``run`` by step, read from the store once per comparison (the
        table, the seed groups and the plots all use the ranking metric's)."""
        key = (run.info.run_id, metric)
        if key not in self._histories:
            self._histories[key] = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)}
        return self._histories[key]

    @property
    def best(self) -> Run | None:
        """The best finished run by its final value (``best_run``: not a pruned trial's last value)."""
        return best_run(self.runs, self.metric, self.mode)


def pruned(run: Run) -> bool:
    return run.data.tags.get(tags.SWEEP_PRUNED) == "true"


def select(
    client: MlflowClient,
    experiment_name: str | list[str] | None,
    run_id: str | None,
    metric: str | None,
    mode: str | None,
) -> Comparison:
    """The runs to compare: a sweep's jobs (``run_id`` of its parent), or the runs of experiments
    (``experiment_name``: a name, a pattern such as ``*-mnist``, or a list of either), sweeps'
    parent runs left out. Ranked by ``metric`` (by default the objective the runs recorded)."""
    parent = None
    if run_id:
        parent = client.get_run(run_id)
        runs = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'", max_results=50000
        )
        if not runs:
            raise ValueError(f"run {run_id} has no child runs: give a sweep's parent run id, or experiment_name=")
        runs.sort(key=lambda run: int(run.data.tags.get(tags.SWEEP_JOB, 10**9)))
    elif experiment_name:
        found = experiments(client, experiment_name)
        ids = [experiment.experiment_id for experiment in found]
        runs = [
            run
            for run in client.search_runs(ids, max_results=50000, order_by=["attributes.start_time"])
            if run.data.tags.get(tags.SWEEP_ROLE) != "parent"
        ]
        if not runs:
            raise ValueError(f"experiment {', '.join(e.name for e in found)!r} has no runs")
    else:
        raise ValueError("say what to compare: experiment_name=<name> or run_id=<a sweep's parent run id>")
    recorded = _most_common(read_objective(run.data.tags.get(tags.OBJECTIVE)) for run in runs)
    metric = metric or (recorded[0] if recorded else None)
    mode = mode or (recorded[1] if recorded and recorded[0] == metric else None) or "min"
    if metric is None:
        raise ValueError("the runs record no objective (tag aigc.objective): give metric=<name> (and mode=min|max)")
    varying = _varying_params(runs)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    return Comparison(runs, metric, mode, varying[:MAX_PARAM_COLUMNS], parent, varying, names)


def experiments(client: MlflowClient, names: str | list[str]) -> list:
    """The experiments each name or pattern (``gan-mnist``, ``*-mnist``) names; one line for a name
    that names none."""
    known = client.search_experiments()
    found = []
    for name in [names] if isinstance(names, str) else list(names):
        matching = [experiment for experiment in known if fnmatch.fnmatchcase(experiment.name, str(name))]
        if not matching:
            raise ValueError(f"no experiment named {name!r} in this store; it has: {', '.join(e.name for e in known)}")
        found += [experiment for experiment in matching if experiment not in found]
    return found


@dataclass
class SeedGroup:
    """Runs whose params differ only in ``seed``."""

    params: dict[str, str]  # the varying params (seed aside) that the runs share
    runs: list[Run]
    finals: list[float]
    bests: list[float]

    def mean(self, values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return statistics.mean(finite) if finite else math.nan

    def spread(self, values: list[float]) -> float:
        """The sample standard deviation (nan for fewer than two runs)."""
        finite = [v for v in values if math.isfinite(v)]
        return statistics.stdev(finite) if len(finite) > 1 else math.nan


def seed_groups(comparison: Comparison, client: MlflowClient) -> list[SeedGroup]:
    """The runs grouped by every varying param but ``seed``, best group first (by mean final
    value); empty unless ``seed`` varies and some group has more than one run."""
    varying = comparison.varying or []
    if "seed" not in varying:
        return []
    shared = [key for key in varying if key != "seed"]
    groups: dict[tuple, SeedGroup] = {}
    for run in comparison.runs:
        values = tuple(run.data.params.get(key, "") for key in shared)
        group = groups.setdefault(values, SeedGroup(dict(zip(shared, values, strict=True)), [], [], []))
        group.runs.append(run)
        group.finals.append(comparison.final(run))
        group.bests.append(_best(comparison, client, run))
    if all(len(group.runs) == 1 for group in groups.values()):
        return []
    sign = 1 if comparison.mode == "min" else -1
    return sorted(groups.values(), key=lambda g: (math.isnan(g.mean(g.finals)), sign * g.mean(g.finals)))


def group_table(comparison: Comparison, groups: list[SeedGroup]) -> list[dict[str, str]]:
    """One row per seed group: its shared params, run count, mean ± sd of the final and best value."""
    rows = []
    for rank, group in enumerate(groups, 1):
        row = {
            "rank": str(rank),
            "runs": str(len(group.runs)),
            "seeds": ",".join(r.data.params.get("seed", "?") for r in group.runs),
        }
        row |= {key: value for key, value in list(group.params.items())[:MAX_PARAM_COLUMNS]}
        for name, values in ((f"final {comparison.metric}", group.finals), (f"best {comparison.metric}", group.bests)):
            row[name] = f"{_number(group.mean(values))} ± {_number(group.spread(values))}"
        rows.append(row)
    return rows


def plot_seed_groups(comparison: Comparison, client: MlflowClient, groups: list[SeedGroup], path: Path) -> Path:
    """The ranking metric's curve per group: the mean over its runs, and a band of ±1 sd, at the
    steps every run of the group logged."""
    fig = Figure(figsize=(7, 4))
    axis = fig.subplots()
    for rank, group in enumerate(groups, 1):
        histories = [comparison.history(client, run, comparison.metric) for run in group.runs]
        steps = sorted(set.intersection(*(set(h) for h in histories)))
        if not steps:
            continue
        means = [statistics.mean(h[step] for h in histories) for step in steps]
        sds = [statistics.stdev(h[step] for h in histories) if len(histories) > 1 else 0.0 for step in steps]
        label = f"#{rank}: " + ", ".join(f"{k}={v}" for k, v in group.params.items())[:60] + f" (n={len(group.runs)})"
        axis.plot(steps, means, marker=".", label=label)
        axis.fill_between(
            steps,
            [m - s for m, s in zip(means, sds, strict=True)],
            [m + s for m, s in zip(means, sds, strict=True)],
            alpha=0.2,
        )
    axis.set(title=f"{comparison.metric}: mean ± 1 sd over seeds", xlabel="step", ylabel=comparison.metric)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return _save(fig, path)


def table(comparison: Comparison, client: MlflowClient) -> list[dict[str, str]]:
    """One row per run: id, job, status, duration, key params, final and best of the metric."""
    rows = []
    for run in comparison.runs:
        best = _best(comparison, client, run)
        row = {
            "run": run.info.run_id[:8],
            **({"experiment": comparison.experiment_of(run)} if comparison.spans_experiments else {}),
            "job": run.data.tags.get(tags.SWEEP_JOB, ""),
            "status": f"{run.info.status} (pruned)" if pruned(run) else run.info.status,
            "duration": _duration(run),
        }
        row |= {key: run.data.params.get(key, "") for key in comparison.key_params}
        row |= {
            f"final {comparison.metric}": _number(comparison.final(run)),
            f"best {comparison.metric}": _number(best),
        }
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(str(row[c]).ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)


def plot_curves(comparison: Comparison, client: MlflowClient, metrics: list[str], path: Path) -> Path:
    """Each metric's curve over steps, one line per run."""
    fig = Figure(figsize=(6 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=False):
        for run in comparison.runs:
            points = sorted(comparison.history(client, run, metric).items())
            if points:
                steps, values = zip(*points, strict=False)
                axis.plot(steps, values, marker=".", label=run_label(run))
        axis.set(title=metric, xlabel="step", ylabel=metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def plot_params(comparison: Comparison, path: Path) -> Path:
    """The final metric against each key param, one point per run; the best run in red."""
    params = comparison.key_params or ["(none)"]
    fig = Figure(figsize=(4 * len(params), 4))
    axes = fig.subplots(1, len(params), squeeze=False, sharey=True)
    best = comparison.best
    runs = [run for run in comparison.runs if math.isfinite(comparison.final(run))]
    for axis, key in zip(axes[0], params, strict=False):
        values = [run.data.params.get(key, "") for run in runs]
        numbers, log = _numeric(values)
        if numbers is not None:
            xs = numbers
            if log:
                axis.set_xscale("log")
        else:
            categories = sorted(set(values))
            xs = [categories.index(v) for v in values]
            axis.set_xticks(range(len(categories)), [c[-24:] for c in categories], rotation=30, fontsize=7)
        colors = ["tab:red" if run is best else "tab:blue" for run in runs]
        axis.scatter(xs, [comparison.final(run) for run in runs], c=colors)
        axis.set(xlabel=key)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"final {comparison.metric} ({comparison.mode})")
    return _save(fig, path)


def plot_parallel(comparison: Comparison, path: Path) -> Path:
    """Parallel coordinates: an axis per param that differs, then the final metric; one line per
    run, coloured by that value (the best run red, pruned trials dashed). Each axis is scaled to
    its own range (log for positive numbers spanning more than 30x); text values are spaced evenly."""
    keys = [key for key in (comparison.varying or []) if key != "seed"][:MAX_PARALLEL_AXES]
    runs = [run for run in comparison.runs if math.isfinite(comparison.final(run))]
    fig = Figure(figsize=(max(6.0, 1.6 * (len(keys) + 1)), 4.5))
    axis = fig.subplots()
    if not runs:
        axis.set_title(f"no run has a finite {comparison.metric}")
        return _save(fig, path)
    columns = [_axis([run.data.params.get(key, "") for run in runs]) for key in keys]
    finals = [comparison.final(run) for run in runs]
    columns.append(_axis([repr(v) for v in finals]))
    low, high = min(finals), max(finals)
    colors = matplotlib.colormaps["viridis_r" if comparison.mode == "min" else "viridis"]
    best = comparison.best
    for index, run in enumerate(runs):
        ys = [column[0][index] for column in columns]
        shade = colors(0.5 if high == low else (finals[index] - low) / (high - low))
        style = {"color": "tab:red", "linewidth": 2.5, "zorder": 3} if run is best else {"color": shade}
        axis.plot(range(len(columns)), ys, linestyle="--" if pruned(run) else "-", marker="o", **style)
    for x, (_, ticks) in enumerate(columns):
        axis.axvline(x, color="grey", linewidth=0.8)
        for y, label in ticks:
            axis.annotate(label, (x, y), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
    names = [key[-28:] for key in keys] + [f"final {comparison.metric} ({comparison.mode})"]
    axis.set_xticks(range(len(columns)), names, rotation=20, fontsize=8)
    axis.set_yticks([])
    axis.set_xlim(-0.2, len(columns) - 0.5)
    axis.set_title("parallel coordinates (red: best run; dashed: pruned)", fontsize=9)
    return _save(fig, path)


def _axis(values: list[str]) -> tuple[list[float], list[tuple[float, str]]]:
    """A parallel-coordinates axis: each value's height in [0, 1], and (height, label) ticks (the
    ends of a numeric axis, every value of a text one)."""
    numbers, log = _numeric(values)
    if numbers is not None:
        scaled = [math.log10(n) for n in numbers] if log else numbers
        low, high = min(scaled), max(scaled)
        heights = [0.5 if high == low else (s - low) / (high - low) for s in scaled]
        ends = {(min(heights), f"{min(numbers):.3g}"), (max(heights), f"{max(numbers):.3g}")}
        return heights, sorted(ends)
    categories = sorted(set(values))
    spaced = {c: 0.5 if len(categories) == 1 else i / (len(categories) - 1) for i, c in enumerate(categories)}
    return [spaced[v] for v in values], [(h, c[-20:]) for c, h in spaced.items()]


def _numeric(values: list[str]) -> tuple[list[float] | None, bool]:
    """The values as numbers (None unless every one is a finite number), and whether they want a
    log scale (all positive, spanning more than 30x)."""
    numbers = [_float(v) for v in values]
    if not numbers or not all(n is not None and math.isfinite(n) for n in numbers):
        return None, False
    return numbers, min(numbers) > 0 and max(numbers) / min(numbers) > 30


def _best(comparison: Comparison, client: MlflowClient, run: Run) -> float:
    """The run's best value of the metric over its steps."""
    finite = [v for v in comparison.history(client, run, comparison.metric).values() if math.isfinite(v)]
    return (min if comparison.mode == "min" else max)(finite) if finite else math.nan


PROMPT_ACCURACY = "val/prompt_acc"
GRID_KEY = "prompts"  # MLflow stores a logged image as images/<key>+step+<step>+timestamp+...png


def prompt_accuracy_table(runs: list[Run]) -> list[dict[str, str]]:
    """Text-to-image runs: a row per run that scored prompts, its overall prompt accuracy and each
    category's (``aigc.callbacks.PromptAccuracy``)."""
    scored = [run for run in runs if PROMPT_ACCURACY in run.data.metrics]
    prefix = PROMPT_ACCURACY + "_"
    categories = sorted({key[len(prefix) :] for run in scored for key in run.data.metrics if key.startswith(prefix)})
    rows = []
    for run in scored:
        metrics = run.data.metrics
        row = {"run": run_label(run), "prompt_acc": f"{metrics[PROMPT_ACCURACY]:.3f}"}
        row |= {category: _shown_accuracy(metrics.get(f"{PROMPT_ACCURACY}_{category}")) for category in categories}
        rows.append(row)
    return rows


def prompt_grids(client: MlflowClient, runs: list[Run], path: Path) -> Path | None:
    """The newest prompt grid of each run (``aigc.callbacks.PromptGrid``: the same prompts and seeds
    in every run of a configuration), left to right, each headed by its run's label; None when no
    run logged one."""
    pictures = []
    with tempfile.TemporaryDirectory() as folder:
        for run in runs:
            newest = _newest_grid(client, run)
            if newest is not None:
                local = client.download_artifacts(run.info.run_id, newest, folder)
                with Image.open(local) as picture:
                    pictures.append((run_label(run), picture.convert("RGB")))
    if not pictures:
        return None
    font, header, gap = ImageFont.load_default(size=14), 22, 12
    width = sum(picture.width for _, picture in pictures) + gap * (len(pictures) - 1)
    height = header + max(picture.height for _, picture in pictures)
    sheet = Image.new("RGB", (width, height), "white")
    draw, left = ImageDraw.Draw(sheet), 0
    for name, picture in pictures:
        draw.text((left + 2, 3), name, fill="black", font=font)
        sheet.paste(picture, (left, header))
        left += picture.width + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _newest_grid(client: MlflowClient, run: Run) -> str | None:
    prefix = f"{GRID_KEY}+step+"
    grids = [
        artifact.path
        for artifact in client.list_artifacts(run.info.run_id, "images")
        if Path(artifact.path).name.startswith(prefix) and artifact.path.endswith(".png")
    ]
    return max(grids, key=lambda grid: int(Path(grid).name[len(prefix) :].split("+")[0]), default=None)


def _shown_accuracy(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _varying_params(runs: list[Run]) -> list[str]:
    """Params with more than one value among the runs (a run stopped before it logged any counts for none)."""
    values: dict[str, set[str]] = {}
    for run in runs:
        for key, value in run.data.params.items():
            values.setdefault(key, set()).add(value)
    return [key for key in sorted(values) if len(values[key]) > 1 and not key.startswith(INCIDENTAL_PARAMS)]


def _most_common(values) -> str | None:
    present = [v for v in values if v]
    return max(set(present), key=present.count) if present else None


def _duration(run: Run) -> str:
    end = run.info.end_time or time.time() * 1000
    seconds = (end - run.info.start_time) / 1000
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


def _number(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.5g}"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def run_label(run: Run) -> str:
    job = run.data.tags.get(tags.SWEEP_JOB)
    return f"job {job} ({run.info.run_id[:8]})" if job else (run.info.run_name or run.info.run_id[:8])[:40]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
