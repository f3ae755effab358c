"""aigc: an experiment framework for generative models (Lightning + Hydra + MLflow)."""

__version__ = "0.1.0"
