"""Score tracking results against ground truth: one pair of MOT files or two folders.

    table = evaluate_tracks("gt.txt", "pred.txt")    # one sequence, named by the file stem
    table = evaluate_tracks("gt_dir/", "pred_dir/")  # each gt_dir/<seq>.txt with pred_dir/<seq>.txt
    table.combined["HOTA"], [row["IDF1"] for row in table.sequences]

Sequences are scored separately and pooled (`metrics.combine`); each sequence
runs from frame 1 to its ground truth's last frame unless `num_frames` says
otherwise. A prediction folder missing a sequence, or holding one the ground
truth lacks, is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.tracking.metrics import combine, final_scores, sequence_counts
from detector.tracking.mot import MotFormatError, read_mot
from detector.tracking.sequence import sequence_data

# What `detector evaluate-tracks` prints, in order (fractions, then counts).
COLUMNS = (
    "HOTA",
    "DetA",
    "AssA",
    "LocA",
    "MOTA",
    "MOTP",
    "IDF1",
    "IDP",
    "IDR",
    "IDSW",
    "Frag",
    "MT",
    "PT",
    "ML",
    "TP",
    "FP",
    "FN",
)


@dataclass
class TrackingTable:
    """Scores of each sequence and of all pooled (`combined`)."""

    sequences: list[dict[str, Any]]
    combined: dict[str, Any]

    def format(self) -> str:
        """A fixed-width text table, one row per sequence and a COMBINED row."""
        rows = self.sequences + ([self.combined] if len(self.sequences) > 1 else [])
        width = max([len("sequence")] + [len(str(row["name"])) for row in rows])
        lines = ["sequence".ljust(width) + "".join(f"{name:>8}" for name in COLUMNS)]
        for row in rows:
            cells = [
                f"{row[name]:8.4f}" if isinstance(row[name], float) else f"{row[name]:8d}"
                for name in COLUMNS
            ]
            lines.append(str(row["name"]).ljust(width) + "".join(cells))
        return "\n".join(lines)


def _pairs(gt: Path, pred: Path) -> list[tuple[str, Path, Path]]:
    if gt.is_file() and pred.is_file():
        return [(gt.stem, gt, pred)]
    if gt.is_dir() and pred.is_dir():
        gt_files = {path.stem: path for path in sorted(gt.glob("*.txt"))}
        pred_files = {path.stem: path for path in sorted(pred.glob("*.txt"))}
        if not gt_files:
            raise MotFormatError(f"{gt}: no ground-truth .txt files in this folder")
        missing = sorted(set(gt_files) - set(pred_files))
        extra = sorted(set(pred_files) - set(gt_files))
        if missing:
            raise MotFormatError(f"{pred}: no predictions for sequence(s) {', '.join(missing)}")
        if extra:
            raise MotFormatError(
                f"{pred}: sequence(s) {', '.join(extra)} have no ground truth in {gt}"
            )
        return [(name, gt_files[name], pred_files[name]) for name in gt_files]
    for path in (gt, pred):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    raise MotFormatError(f"{gt} and {pred}: give two files or two folders, not one of each")


def evaluate_tracks(
    gt: str | Path, pred: str | Path, num_frames: int | None = None
) -> TrackingTable:
    """Read, validate and score; raises MotFormatError/FileNotFoundError naming the file."""
    all_counts = []
    for name, gt_path, pred_path in _pairs(Path(gt), Path(pred)):
        data = sequence_data(
            read_mot(gt_path), read_mot(pred_path), num_frames=num_frames, name=name
        )
        all_counts.append(sequence_counts(data))
    return TrackingTable(
        [final_scores(counts) for counts in all_counts], final_scores(combine(all_counts))
    )
