r"""OmegaConf resolvers that aigc's configs use; importing ``aigc`` registers them.

- ``${aigc.unique_folder:<path>}``: ``<path>``, or ``<path>_1``, ``<path>_2``, ... , whichever
  this process creates first. Hydra names run folders by the second a command started, so two
  commands started in the same second would share one folder, its checkpoints included; the
  folder is created here with an exclusive ``mkdir``, so no two processes get the same one.
  Cached (``use_cache``): every later reading in this run, and in the jobs of a sweep (Hydra
  copies the cache into each job's config), gets the same folder.
- ``${aigc.job_folder:<path>}``: a run's folder. Under ``srun`` every task of a job step runs
  the command, at moments that need not fall in one second: the tasks of a step of several
  share ``slurm-<job>.<step>`` beside ``<path>`` (the job's requeued start continues its run
  there too); elsewhere ``unique_folder``.
- ``${aigc.overrides_text:}``: Hydra's ``job.override_dirname`` as typed, so that a
  ``${oc.env:TOKEN}`` on the command line names a run by its text, never its value. The text
  comes back escaped (``\${``): ``hydra.utils.instantiate`` resolves a config in place and then
  reads it again, which would otherwise resolve the text it was given.
- ``${aigc.class_count:<folder>}``: how many class subfolders an image folder has (its labels,
  as torchvision's ``ImageFolder`` reads them), or null when it has none (or is no folder: the
  datamodule says so when it loads). Models size their label embedding from it when the config
  is composed, before any image is read, so it only lists the folder's top level.
"""

import itertools
import re
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from aigc.common.class_folders import class_folders
from aigc.common.slurm import shared_step_name


def unique_folder(path: str) -> str:
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        candidate = base if n == 0 else base.with_name(f"{base.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return str(candidate)


def job_folder(path: str) -> str:
    if (step := shared_step_name()) is None:
        return unique_folder(path)
    shared = Path(path).with_name(step)
    shared.mkdir(parents=True, exist_ok=True)
    return str(shared)


def overrides_text() -> str:
    typed = OmegaConf.to_container(HydraConfig.get().job, resolve=False)["override_dirname"]
    return escape_interpolations(typed)


def escape_interpolations(text: str) -> str:
    r"""``a=${x}`` -> ``a=\${x}``: OmegaConf reads it as the text ``a=${x}``."""
    return _INTERPOLATION.sub(r"\\${", text)


def unescape_interpolations(text: str) -> str:
    return text.replace("\\${", "${")


_INTERPOLATION = re.compile(r"(?<!\\)\$\{")


def class_count(folder: str) -> int | None:
    try:
        return len(class_folders(folder)) or None
    except OSError:  # no such folder: the datamodule refuses it in one line when it loads
        return None


OmegaConf.register_new_resolver("aigc.unique_folder", unique_folder, use_cache=True, replace=True)
OmegaConf.register_new_resolver("aigc.job_folder", job_folder, use_cache=True, replace=True)
OmegaConf.register_new_resolver("aigc.overrides_text", overrides_text, replace=True)
OmegaConf.register_new_resolver("aigc.class_count", class_count, replace=True)
