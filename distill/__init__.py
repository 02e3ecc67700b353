"""distillery's engine: config, data, losses, layer maps, the training loop, metrics, runs and the CLI."""

__version__ = "0.1.0"
