"""Training: the loop, its state, optimiser and schedule, EMA, checkpoints, run directory, DDP helpers, time budget."""
