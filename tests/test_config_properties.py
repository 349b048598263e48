"""Property-based test of the config loader: any YAML file either loads into a Config whose
values pass the range checks, or raises `ConfigError` naming the file; never another exception."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from detector.config import ConfigError, load_config

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHAPES = (Path(__file__).resolve().parent.parent / "configs" / "shapes.yaml").read_text()
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["auto", "cpu", "cuda:0", "voc", "resnet18", "sgd", "1e-3", ".nan"]),
)
VALUE = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
SECTIONS = {
    "data": [
        "format",
        "root",
        "train",
        "val",
        "names",
        "synthetic",
        "min_box_size",
        "max_image_pixels",
        "slice",
    ],
    "model": [
        "backbone",
        "image_size",
        "pretrained",
        "frozen_stages",
        "freeze_bn",
        "neck_channels",
        "head_channels",
        "head_convs",
        "strides",
        "mean",
        "std",
    ],
    "train": [
        "epochs",
        "batch_size",
        "workers",
        "device",
        "seed",
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
        "warmup_epochs",
        "final_lr_fraction",
        "accumulate",
        "grad_clip",
        "amp",
        "ema_decay",
        "time_limit",
        "nan_policy",
        "max_nan_skips",
        "run_dir",
    ],
    "eval": ["score_threshold", "iou_threshold", "max_det", "batch_size", "voc_metric"],
    "augment": [],
}


@st.composite
def config_documents(draw: st.DrawFn) -> Any:
    """A mapping of known sections and keys with random values (sometimes unknown ones)."""
    document: dict[str, Any] = {}
    for section in draw(
        st.lists(st.sampled_from(sorted(SECTIONS) + ["extra"]), max_size=4, unique=True)
    ):
        keys = SECTIONS.get(section) or []
        if not keys or draw(st.integers(0, 5)) == 0:
            document[section] = draw(VALUE)
            continue
        document[section] = {
            key: draw(VALUE) for key in draw(st.lists(st.sampled_from(keys), max_size=4))
        }
    return document


@st.composite
def edited_shapes(draw: st.DrawFn) -> str:
    """configs/shapes.yaml with a few random edits
    (truncation, inserted YAML syntax, duplicated lines)."""
    text = SHAPES
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["truncate", "insert", "duplicate"]))
        if kind == "truncate":
            text = text[:position]
        elif kind == "insert":
            text = (
                text[:position]
                + draw(
                    st.sampled_from(
                        [
                            ":",
                            "- ",
                            "{",
                            "]",
                            "&a",
                            "*a",
                            "!!python/object:os.system",
                            "\t",
                            "? [a]\n: 1\n",
                            "\n  lr: .inf\n",
                            "\ntrain:\n  epochs: 1\n",
                            "%",
                            "\x00",
                            "é",
                        ]
                    )
                )
                + text[position:]
            )
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                line = lines[draw(st.integers(0, len(lines) - 1))]
                text = text[:position] + "\n" + line + text[position:]
    return text


def check_loaded(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}: "), str(error)
        return
    assert math.isfinite(cfg.train.lr) and cfg.train.lr > 0 and 0 <= cfg.eval.iou_threshold <= 1
    assert cfg.train.batch_size >= 1 and cfg.train.workers >= 0 and len(cfg.model.std) == 3


@SETTINGS
@given(document=st.one_of(config_documents(), VALUE))
def test_random_config_documents_load_or_name_the_file(tmp_path: Path, document: Any) -> None:
    check_loaded(tmp_path / "random.yaml", yaml.safe_dump(document))


@SETTINGS
@given(text=edited_shapes())
@example(text="train:\n  epochs: 1\ntrain:\n  epochs: 2\n")  # a duplicated section
@example(text="? [a, b]\n: 1\n")  # an unhashable key
@example(text="data: {1: 2, x: 3}\n")  # keys of mixed types
def test_edited_config_files_load_or_name_the_file(tmp_path: Path, text: str) -> None:
    check_loaded(tmp_path / "edited.yaml", text)
