"""`tools/benchmark.py slicing`'s SAHI rows (tools/benchmarks/slicing.py, sahi_merge.py): present
where `sahi` imports, replaced by a one-line note where it does not.

    .venv/bin/python -m pytest tests/benchmarks/test_slicing_sahi.py -q
"""

from __future__ import annotations

import sys

import pytest
import torch

from benchmarks import slicing
from benchmarks.sahi_merge import object_predictions, sahi_import_error, sahi_postprocess


def _rows(output: str) -> dict[str, list[float]]:
    """Part 3's table: merge name -> AP, AP50, APs, APm, APl."""
    rows = {}
    for line in output.splitlines():
        tokens = line.split()
        try:
            values = [float(token) for token in tokens[-5:]]
        except ValueError:
            continue
        if len(tokens) > 5:
            rows[" ".join(tokens[:-5])] = values
    return rows


def test_merge_settings_table_has_sahis_rows(capsys: pytest.CaptureFixture[str]) -> None:
    slicing._merge_quality(2)
    output = capsys.readouterr().out
    rows = _rows(output)
    assert {"sahi GREEDYNMM/ios 0.5", "sahi GREEDYNMM/iou 0.5", "nmm/iou 0.5"} <= set(rows)
    assert all(0.0 < value <= 1.0 for value in rows["sahi GREEDYNMM/ios 0.5"][:2])
    assert "sahi 0.12.8, " in output and "backend, class-aware" in output


def test_without_sahi_a_one_line_note_replaces_its_rows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sahi.postprocess.combine", None)  # import fails
    assert sahi_import_error() is not None
    slicing._merge_quality(1)
    output = capsys.readouterr().out
    assert not any(name.startswith("sahi") for name in _rows(output))
    notes = [line for line in output.splitlines() if "sahi not compared" in line]
    assert len(notes) == 1 and "it does not import here: ModuleNotFoundError" in notes[0]


def test_sahi_postprocess_leaves_its_input_reusable() -> None:
    """SAHI writes merged predictions back into the list it is given: the adapter hands it
    a copy, so the benchmark's repeated runs see the same input every time."""
    boxes = torch.tensor([[10.0, 10, 20, 20], [10, 10, 20, 28]])
    predictions = object_predictions(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]))
    for _ in range(2):
        merged = sahi_postprocess(
            predictions, method="nmm", match_metric="iou", match_threshold=0.5
        )
        assert merged[0].tolist() == [[10.0, 10, 20, 28]]
        assert [p.bbox.to_xyxy() for p in predictions] == boxes.tolist()
