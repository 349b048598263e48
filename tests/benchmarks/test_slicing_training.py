"""tools/benchmarks/slicing_training.py: budget epochs, the aim check, part 4 end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.ladder import budget_epochs
from benchmarks.slicing_training import (
    MERGE_SETTINGS,
    aim_check,
    inference_settings,
    training_comparison,
)
from detector.defaults import (
    DEFAULT_SLICE_MATCH_METRIC,
    DEFAULT_SLICE_MATCH_THRESHOLD,
    DEFAULT_SLICE_MERGE,
)


def test_budget_epochs_is_minutes_times_speed_over_the_epoch() -> None:
    # 6 min at 12 samples/s = 4320 samples: 4.1 epochs of 1049 tiles, 90 of 48 images.
    assert budget_epochs(6, 12.0, 1049) == 4
    assert budget_epochs(6, 12.0, 48) == 90
    # Rounded to the nearest epoch: 2.5 -> 2 (banker's), 2.6 -> 3.
    assert budget_epochs(1, 5.0, 120) == 2
    assert budget_epochs(1, 5.2, 120) == 3
    # Never fewer than one epoch.
    assert budget_epochs(0.001, 1.0, 10_000) == 1


@pytest.mark.parametrize(("speed", "samples"), [(0.0, 48), (-1.0, 48), (5.0, 0)])
def test_budget_epochs_refuses_a_speed_or_epoch_that_plans_nothing(
    speed: float, samples: int
) -> None:
    with pytest.raises(ValueError, match="positive speed and epoch size"):
        budget_epochs(6, speed, samples)


def _stats(small: float, large: float) -> dict[str, float]:
    return {"APs": small, "APl": large}


def test_aim_passes_when_small_doubles_and_large_loses_at_most_ten_percent() -> None:
    checks = aim_check(_stats(0.078, 0.083), _stats(0.005, 0.064))
    assert [passed for passed, _ in checks] == [True, True]
    assert checks[0][1].startswith("PASS AP_small 0.078") and "15.6x" in checks[0][1]
    assert checks[1][1].startswith("PASS AP_large 0.083 vs 0.064: 30% higher")
    # Exactly at both bounds: 2x and a 10% loss pass.
    assert [p for p, _ in aim_check(_stats(0.2, 0.45), _stats(0.1, 0.5))] == [True, True]


def test_aim_fails_below_double_small_or_above_ten_percent_large_loss() -> None:
    checks = aim_check(_stats(0.19, 0.44), _stats(0.1, 0.5))
    assert [passed for passed, _ in checks] == [False, False]
    assert checks[0][1].startswith("FAIL AP_small 0.190") and "1.9x" in checks[0][1]
    assert checks[1][1].startswith("FAIL AP_large 0.440 vs 0.500: 12% lower")


def test_aim_on_zero_and_unmeasured_stats() -> None:
    # Zero letterboxed AP_small: any sliced AP_small doubles it, zero does not.
    assert aim_check(_stats(0.01, 0.1), _stats(0.0, 0.1))[0][0] is True
    assert aim_check(_stats(0.0, 0.1), _stats(0.0, 0.1))[0][0] is False
    # Zero letterboxed AP_large: nothing to lose.
    assert aim_check(_stats(0.1, 0.0), _stats(0.01, 0.0))[1][0] is True
    # COCOeval's -1 (no objects of that size): not measured is a FAIL, saying why.
    small, large = aim_check(_stats(-1.0, -1.0), _stats(0.1, 0.1))
    assert small == (False, "FAIL AP_small: not measured (no small objects in the split)")
    assert large == (False, "FAIL AP_large: not measured (no large objects in the split)")


def test_inference_settings_put_both_models_rows_first_then_every_merge_at_both_scores() -> None:
    rows = inference_settings(256, 0.2, 0.001)
    assert [name for name, _, _ in rows[:3]] == [
        "letterboxed",
        "sliced 256, no full pass",
        "sliced 256 + full, NMS IoU 0.5",
    ]
    assert rows[0][1] is None and rows[1][1].full_image is False
    default = rows[2][1]
    assert (default.size, default.overlap, default.full_image) == (256, 0.2, True)
    assert (default.merge, default.match_metric, default.match_threshold) == ("nms", "iou", 0.5)
    # The first merge setting is the package default (what validation and evaluate use).
    assert next(iter(MERGE_SETTINGS.values())) == (
        DEFAULT_SLICE_MERGE,
        DEFAULT_SLICE_MATCH_METRIC,
        DEFAULT_SLICE_MATCH_THRESHOLD,
    )
    assert [score for _, _, score in rows] == [0.001] * 6 + [0.25] * 4
    assert [(o.merge, o.match_metric, o.match_threshold) for _, o, _ in rows[6:]] == list(
        MERGE_SETTINGS.values()
    )
    assert rows[-1][0] == "sliced 256 + full, NMM IOS 0.5, score>=0.25"
    # Evaluated at the detect threshold already: each merge once.
    assert len(inference_settings(256, 0.2, 0.25)) == 6


TINY = (
    "data.synthetic.image_size=256",
    "data.synthetic.num_train=1",
    "model.image_size=64",
    "data.slice.size=64",
    "data.slice.empty_rate=0",
    "train.batch_size=2",
    "train.workers=0",
    "eval.max_det=50",
)


def test_part_4_end_to_end_prints_every_row_with_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = training_comparison(
        minutes=1e-5, out=tmp_path, repeats=1, steps=1, overrides=TINY, val_images=3
    )
    printed = capsys.readouterr().out
    assert "aerial.yaml with 3 val images" in printed
    val_list = tmp_path / "data" / "aerial" / "ImageSets" / "Main" / "val.txt"
    assert len(val_list.read_text().split()) == 3
    # 6 tiles with objects + 2 copies of the one whole image (data.slice.full_images: 2)
    assert re.search(r"tiles .* samples/s, 8 samples/epoch -> 1 epochs", printed)
    assert re.search(r"letterboxed .* samples/s, 1 samples/epoch -> 1 epochs", printed)
    expected = [("tiles", "letterboxed"), ("tiles", "sliced 64, no full pass")]
    expected += [("tiles", f"sliced 64 + full, {name}") for name in MERGE_SETTINGS]
    expected += [("tiles", f"sliced 64 + full, {name}, score>=0.25") for name in MERGE_SETTINGS]
    expected += [
        ("letterboxed", "letterboxed"),
        ("letterboxed", "sliced 64, no full pass"),
        ("letterboxed", "sliced 64 + full, NMS IoU 0.5"),
    ]
    assert [(row.trained, row.evaluated) for row in rows] == expected
    number = r"\s+-?\d+\.\d+"
    for trained, evaluated in expected:
        line = re.escape(f"{trained:<12}{evaluated:<48}") + f"({number}){{6}}$"
        assert re.search(line, printed, re.MULTILINE), (trained, evaluated)
    assert len(re.findall(r"^   (PASS|FAIL) AP_(small|large)", printed, re.MULTILINE)) == 2
    assert (tmp_path / "slicing_training.json").is_file()
