"""distillery's engine: config, data, batching, the adaptor, losses, layer maps, the training loop,
checkpoints, metrics, resources and io. It imports none of the plugins (teachers, students, augment) and
none of the workflows (distill.lab)."""

__version__ = "0.1.0"
