"""``python -m aigc.run rerun=<run id> [overrides]``: the command that made a run, composed again.

The run's overrides as typed (its ``config/overrides.txt`` artifact) are composed again with the
configs of this checkout, and the command line's overrides win over them (an override of the same
key replaces the stored one). What only said where that run wrote (``paths.*``, ``hydra.*``) or
what it continued (``resume``, ``ckpt_path``) is not taken over. The stored overrides are
untrusted input: a ``_target_`` they set must be a class on the stored-config allow-list.
The new run is tagged ``aigc.rerun_of``; when the run was trained from another git commit than
this code's, the console says so, since the same overrides may then build something else.
"""

import sys

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from aigc.common import tags
from aigc.common.stored import check_targets
from aigc.tracking.run.record import code_commit
from aigc.tracking.store.client import open_store, stored_run

OVERRIDES_ARTIFACT = "config/overrides.txt"
# stored overrides that belong to the original command only
NOT_TAKEN_OVER = ("paths.", "paths=", "hydra.", "hydra/", "resume=", "ckpt_path=", "rerun=")


def override_key(override: str) -> str:
    """``+model.beta=4`` -> ``model.beta``: what an override sets, whatever its prefix."""
    return override.split("=", 1)[0].lstrip("+~")


def check_stored_overrides(stored: list[str], where: str) -> None:
    """Raise ``UnsafeConfig`` when an override sets a ``_target_`` (itself, or inside a dict or list
    value) off the allow-list; choosing a config of a group picks a file of this checkout."""
    for override in OverridesParser.create().parse_overrides(stored):
        if override.is_delete():
            continue
        key, value = override.key_or_group, override.value()
        if key.rsplit(".", 1)[-1] == "_target_":
            check_targets({"_target_": value}, f"{where}, {key}")
        elif isinstance(value, (dict, list)):
            check_targets(value, f"{where}, {key}")


def rerun_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """(the config of ``rerun=<id>`` recomposed with ``overrides`` winning, the overrides in effect)."""
    run_id = cfg.rerun
    if cfg.get("resume") or cfg.get("ckpt_path"):
        raise ValueError("rerun= starts a new run from a run's config; resume= and ckpt_path= continue one: give one")
    tracking_uri = OmegaConf.select(cfg, "logger.mlflow.tracking_uri")
    if tracking_uri is None:
        raise ValueError("rerun=<run id> reads the run from MLflow: drop logger=none")
    client = open_store(tracking_uri)
    run = stored_run(client, run_id, f"rerun={run_id}", setting="logger.mlflow.tracking_uri")
    try:
        text = client.download_artifacts(run_id, OVERRIDES_ARTIFACT)
    except Exception:
        raise FileNotFoundError(f"run {run_id} has no {OVERRIDES_ARTIFACT}: it was not made by aigc.run") from None
    with open(text, encoding="utf-8") as stored_file:
        stored = [line for line in stored_file.read().splitlines() if line and not line.startswith(NOT_TAKEN_OVER)]
    check_stored_overrides(stored, f"the stored overrides of run {run_id}")
    given = [override for override in overrides if not override.startswith("rerun=")]
    replaced = {override_key(override) for override in given}
    effective = [override for override in stored if override_key(override) not in replaced] + given
    print(f"Rerun of MLflow run {run_id}: {' '.join(effective) or '(no overrides)'}")
    trained_at, now = run.data.tags.get(tags.GIT_COMMIT, "unknown"), code_commit()
    if trained_at != now:
        print(
            f"\nWARNING: run {run_id} was trained from git commit {trained_at}, this code is at {now}: "
            "the same overrides may build and train something else\n",
            file=sys.stderr,
        )
    return compose("train", overrides=[*effective, f"rerun={run_id}"]), effective
