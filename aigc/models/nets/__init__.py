"""Plain ``nn.Module`` architectures: no Lightning, no MLflow."""
