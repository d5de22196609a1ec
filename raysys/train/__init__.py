"""Training: the generic worker loop, optimizers and schedules, checkpoints, recipes."""
