"""Metrics on tensors and strings (no modules, no runs)."""
