"""Benchmarks run by `tools/benchmark.py`; each prints medians measured side by side."""
