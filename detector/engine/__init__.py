"""Training loop, checkpoints, prediction over a dataset and evaluation."""
