"""MOTChallenge text files: strict reading and writing.

    rows = read_mot("gt.txt")              # MotRows: frames, ids, boxes_xywh, scores, ...
    with MotWriter("pred.txt") as writer:
        writer.write(frame=1, ids=ids, boxes_xyxy=boxes, scores=scores)

One line per box: `frame, id, x, y, w, h, score_or_mark, class, visibility[, z]`
with frame 1-based, (x, y) the top-left corner and (w, h) the size in pixels.
Predictions carry the score in column 7 and -1 in columns 8-10 (what MOTChallenge
asks of results); ground truth carries a mark (0 = ignore the row), the class
and the visible fraction. Reading is strict: every line must have 6 to 10
comma-separated numbers, integral frame >= 1 and id >= 0, finite values, w and
h >= 0, and no (frame, id) pair twice; anything else is `MotFormatError`
naming the file and line. Blank lines are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np


class MotFormatError(ValueError):
    """A MOT text file that breaks the format; the message names the file and line."""


@dataclass
class MotRows:
    """The rows of one MOT file, in file order.

    Attributes:
        frames: int64 [N] 1-based frame numbers.
        ids: int64 [N] object / track ids.
        boxes_xywh: float64 [N, 4] (x, y, w, h) pixels, top-left corner.
        marks: float64 [N] column 7: score (predictions) or mark (ground truth; 0 = ignore).
        classes: int64 [N] column 8, -1 when absent.
        visibility: float64 [N] column 9, -1 when absent.
        lines: int64 [N] the 1-based line number of each row (for messages).
        path: the file read.
    """

    frames: np.ndarray
    ids: np.ndarray
    boxes_xywh: np.ndarray
    marks: np.ndarray
    classes: np.ndarray
    visibility: np.ndarray
    lines: np.ndarray
    path: str

    def __len__(self) -> int:
        return len(self.frames)


def _integral(value: float, what: str, where: str, minimum: int) -> int:
    if not value.is_integer() or value < minimum:
        raise MotFormatError(f"{where}: {what} must be an integer >= {minimum}, got {value:g}")
    return int(value)


def read_mot(path: str | Path) -> MotRows:
    """Read and validate a MOT text file (see the module docstring for the rules).

    Raises:
        MotFormatError: a malformed line, naming file and line.
        FileNotFoundError: no such file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    seen: dict[tuple[int, int], int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            where = f"{path}:{number}"
            parts = [part.strip() for part in text.split(",")]
            if not 6 <= len(parts) <= 10:
                raise MotFormatError(
                    f"{where}: expected 6 to 10 comma-separated values, got {len(parts)}"
                )
            try:
                values = [float(part) for part in parts]
            except ValueError:
                raise MotFormatError(f"{where}: not a number in {text!r}") from None
            if not all(math.isfinite(value) for value in values):
                raise MotFormatError(f"{where}: non-finite value in {text!r}")
            frame = _integral(values[0], "frame", where, 1)
            track_id = _integral(values[1], "id", where, 0)
            if values[4] < 0 or values[5] < 0:
                raise MotFormatError(f"{where}: negative box size w={values[4]:g} h={values[5]:g}")
            if (frame, track_id) in seen:
                raise MotFormatError(
                    f"{where}: id {track_id} appears twice in frame {frame} "
                    f"(first on line {seen[frame, track_id]})"
                )
            seen[frame, track_id] = number
            rows.append(
                values + [-1.0] * (10 - len(values))
                if len(values) > 6
                else values + [1.0, -1.0, -1.0, -1.0]
            )
            line_numbers.append(number)
    table = np.array(rows, np.float64).reshape(-1, 10)
    return MotRows(
        frames=table[:, 0].astype(np.int64),
        ids=table[:, 1].astype(np.int64),
        boxes_xywh=table[:, 2:6].copy(),
        marks=table[:, 6].copy(),
        classes=table[:, 7].astype(np.int64),
        visibility=table[:, 8].copy(),
        lines=np.array(line_numbers, np.int64),
        path=str(path),
    )


class MotWriter:
    """Writes tracking results, frame by frame, as MOTChallenge text.

    Rows with id < 1 (detections without a confirmed track) are not written.
    The file is flushed per frame, so an interrupted run leaves whole lines.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("w", encoding="utf-8")
        self.rows = 0

    def write(
        self, frame: int, ids: np.ndarray, boxes_xyxy: np.ndarray, scores: np.ndarray
    ) -> None:
        """Write the tracked boxes of 1-based `frame` (columns 8-10 are -1)."""
        lines = []
        for track_id, box, score in zip(
            ids.tolist(), np.asarray(boxes_xyxy).tolist(), scores.tolist(), strict=True
        ):
            if track_id < 1:
                continue
            lines.append(
                f"{int(frame)},{int(track_id)},{box[0]:.2f},{box[1]:.2f},{box[2] - box[0]:.2f},"
                f"{box[3] - box[1]:.2f},{score:.4f},-1,-1,-1\n"
            )
        self._file.writelines(lines)
        self._file.flush()
        self.rows += len(lines)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
