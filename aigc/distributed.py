"""Lightning's DDP, with the one decision a model knows best left to the model.

DDP's reducer expects every parameter to get a gradient in every backward pass,
unless told to look for unused ones (an extra pass over the graph each step). A
GAN with manual optimization makes two backward passes per batch, each through
one net, so it declares ``ddp_find_unused_parameters = True``; the other models
use every parameter every step and don't pay for the search.
"""

from lightning.pytorch.strategies import DDPStrategy as LightningDDPStrategy
from torch.nn import Module
from torch.nn.parallel import DistributedDataParallel


class DDPStrategy(LightningDDPStrategy):
    def _setup_model(self, model: Module) -> DistributedDataParallel:
        if "find_unused_parameters" not in self._ddp_kwargs:
            self._ddp_kwargs["find_unused_parameters"] = getattr(self.lightning_module, "ddp_find_unused_parameters", False)
        return super()._setup_model(model)
