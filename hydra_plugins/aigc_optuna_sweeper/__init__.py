"""aigc's Optuna sweeper for Hydra. Hydra only loads plugins from the ``hydra_plugins``
namespace package, which is why this lives outside ``aigc``."""
