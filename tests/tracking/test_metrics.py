"""Our tracking metrics equal TrackEval's (HOTA, CLEAR, Identity) on the same MOT files.

TrackEval is the reference implementation of HOTA by its authors. It is installed
for the tests by tools/bootstrap.py (`--no-deps`: its metadata asks for the GUI
build of OpenCV, which would put a second cv2 beside opencv-python-headless).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.tracking.evaluate import evaluate_tracks


def write_rows(path: Path, rows: list[tuple]) -> None:
    path.write_text(
        "".join(
            ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in row) + "\n"
            for row in rows
        ),
        encoding="utf-8",
    )


def synthetic_case(
    seed: int, frames: int = 40, objects: int = 6
) -> tuple[list[tuple], list[tuple]]:
    """Ground truth of moving boxes, and a tracker output with misses, FPs, swaps and fragments."""
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    starts = rng.integers(1, frames // 2, objects)
    ends = np.minimum(frames, starts + rng.integers(5, frames, objects))
    origin = rng.uniform(0, 300, (objects, 2))
    velocity = rng.uniform(-4, 4, (objects, 2))
    size = rng.uniform(15, 50, (objects, 2))
    track_of = np.arange(objects) + 1
    next_id = objects + 1
    for frame in range(1, frames + 1):
        # Occasional identity events: a swap between two objects, or a fragment (new id).
        if rng.random() < 0.08:
            a, b = rng.choice(objects, 2, replace=False)
            track_of[a], track_of[b] = track_of[b], track_of[a]
        if rng.random() < 0.05:
            track_of[rng.integers(objects)] = next_id
            next_id += 1
        for k in range(objects):
            if not starts[k] <= frame <= ends[k]:
                continue
            x, y = origin[k] + velocity[k] * frame
            w, h = size[k]
            mark = 0 if rng.random() < 0.05 else 1
            gt.append(
                (frame, k + 1, round(x, 2), round(y, 2), round(w, 2), round(h, 2), mark, 1, 1.0)
            )
            if rng.random() < 0.12:
                continue  # missed
            jitter = rng.normal(0, rng.choice([1.0, 6.0]), 4)
            pred.append(
                (
                    frame,
                    int(track_of[k]),
                    round(x + jitter[0], 2),
                    round(y + jitter[1], 2),
                    round(max(1.0, w + jitter[2]), 2),
                    round(max(1.0, h + jitter[3]), 2),
                    round(float(rng.uniform(0.3, 1.0)), 3),
                    -1,
                    -1,
                    -1,
                )
            )
        for extra in range(rng.poisson(0.6)):  # false positives with ids of their own
            pred.append(
                (
                    frame,
                    1000 + 10 * frame + extra,
                    *(round(v, 2) for v in rng.uniform(0, 300, 2)),
                    20.0,
                    20.0,
                    0.5,
                    -1,
                    -1,
                    -1,
                )
            )
    return gt, pred


def trackeval_scores(
    gt_dir: Path, pred_dir: Path, lengths: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Run TrackEval's own MOTChallenge pipeline (MOT15 mode: no distractor preprocessing).

    An ImportError here means the environment was not made by tools/bootstrap.py.
    """
    from trackeval import Evaluator
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.metrics import CLEAR, HOTA, Identity

    tracker_root = pred_dir.parent / "trackers"
    (tracker_root / "ours").mkdir(parents=True, exist_ok=True)
    for path in pred_dir.glob("*.txt"):
        (tracker_root / "ours" / path.name).write_bytes(path.read_bytes())
    dataset = MotChallenge2DBox(
        {
            "GT_FOLDER": str(gt_dir),
            "TRACKERS_FOLDER": str(tracker_root),
            "TRACKERS_TO_EVAL": ["ours"],
            "BENCHMARK": "MOT15",
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": dict(lengths),
            "TRACKER_SUB_FOLDER": "",
            "GT_LOC_FORMAT": "{gt_folder}/{seq}.txt",
            "PRINT_CONFIG": False,
            "OUTPUT_FOLDER": str(pred_dir.parent / "te_out"),
        }
    )
    evaluator = Evaluator(
        {
            "USE_PARALLEL": False,
            "PRINT_RESULTS": False,
            "PRINT_CONFIG": False,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
            "TIME_PROGRESS": False,
            "DISPLAY_LESS_PROGRESS": True,
            "BREAK_ON_ERROR": True,
            "PRINT_ONLY_COMBINED": True,
            "OUTPUT_EMPTY_CLASSES": False,
        }
    )
    metrics = [HOTA(), CLEAR({"PRINT_CONFIG": False}), Identity({"PRINT_CONFIG": False})]
    results, messages = evaluator.evaluate([dataset], metrics)
    per_seq = results["MotChallenge2DBox"]["ours"]
    assert messages["MotChallenge2DBox"]["ours"] == "Success", messages
    out = {}
    for seq, by_class in per_seq.items():
        res = by_class["pedestrian"]
        hota, clear, ident = res["HOTA"], res["CLEAR"], res["Identity"]
        out[seq] = {
            "HOTA": float(np.mean(hota["HOTA"])),
            "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])),
            "LocA": float(np.mean(hota["LocA"])),
            "DetRe": float(np.mean(hota["DetRe"])),
            "AssPr": float(np.mean(hota["AssPr"])),
            "MOTA": float(clear["MOTA"]),
            "MOTP": float(clear["MOTP"]),
            "IDSW": int(clear["IDSW"]),
            "Frag": int(clear["Frag"]),
            "MT": int(clear["MT"]),
            "ML": int(clear["ML"]),
            "TP": int(clear["CLR_TP"]),
            "FP": int(clear["CLR_FP"]),
            "FN": int(clear["CLR_FN"]),
            "IDF1": float(ident["IDF1"]),
            "IDTP": int(ident["IDTP"]),
            "IDFP": int(ident["IDFP"]),
        }
    return out


