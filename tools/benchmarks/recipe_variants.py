"""The recipe ablation's sets and changes: what `tools/benchmark.py recipe` toggles.

    variants = variants_for(["affine", "mosaic"])   # [baseline, +affine, +mosaic]
    cfg = variants[1].apply(cfg)                    # cfg with affine added (or removed)

A change is one augment entry and/or train keys. A variant toggles one change
against the config it is applied to: an augment entry the config already lists
(by name) is removed, otherwise it is added before `box_filter` (the pipeline's
order does not depend on the list's); train keys the config already sets (not
null, not 0) are reset to 0 (numbers) or null (lists), otherwise set. So
"+affine" becomes "-affine" once affine is in the defaults.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/

# Benchmark subsets, sized so that one run takes ~3 minutes on the shared 2-core machine
# (4-8 training images/s there): fewer, smaller images and batch 8 (twice the optimizer
# steps per image; from-scratch training needs steps). The dense subset keeps the
# geometry of configs/dense.yaml (network input 0.4 x the largest image side) at
# 192 px on 360-480 px images. Every variant of a set uses the same subset, epochs, seed.
SETS: dict[str, dict[str, Any]] = {
    "shapes": {
        "config": CONFIGS / "shapes.yaml",
        "epochs": 4,
        "overrides": [
            "data.synthetic.num_train=400",
            "data.synthetic.num_val=80",
            "model.image_size=128",
            "train.batch_size=8",
        ],
    },
    "dense": {
        "config": CONFIGS / "dense.yaml",
        "epochs": 6,
        "overrides": [
            "data.synthetic.num_train=200",
            "data.synthetic.num_val=50",
            "data.synthetic.image_size=480",
            "model.image_size=192",
            "train.batch_size=8",
        ],
    },
}


def _range_of_32(image_size: int, low: float = 0.75, high: float = 1.25) -> list[int]:
    """[low, high] x image_size narrowed to multiples of 32 (at least [32, 32])."""
    return [
        max(32, -(-int(low * image_size) // 32) * 32),
        max(32, int(high * image_size) // 32 * 32),
    ]


@dataclass
class Change:
    """One recipe change: augment entries to add (before box_filter) and train keys to set.

    `train` values may be callables of the config (a range relative to model.image_size).
    """

    augment: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)


CHANGES: dict[str, Change] = {
    "affine": Change(
        augment=[
            {
                "name": "affine",
                "p": 0.5,
                "degrees": 10.0,
                "shear": 2.0,
                "translate": 0.1,
                "scale": 0.0,
            }
        ]
    ),
    "mosaic": Change(augment=[{"name": "mosaic", "p": 0.5, "centre_range": 0.5}]),
    "mosaic+close": Change(
        augment=[{"name": "mosaic", "p": 0.5, "centre_range": 0.5}], train={"close_mosaic": 0.3}
    ),
    "multi_scale": Change(train={"multi_scale": lambda cfg: _range_of_32(cfg.model.image_size)}),
    "mixup": Change(augment=[{"name": "mixup", "p": 0.1, "alpha": 8.0}]),
}


@dataclass
class Variant:
    """The defaults (`change` None) or the defaults with one change toggled."""

    name: str
    change: Change | None = None

    def apply(self, cfg: Any) -> Any:
        """Return `cfg` (modified in place) with this variant's change toggled."""
        from detector.data.augment.entries import DEFAULT_AUGMENT

        if self.change is None:
            return cfg
        augment = copy.deepcopy(DEFAULT_AUGMENT if cfg.augment is None else cfg.augment)
        for entry in self.change.augment:
            present = [index for index, old in enumerate(augment) if old["name"] == entry["name"]]
            if present:
                augment = [old for old in augment if old["name"] != entry["name"]]
            else:
                names = [old["name"] for old in augment]
                at = names.index("box_filter") if "box_filter" in names else len(augment)
                augment.insert(at, dict(entry))
        cfg.augment = augment
        for key, value in self.change.train.items():
            if not hasattr(cfg.train, key):
                raise ValueError(
                    f"change {self.name}: train.{key} is not a config key (not merged yet?)"
                )
            current = getattr(cfg.train, key)
            if current:  # on: off is 0 for numbers (close_mosaic), null for lists (multi_scale)
                setattr(cfg.train, key, 0 if isinstance(current, (int, float)) else None)
            else:
                setattr(cfg.train, key, value(cfg) if callable(value) else value)
        return cfg


def variants_for(change_names: list[str]) -> list[Variant]:
    """The baseline followed by one variant per named change (ValueError on an unknown name)."""
    unknown = [name for name in change_names if name not in CHANGES]
    if unknown:
        raise ValueError(f"unknown change(s) {unknown}; known: {', '.join(CHANGES)}")
    return [
        Variant("baseline"),
        *(Variant(f"toggle {name}", CHANGES[name]) for name in change_names),
    ]
