"""Put the run's resolved config (and its tracking run id) into every checkpoint,
so a checkpoint alone rebuilds its model and finds its run."""

from lightning import Callback

from aigc.common.stored import CONFIG_KEY, RUN_KEY


class ConfigSnapshot(Callback):
    key = CONFIG_KEY
    run_key = RUN_KEY

    def __init__(self, config: dict):
        self.config = config  # plain containers only: checkpoints load with torch.load(weights_only=True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.key] = self.config
        if trainer.logger is not None and isinstance(trainer.logger.version, str):
            checkpoint[self.run_key] = trainer.logger.version  # MLflow's run id
