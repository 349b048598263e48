"""Training curves from results.csv: loss terms and validation AP, as PNG files.

    from detector.training.plots import plot_training_curves
    plot_training_curves(Path("runs/train/exp/results.csv"), Path("runs/train/exp/plots"))
    # -> plots/loss.png, plots/ap.png
"""

from __future__ import annotations

import math
from pathlib import Path

from detector.training.run_dir import read_results


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
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window (headless servers, workers)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = [row["epoch"] for row in rows]
    written = []
    panels = {
        "loss.png": ("training loss", [key for key in rows[0] if key.startswith("loss")]),
        "ap.png": ("validation (EMA weights when enabled)", [key for key in ("AP", "AP50") if key in rows[0]]),
    }
    for file_name, (title, columns) in panels.items():
        figure, axis = plt.subplots(figsize=(6, 4), dpi=80)
        for column in columns:
            # Epochs without validation hold NaN; draw only the measured points.
            points = [(e, row[column]) for e, row in zip(epochs, rows, strict=False) if not math.isnan(row[column])]
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
