"""aigc: an experiment framework for generative models (Lightning + Hydra + MLflow)."""

from aigc.config import resolvers as _resolvers  # noqa: F401  (the configs' ${aigc.*:} resolvers)

__version__ = "0.1.0"
