"""`tools/benchmark.py recipe`: variants toggle one change,
and the harness runs end to end at tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks import recipe as recipe_module
from benchmarks import recipe_variants
from benchmarks.recipe_variants import CHANGES, Change, Variant, variants_for
from detector.config import load_config
from detector.data.augment.entries import DEFAULT_AUGMENT

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _names(cfg) -> list[str]:
    return [entry["name"] for entry in cfg.augment]


def test_a_change_is_added_before_box_filter_and_removed_when_present() -> None:
    cfg = load_config(CONFIGS / "dense.yaml")  # augment left out: DEFAULT_AUGMENT
    assert cfg.augment is None
    added = Variant("toggle affine", CHANGES["affine"]).apply(cfg)
    expected = [entry["name"] for entry in DEFAULT_AUGMENT]
    expected.insert(expected.index("box_filter"), "affine")
    assert _names(added) == expected
    removed = Variant("toggle affine", CHANGES["affine"]).apply(added)
    assert _names(removed) == [entry["name"] for entry in DEFAULT_AUGMENT]
    assert (
        DEFAULT_AUGMENT == load_config(CONFIGS / "shapes.yaml").augment
    )  # the defaults themselves untouched


def test_train_keys_toggle_and_ranges_follow_the_image_size() -> None:
    cfg = load_config(CONFIGS / "shapes.yaml")
    cfg = Variant("toggle multi_scale", CHANGES["multi_scale"]).apply(cfg)
    assert cfg.train.multi_scale == [128, 192]  # 0.75 and 1.25 x 160, to multiples of 32
    cfg = Variant("toggle multi_scale", CHANGES["multi_scale"]).apply(cfg)
    assert cfg.train.multi_scale is None
    cfg = Variant("toggle close", Change(train={"close_mosaic": 0.3})).apply(cfg)
    assert cfg.train.close_mosaic == 0.3
    cfg = Variant("toggle close", Change(train={"close_mosaic": 0.3})).apply(cfg)
    assert cfg.train.close_mosaic == 0
    assert recipe_variants._range_of_32(192) == [160, 224]  # 144..240 narrowed to multiples of 32
    assert recipe_variants._range_of_32(40) == [32, 32]
    with pytest.raises(ValueError, match="train.no_such_key is not a config key"):
        Variant("bad", Change(train={"no_such_key": 1})).apply(cfg)


def test_variants_start_with_the_baseline_and_refuse_unknown_changes() -> None:
    variants = variants_for(["affine"])
    assert [v.name for v in variants] == ["baseline", "toggle affine"]
    cfg = load_config(CONFIGS / "shapes.yaml")
    assert variants[0].apply(cfg) is cfg and cfg.augment == DEFAULT_AUGMENT
    with pytest.raises(ValueError, match="unknown change"):
        variants_for(["rotate90"])


def test_recipe_runs_end_to_end_at_tiny_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread_torch: None
) -> None:
    tiny = [
        "data.synthetic.num_train=4",
        "data.synthetic.num_val=2",
        "model.image_size=64",
        "train.batch_size=2",
        "train.workers=0",
        "train.device=cpu",
    ]
    monkeypatch.setattr(
        recipe_module,
        "SETS",
        {
            "shapes": {
                "config": str(CONFIGS / "shapes.yaml"),
                "epochs": 1,
                "overrides": [*tiny, "data.synthetic.image_size=64"],
            },
            "dense": {
                "config": str(CONFIGS / "dense.yaml"),
                "epochs": 1,
                "overrides": [*tiny, "data.synthetic.image_size=96"],
            },
        },
    )
    args = ["--changes", "affine", "--steps", "1", "--repeats", "1", "--out", str(tmp_path)]
    result = CliRunner().invoke(recipe_module.recipe, args)
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "results.json").read_text())
    for set_name in ("shapes", "dense"):
        for variant in ("baseline", "toggle affine"):
            row = stored["accuracy"][set_name][variant]
            assert 0 <= row["AP"] <= 1 and 0 <= row["AP50"] <= 1 and row["epochs"] == 1
            assert stored["throughput"][set_name][variant] > 0
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    assert "shapes AP" in header and "dense AP" in header
    baseline_row = next(line for line in lines if line.startswith("baseline "))
    assert "1.00x" in baseline_row  # the baseline's own time factor
    again = CliRunner().invoke(recipe_module.recipe, ["--table-only", "--out", str(tmp_path)])
    assert again.exit_code == 0 and "toggle affine" in again.output


def test_unknown_set_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(recipe_module.recipe, ["--sets", "coco", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown set(s) ['coco']" in result.output
