"""`benchmark.py resize` runs and ranks the chosen resize among the antialiased ones."""

from __future__ import annotations

from click.testing import CliRunner

from benchmarks.resize import resize


def test_resize_benchmark_prints_every_candidate() -> None:
    result = CliRunner().invoke(
        resize, ["--sizes", "96x64", "--image-size", "32", "--repeats", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "96x64 -> 32x21 (shrink 3.00x)" in result.output
    rows = {line[:28].strip(): line.split() for line in result.output.splitlines()[2:]}
    assert set(rows) == {
        "cv2 INTER_LINEAR",
        "cv2 INTER_AREA",
        "torch bilinear antialias",
        "resize_image (chosen)",
    }
    # Plain bilinear sampling aliases at 3x; the chosen resize filters.
    assert float(rows["resize_image (chosen)"][-2]) < float(rows["cv2 INTER_LINEAR"][-2]) / 2
