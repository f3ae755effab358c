"""Register a run's MLflow model in the model registry, optionally pointing an alias at it.

python -m aigc.register run_id=<id> name=mnist-gan alias=champion
python -m aigc.sample model_uri=models:/mnist-gan@champion

(A run registers itself at its end with ``register=<name>``; a sweep registers its best job.)
"""

import hydra
from omegaconf import DictConfig

from aigc.common.collector import started
from aigc.jobs.console import entry_point, one_line_errors
from aigc.serving.registry import register
from aigc.tracking.store.client import open_store


@hydra.main(version_base="1.3", config_path="../conf", config_name="register")
def main(cfg: DictConfig) -> None:
    started()
    with one_line_errors():
        if not (cfg.run_id and cfg.name):
            raise ValueError("say what to register as what: run_id=<mlflow run id> name=<registered model name>")
        register(open_store(cfg.tracking_uri), cfg.run_id, cfg.name, cfg.alias)


if __name__ == "__main__":
    entry_point(main)
