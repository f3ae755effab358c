"""What every run records besides its metrics: config, overrides, code and data provenance.

Secrets given as ``${oc.env:NAME}`` are recorded as that text, never as their value: in params,
tags, config artifacts, checkpoints and run names (``recorded_config``, ``typed_overrides``).
"""

import copy
import json
import platform
import re
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag, Param, RunTag
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAMS_TAGS_PER_BATCH
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from aigc.common import tags
from aigc.config.resolvers import unescape_interpolations
from aigc.data.source import DataSource
from aigc.tracking.run.logger import MLflowLogger

MAX_PARAM_CHARS = 500  # MLflow takes 6,000; longer values are unreadable in the UI anyway
PACKAGES = ("aigc", "torch", "torchvision", "lightning", "hydra-core", "mlflow", "torchmetrics", "torch-fidelity")


def record_run(
    logger: MLflowLogger,
    config: dict,
    overrides: list[str],
    data: DataSource | None,
    data_state: dict | None = None,
) -> None:
    """Log params (the flattened resolved config), tags, config artifacts and the dataset input.

    A resumed run keeps its params; a value the resumed config changed (or dropped) is listed in
    the tag ``aigc.resume.changed`` instead, and the new overrides go to ``config/overrides_resumed.txt``.

    ``data_state`` is what the datamodule keeps in checkpoints (e.g. a fitted tokenizer as
    JSON); its string values are saved as ``data/<key>.json`` artifacts too.
    """
    client, run_id = logger.experiment, logger.run_id
    flat = flatten(config)
    earlier = client.get_run(run_id).data.params  # a resumed run has them already
    params = [Param(key, value) for key, value in flat.items() if key not in earlier]
    run_tags = provenance_tags(data) | {tags.OVERRIDES: " ".join(overrides)}
    if "objective" in config:
        run_tags[tags.OBJECTIVE] = objective_tag(config["objective"])
    if earlier:
        # MLflow refuses to change a param: what a resumed run changed is recorded as a tag
        ours = [key for key in earlier if key.split(".")[0] in config]  # not Lightning's own hparams
        changed = [
            f"{key}: {earlier[key]} -> {flat.get(key, '(none)')}" for key in ours if flat.get(key) != earlier[key]
        ]
        run_tags[tags.RESUME_CHANGED] = "; ".join(changed)[:5000] or "(nothing)"
    for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):  # the limit counts params and tags
        client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in run_tags.items()])
    if not earlier:
        logger.log_text_artifact(_yaml(config), "config/config.yaml")
    logger.log_text_artifact(
        "\n".join(overrides) + "\n", "config/overrides_resumed.txt" if earlier else "config/overrides.txt"
    )
    for key, value in (data_state or {}).items():
        if isinstance(value, str):
            logger.log_text_artifact(value, f"data/{key}.json")
    if data is not None:
        dataset = Dataset(
            name=data.name,
            digest=data.digest,
            source_type="local",
            source=json.dumps({"uri": data.location}),
            profile=json.dumps({"num_train": data.num_train, "num_val": data.num_val, "source": data.source}),
        )
        client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "train")])])


_ENV_INTERPOLATION = re.compile(r"(?<!\\)\$\{oc\.env:")


def recorded_config(cfg: DictConfig) -> dict:
    """The run's config as ``recorded`` gives it, without Hydra's own node."""
    return recorded(cfg, without=("hydra",))


def recorded(node: DictConfig, without: tuple[str, ...] = ()) -> dict:
    """A config (or a node of one) as plain containers, resolved, except that every
    ``${oc.env:...}`` stays as its text, in its own node and in every value that interpolates it
    (``${oc.env:TOKEN}`` -> ``"${oc.env:TOKEN}"``, ``x_${oc.env:TOKEN}`` -> ``"x_${oc.env:TOKEN}"``)."""
    masked = copy.deepcopy(node)  # keeps the resolvers' cache: cached values (folders, times) stay the same
    with read_write(masked), open_dict(masked):
        for key in without:
            masked.pop(key, None)
        _escape_env(masked)
    return _unescaped(OmegaConf.to_container(masked, resolve=True))


def typed_overrides(overrides: ListConfig | list) -> list[str]:
    """Command-line overrides as typed (Hydra's ``overrides.task``, interpolations unresolved)."""
    return OmegaConf.to_container(overrides, resolve=False) if OmegaConf.is_config(overrides) else list(overrides)


def _escape_env(node: DictConfig | ListConfig) -> None:
    raw = OmegaConf.to_container(node, resolve=False)
    for key in raw if isinstance(raw, dict) else range(len(raw)):
        value = raw[key]
        if isinstance(value, str) and _ENV_INTERPOLATION.search(value):
            node[key] = _ENV_INTERPOLATION.sub(lambda _: "\\${oc.env:", value)  # an escaped ${ is text
        elif isinstance(value, (dict, list)):
            _escape_env(node[key])


def _unescaped(value):
    """Text that resolvers return escaped (``aigc.overrides_text``), as the text itself."""
    if isinstance(value, str):
        return unescape_interpolations(value)
    if isinstance(value, dict):
        return {key: _unescaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unescaped(item) for item in value]
    return value


def objective_tag(objective: dict) -> str:
    """``{"metric": "val/loss", "mode": "min"}`` -> ``"min val/loss"``, the tags' form."""
    return f"{objective['mode']} {objective['metric']}"


def read_objective(tag: str | None) -> tuple[str, str] | None:
    """(metric, mode) from an objective tag, or None."""
    if not tag or " " not in tag:
        return None
    mode, metric = tag.split(" ", 1)
    return metric, mode


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"model": {"lr": 1e-3}}`` -> ``{"model.lr": "0.001"}``; lists stay whole, long values are shortened."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            text = str(value)
            if len(text) > MAX_PARAM_CHARS:
                text = text[: MAX_PARAM_CHARS - 3] + "..."
            flat[name[:MAX_ENTITY_KEY_LENGTH]] = text
    return flat


def provenance_tags(data: DataSource | None) -> dict[str, str]:
    commit, dirty = _git(Path(__file__).parent)  # the checkout aigc runs from (git finds its root)
    provenance = {
        tags.GIT_COMMIT: commit,
        tags.GIT_DIRTY: dirty,
        "mlflow.source.git.commit": commit,
        "mlflow.source.name": "aigc.run",
        tags.HOST: socket.gethostname(),
        f"{tags.VERSIONS}python": platform.python_version(),
    }
    for package in PACKAGES:
        try:
            provenance[f"{tags.VERSIONS}{package}"] = version(package)
        except PackageNotFoundError:
            provenance[f"{tags.VERSIONS}{package}"] = "not installed"
    if data is not None:
        provenance |= {tags.DATA_NAME: data.name, tags.DATA_SOURCE: data.source, tags.DATA_DIGEST: data.digest}
        if data.captions:
            provenance[tags.DATA_CAPTIONS] = data.captions
    return provenance


def code_commit() -> str:
    """The git commit of the checkout aigc runs from ("unknown" outside one)."""
    return _git(Path(__file__).parent)[0]


def _git(code_dir: Path) -> tuple[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(code_dir), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    return commit, str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()


def _yaml(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))
