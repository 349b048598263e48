"""Procedural data: the embedded shapes dataset and the moving-shapes tracking video."""
