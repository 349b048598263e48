"""Dataset tooling behind `detector data check` and `detector data preview`."""