def assert_same(ours: dict, reference: dict) -> None:
    for key, expected in reference.items():
        assert ours[key] == pytest.approx(expected, abs=1e-12), (key, ours[key], expected)


@pytest.mark.parametrize("seeds", [(0,), (1, 2, 3), (4, 5)])
def test_metrics_equal_trackeval(tmp_path: Path, seeds: tuple[int, ...]) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    lengths = {}
    for seed in seeds:
        gt, pred = synthetic_case(seed)
        write_rows(gt_dir / f"seq{seed}.txt", gt)
        write_rows(pred_dir / f"seq{seed}.txt", pred)
        lengths[f"seq{seed}"] = 40
    reference = trackeval_scores(gt_dir, pred_dir, lengths)
    table = evaluate_tracks(gt_dir, pred_dir, num_frames=40)
    for row in table.sequences:
        assert_same(row, reference[row["name"]])
    assert_same(table.combined, reference["COMBINED_SEQ"])
    # Not a degenerate case: every kind of error occurs.
    assert (
        table.combined["IDSW"] > 0
        and table.combined["FP"] > 0
        and 0.2 < table.combined["HOTA"] < 0.95
    )


def test_perfect_empty_and_unmatched_predictions_equal_trackeval(tmp_path: Path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    gt, _ = synthetic_case(7)
    gt = [row[:6] + (1,) + row[7:] for row in gt]  # nothing ignored
    perfect = [row[:6] + (0.9, -1, -1, -1) for row in gt]
    far = [(row[0], row[1], row[2] + 500, row[3], row[4], row[5], 0.9, -1, -1, -1) for row in gt]
    for name, pred in (("perfect", perfect), ("empty", []), ("far", far)):
        write_rows(gt_dir / f"{name}.txt", gt)
        write_rows(pred_dir / f"{name}.txt", pred)
    reference = trackeval_scores(gt_dir, pred_dir, {"perfect": 40, "empty": 40, "far": 40})
    table = evaluate_tracks(gt_dir, pred_dir, num_frames=40)
    rows = {row["name"]: row for row in table.sequences}
    for name in ("perfect", "empty", "far"):
        assert_same(rows[name], reference[name])
    assert rows["perfect"]["HOTA"] == pytest.approx(1.0) and rows["perfect"]["IDF1"] == 1.0
    assert rows["empty"]["MOTA"] == 0.0 and rows["far"]["IDF1"] == 0.0
    assert_same(table.combined, reference["COMBINED_SEQ"])


def test_hand_computed_identity_switch() -> None:
    # Object 1 for 4 frames; the tracker switches from id 7 to id 8 at frame 3.
    from detector.tracking.metrics import final_scores, sequence_counts
    from detector.tracking.mot import MotRows
    from detector.tracking.sequence import sequence_data

    def rows(ids: list[int]) -> MotRows:
        n = len(ids)
        return MotRows(
            np.arange(1, n + 1),
            np.array(ids),
            np.tile([10.0, 10, 20, 20], (n, 1)),
            np.ones(n),
            np.full(n, -1),
            np.full(n, -1.0),
            np.arange(1, n + 1),
            "mem",
        )

    scores = final_scores(sequence_counts(sequence_data(rows([1, 1, 1, 1]), rows([7, 7, 8, 8]))))
    assert scores["IDSW"] == 1 and scores["TP"] == 4 and scores["MOTA"] == pytest.approx(0.75)
    assert scores["IDF1"] == pytest.approx(0.5)  # best id covers 2 of 4 boxes: 2*2 / (4 + 4)
    assert scores["DetA"] == pytest.approx(1.0) and scores["AssA"] == pytest.approx(
        0.5
    )  # each match: 2 / (4 + 2 - 2)
    assert scores["HOTA"] == pytest.approx(np.sqrt(0.5))
