"""Put the random number generators' state into every checkpoint and restore it on resume,
so a resumed run draws the same shuffles, noise and windows as one that never stopped.
(Lightning's checkpoints hold the model, optimizers, schedulers and loop counters, not this.)"""

import random

import numpy as np
import torch
from lightning import Callback


class RandomState(Callback):
    key = "aigc_random_state"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # plain containers and tensors only: checkpoints load with torch.load(weights_only=True)
        version, state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint[self.key] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": pos,
                "has_gauss": has_gauss,
                "cached": cached,
            },
            "python": {"version": version, "state": list(state), "gauss": gauss},
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        saved = checkpoint.get(self.key)
        if saved is None:  # a checkpoint from before this callback: nothing to restore
            return
        torch.set_rng_state(saved["torch"])
        if saved["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda"])
        numpy = saved["numpy"]
        np.random.set_state(
            (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached"])
        )
        python = saved["python"]
        random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
