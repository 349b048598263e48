"""The run directory and the files in it: config.yaml, results.csv, steps.csv, plots.

    run = create_run_dir(None)                 # runs/train/exp, then exp2, exp3, ...
    write_config_yaml(cfg, run)                # run/config.yaml
    append_result(run / "results.csv", {"epoch": 1, "loss": 0.9, "AP": 0.1})
    append_step(run / "steps.csv", epoch=1, batch=4, step=4, loss=2.31, lr=1e-3)
    plot_training_curves(run / "results.csv", run / "plots")   # plots/loss.png, plots/ap.png

Layout:
    RUN/config.yaml   RUN/results.csv   RUN/steps.csv   RUN/weights/{last,best}.pt   RUN/plots/*.png

Every write goes through `writing`, so a full disk ends the run with the file named
(the checkpoints in weights/ are `training.resume`'s).
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detector.config import Config, save_config

DEFAULT_PARENT = Path("runs/train")


class WriteError(OSError):
    """An output of the run (checkpoint, results.csv, plot) could not be written."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into a WriteError that names it."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc


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
        for stale in (
            path / "results.csv",
            path / "weights" / "last.pt",
            path / "weights" / "best.pt",
        ):
            stale.unlink(missing_ok=True)
    return path


def write_config_yaml(cfg: Config, run_dir: Path) -> Path:
    """Write the resolved config to RUN/config.yaml and return its path."""
    path = run_dir / "config.yaml"
    with writing(path):
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
    with writing(path), path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if not exists:
            writer.writerow(columns)
        writer.writerow([_format(row.get(column, float("nan"))) for column in columns])


def epoch_row(
    epoch: int, stats: dict[str, Any], metrics: dict[str, float], *, train_s: float
) -> dict[str, Any]:
    """results.csv's row for an epoch: every loss term, lr, AP, AP50 (NaN when not validated),
    the training time, images/s, data-wait share and skipped steps."""
    return {
        "epoch": epoch,
        **{key: stats[key] for key in stats if key.startswith("loss")},
        "lr": stats["lr"],
        "AP": metrics.get("AP", math.nan),
        "AP50": metrics.get("AP50", math.nan),
        "train_s": train_s,
        "images_per_s": stats["images_per_s"],
        "data_wait_fraction": stats["data_wait_fraction"],
        "skipped_steps": stats["skipped_steps"],
    }


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
    with writing(path), path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept)


STEP_COLUMNS = ("epoch", "batch", "step", "loss", "lr")


def append_step(path: Path, *, epoch: int, batch: int, step: int, loss: float, lr: float) -> None:
    """Append one optimizer step to steps.csv: epoch (1-based), micro-batches done in it,
    optimizer steps taken, the step's mean loss (`repr`: exact, so runs compare bit for bit), lr."""
    new = not path.is_file() or path.stat().st_size == 0
    with writing(path), path.open("a", encoding="utf-8") as handle:
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
    kept = [
        row
        for row in read_steps(path)
        if row["epoch"] <= epochs_done
        or (row["epoch"] == epochs_done + 1 and row["batch"] <= batches_done)
    ]
    with writing(path), path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(STEP_COLUMNS) + "\n")
        for row in kept:
            handle.write(
                f"{int(row['epoch'])},{int(row['batch'])},{int(row['step'])},{row['loss']!r},{row['lr']!r}\n"
            )


def plot_training_curves(results_csv: Path, out_dir: Path) -> list[Path]:
    """Draw every `loss*` column and the AP/AP50 columns against the epoch.

    Args:
        results_csv: the run's results.csv.
        out_dir: where to write `loss.png` and `ap.png` (created if needed).

    Returns:
        The paths written (none when results.csv has no rows yet).
    """
    rows = read_results(results_csv)
    if not rows:
        return []
    with writing(out_dir):
        return _draw(rows, out_dir)


def _draw(rows: list[dict[str, float]], out_dir: Path) -> list[Path]:
    """loss.png and ap.png from results.csv's rows."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window (headless servers, workers)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = [row["epoch"] for row in rows]
    written = []
    panels = {
        "loss.png": ("training loss", [key for key in rows[0] if key.startswith("loss")]),
        "ap.png": (
            "validation (EMA weights when enabled)",
            [key for key in ("AP", "AP50") if key in rows[0]],
        ),
    }
    for file_name, (title, columns) in panels.items():
        figure, axis = plt.subplots(figsize=(6, 4), dpi=80)
        for column in columns:
            # Epochs without validation hold NaN; draw only the measured points.
            points = [
                (e, row[column])
                for e, row in zip(epochs, rows, strict=False)
                if not math.isnan(row[column])
            ]
            if points:
                axis.plot(*zip(*points, strict=False), marker="o", markersize=3, label=column)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
        path = out_dir / file_name
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
