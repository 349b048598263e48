"""The run directory and its files: numbering, results.csv and steps.csv rows, truncation on resume,
plots, and a failed write named."""

from __future__ import annotations

import errno
import math
from pathlib import Path

import pytest

from detector.training.run_files import (
    WriteError,
    append_result,
    append_step,
    create_run_dir,
    epoch_row,
    next_run_dir,
    plot_training_curves,
    read_results,
    read_steps,
    truncate_results,
    truncate_steps,
    writing,
)


def test_run_directories_are_numbered_and_not_overwritten(tmp_path: Path) -> None:
    assert next_run_dir(tmp_path) == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp2").mkdir()
    assert next_run_dir(tmp_path) == tmp_path / "exp3"
    run = create_run_dir(tmp_path / "mine")
    assert (run / "weights").is_dir() and (run / "plots").is_dir()
    append_result(run / "results.csv", {"epoch": 1, "loss": 0.5, "AP": math.nan})
    append_result(run / "results.csv", {"epoch": 2, "loss": 0.25, "AP": 0.125})
    rows = read_results(run / "results.csv")
    assert (
        [r["epoch"] for r in rows] == [1.0, 2.0]
        and math.isnan(rows[0]["AP"])
        and rows[1]["AP"] == 0.125
    )
    with pytest.raises(FileExistsError, match="--resume"):
        create_run_dir(run)
    create_run_dir(run, exist_ok=True)
    assert not (run / "results.csv").exists()  # a fresh run does not inherit old rows


def test_steps_and_results_are_cut_back_to_the_checkpoint(tmp_path: Path) -> None:
    steps = tmp_path / "steps.csv"
    for epoch, batch, step in ((1, 2, 1), (1, 4, 2), (2, 2, 3), (2, 4, 4), (3, 2, 5)):
        append_step(steps, epoch=epoch, batch=batch, step=step, loss=0.1 * step, lr=1e-3)
    assert read_steps(steps)[2] == {
        "epoch": 2.0,
        "batch": 2.0,
        "step": 3.0,
        "loss": 0.1 * 3,
        "lr": 1e-3,
    }
    truncate_steps(
        steps, epochs_done=1, batches_done=2
    )  # last.pt: epoch 1 done, 2 batches of epoch 2
    assert [int(row["step"]) for row in read_steps(steps)] == [1, 2, 3]
    with steps.open("a") as handle:
        handle.write("2,4,4,0.4")  # a kill in the middle of a line
    assert [int(row["step"]) for row in read_steps(steps)] == [1, 2, 3]

    results = tmp_path / "results.csv"
    stats = {
        "loss": 1.5,
        "loss_box": 1.0,
        "lr": 0.01,
        "images_per_s": 10.0,
        "data_wait_fraction": 0.1,
        "skipped_steps": 0,
        "step_losses": [1.5],
    }
    for epoch in (1, 2, 3):
        append_result(
            results,
            epoch_row(epoch, stats, {"AP": 0.5, "AP50": 0.75} if epoch == 2 else {}, train_s=2.0),
        )
    truncate_results(results, 2)
    rows = read_results(results)
    assert (
        [row["epoch"] for row in rows] == [1.0, 2.0]
        and rows[1]["AP"] == 0.5
        and math.isnan(rows[0]["AP"])
    )
    assert list(rows[0]) == [
        "epoch",
        "loss",
        "loss_box",
        "lr",
        "AP",
        "AP50",
        "train_s",
        "images_per_s",
        "data_wait_fraction",
        "skipped_steps",
    ]
    written = plot_training_curves(results, tmp_path / "plots")
    assert [path.name for path in written] == ["loss.png", "ap.png"] and all(
        p.stat().st_size for p in written
    )
    assert plot_training_curves(tmp_path / "missing.csv", tmp_path / "plots") == []


def test_a_failed_write_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    with pytest.raises(WriteError, match=f"cannot write {target}: No space left on device") as info:
        with writing(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
