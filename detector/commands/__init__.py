"""Click commands of the `detector` CLI, one module each (kept thin: parse, call, write)."""
