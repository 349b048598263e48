"""`benchmark.py data --sliced` times per-tile decoding against the grouped, cached loader."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from benchmarks.data import data

ROOT = Path(__file__).resolve().parents[2]


def test_sliced_benchmark_prints_both_orders_for_0_and_2_workers(tmp_path: Path) -> None:
    args = [
        str(ROOT / "configs/aerial.yaml"),
        "--sliced",
        "--image-size",
        "256",
        "--num-images",
        "2",
        "--repeats",
        "1",
        "--batch-size",
        "4",
        "--set",
        f"data.root={tmp_path / 'aerial'}",
        "--set",
        "data.synthetic.num_train=2",
        "--set",
        "data.synthetic.num_val=1",
        "--set",
        "data.synthetic.image_size=512",
    ]
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 0, result.output
    assert "data.slice: 2 images -> 18 tiles" in result.output and "group_images 8" in result.output
    rows = {line[:22].strip(): line.split() for line in result.output.splitlines()}
    modes = ["per tile, 0 workers", "grouped, 0 workers", "per tile, 2 workers"]
    modes.append("grouped, 2 workers")
    assert all(mode in rows for mode in modes), result.output
    # Without workers all the decoding is the main process's: per tile decodes an image per
    # sample, grouped once per image, so grouped costs less CPU per sample.
    assert float(rows["grouped, 0 workers"][-2]) < float(rows["per tile, 0 workers"][-2])
    assert "ratio grouped / per tile, 2 workers:" in result.output


def test_sliced_benchmark_needs_data_slice(tmp_path: Path) -> None:
    args = [str(ROOT / "configs/aerial.yaml"), "--sliced", "--set", "data.slice=null"]
    args += ["--set", f"data.root={tmp_path / 'aerial'}", "--set", "data.synthetic.num_train=1"]
    args += ["--set", "data.synthetic.num_val=1", "--set", "data.synthetic.image_size=256"]
    result = CliRunner().invoke(data, args)
    assert result.exit_code != 0 and "--sliced needs data.slice in the config" in result.output
