"""Training: `trainer.fit` over one run; one epoch and validation (`engine`); optimizer, lr
plan and EMA (`optim`); time budget, stop signals, periodic saves, close_mosaic; run files;
checkpoints and resume."""
