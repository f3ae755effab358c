"""LightningDataModules, dataset sources and (later) tokenizers. Data knows no model."""
