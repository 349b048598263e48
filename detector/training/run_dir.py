"""The run directory: its name, the resolved config.yaml and the per-epoch results.csv.

    run = create_run_dir(None)                 # runs/train/exp, then exp2, exp3, ...
    write_config_yaml(cfg, run)                # run/config.yaml
    append_result(run / "results.csv", {"epoch": 1, "loss": 0.9, "AP": 0.1})

Layout:
    RUN/config.yaml   RUN/results.csv   RUN/weights/{last,best}.pt   RUN/plots/*.png
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from detector.config import Config, save_config

DEFAULT_PARENT = Path("runs/train")


def next_run_dir(parent: str | Path = DEFAULT_PARENT, name: str = "exp") -> Path:
    """The first of parent/exp, parent/exp2, parent/exp3, ... that does not exist."""
    parent = Path(parent)
    candidate, index = parent / name, 1
    while candidate.exists():
        index += 1
        candidate = parent / f"{name}{index}"
    return candidate


def create_run_dir(run_dir: str | Path | None, *, exist_ok: bool = False) -> Path:
    """Create the directory of a new run.

    Args:
        run_dir: `train.run_dir`; None picks `next_run_dir()`.
        exist_ok: allow an existing non-empty `run_dir` (its files are overwritten).

    Returns:
        The directory, with `weights/` and `plots/` inside.

    Raises:
        FileExistsError: `run_dir` exists, holds files and `exist_ok` is false.
    """
    path = next_run_dir() if run_dir is None else Path(run_dir)
    if path.exists() and any(path.iterdir()) and not exist_ok:
        raise FileExistsError(
            f"{path}: run directory exists; pick another train.run_dir, set train.exist_ok=true, "
            f"or continue it with --resume {path}"
        )
    (path / "weights").mkdir(parents=True, exist_ok=True)
    (path / "plots").mkdir(parents=True, exist_ok=True)
    if exist_ok:
        # A fresh run in a reused directory must not inherit the old curves or weights.
        for stale in (path / "results.csv", path / "weights" / "last.pt", path / "weights" / "best.pt"):
            stale.unlink(missing_ok=True)
    return path


def write_config_yaml(cfg: Config, run_dir: Path) -> Path:
    """Write the resolved config to RUN/config.yaml and return its path."""
    path = run_dir / "config.yaml"
    save_config(cfg, path)
    return path


def _format(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def append_result(path: Path, row: dict[str, object]) -> None:
    """Append one epoch's row to results.csv, writing the header with the first row.

    Columns are fixed by the first row; a float NaN (e.g. AP on an epoch that
    was not validated) is written as an empty cell.
    """
    exists = path.is_file() and path.stat().st_size > 0
    if exists:
        with path.open(newline="", encoding="utf-8") as handle:
            columns = next(csv.reader(handle))
    else:
        columns = list(row)
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if not exists:
            writer.writerow(columns)
        writer.writerow([_format(row.get(column, float("nan"))) for column in columns])


def read_results(path: Path) -> list[dict[str, float]]:
    """results.csv as a list of rows (empty cells -> NaN)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {key: float(value) if value != "" else float("nan") for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


def truncate_results(path: Path, epochs: int) -> None:
    """Keep only the rows of the first `epochs` epochs (resume after a crash that
    wrote a row but not its checkpoint must not duplicate the row)."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(float(row[0])) <= epochs]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept)


STEP_COLUMNS = ("epoch", "batch", "step", "loss", "lr")


def append_step(path: Path, *, epoch: int, batch: int, step: int, loss: float, lr: float) -> None:
    """Append one optimizer step to steps.csv: epoch (1-based), micro-batches done in it,
    optimizer steps taken, the step's mean loss (`repr`: exact, so runs compare bit for bit), lr."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as handle:
        if new:
            handle.write(",".join(STEP_COLUMNS) + "\n")
        handle.write(f"{epoch},{batch},{step},{loss!r},{lr!r}\n")


def read_steps(path: Path) -> list[dict[str, float]]:
    """steps.csv as rows of numbers (an incomplete last line, from a kill, is dropped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        cells = line.split(",")
        if len(cells) != len(STEP_COLUMNS):
            continue
        try:
            rows.append(dict(zip(STEP_COLUMNS, map(float, cells), strict=True)))
        except ValueError:
            continue
    return rows


def truncate_steps(path: Path, *, epochs_done: int, batches_done: int) -> None:
    """Keep the steps behind a checkpoint: every row of the first `epochs_done` epochs and
    the first `batches_done` batches of the next (a kill may have logged steps after it)."""
    if not path.is_file():
        return
    kept = [row for row in read_steps(path)
            if row["epoch"] <= epochs_done or (row["epoch"] == epochs_done + 1 and row["batch"] <= batches_done)]
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(STEP_COLUMNS) + "\n")
        for row in kept:
            handle.write(f"{int(row['epoch'])},{int(row['batch'])},{int(row['step'])},{row['loss']!r},{row['lr']!r}\n")
