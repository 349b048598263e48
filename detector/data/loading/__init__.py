"""Dataset, seeded sampling, collation and the worker-to-main batch hand-over."""
