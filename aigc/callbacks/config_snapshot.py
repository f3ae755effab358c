"""Put the run's resolved config into every checkpoint, so a checkpoint alone rebuilds its model."""

from lightning import Callback


class ConfigSnapshot(Callback):
    key = "aigc_config"

    def __init__(self, config: dict):
        self.config = config  # plain containers only: checkpoints load with torch.load(weights_only=True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.key] = self.config
