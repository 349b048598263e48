"""The `augment:` list: transform names, their parameters and defaults, and validation.

    from detector.data.augment.entries import DEFAULT_AUGMENT, parse_augment
    parse_augment([{"name": "hflip", "p": 0.3}])   # -> [("hflip", {"p": 0.3})]

Each entry is `{name: <transform>, <param>: <value>, ...}`; parameters left out take
the values in `PARAMS` (documented, with their cost, in
detector/data/augment/transforms.py and configs/*.yaml). `parse_augment` refuses an
unknown name or parameter, a non-number and a value out of range, naming the entry
(`augment[2].degrees`), before any run directory exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# affine, mosaic (+ train.close_mosaic), mixup and train.multi_scale stay opt-in: in the
# recipe ablation on the shapes and dense sets none won on both (docs/benchmarks.md,
# "Recipe ablation"). configs/shapes.yaml spells this list out (a test checks it).
DEFAULT_AUGMENT: list[dict[str, Any]] = [
    {"name": "crop", "p": 0.5, "erosion_rate": 0.0},
    {"name": "scale_jitter", "min_scale": 0.75, "max_scale": 1.25},
    {"name": "hflip", "p": 0.5},
    # Colour: brightness/contrast is a LUT (~0.1 ms per 448 px image). `hsv` costs
    # ~0.5 ms for hue and ~1.3 ms more for saturation/value in albumentations 2.0.8,
    # as much as decoding a VOC JPEG, so it is opt-in (add {name: hsv} to use it).
    {"name": "brightness_contrast", "p": 0.8, "brightness": 0.25, "contrast": 0.25},
    {"name": "box_filter", "min_visibility": 0.3, "min_size": 2.0},
]

# Parameters each name accepts, with their defaults.
PARAMS: dict[str, dict[str, float]] = {
    "crop": {"p": 0.5, "erosion_rate": 0.0},
    "border_crop": {"p": 0.5, "max_fraction": 0.2},
    "scale_jitter": {"min_scale": 0.75, "max_scale": 1.25},
    "hflip": {"p": 0.5},
    "vflip": {"p": 0.5},
    "affine": {"p": 0.5, "degrees": 10.0, "shear": 2.0, "translate": 0.1, "scale": 0.0},
    "hsv": {"p": 0.5, "hue": 10, "saturation": 40, "value": 30},
    "brightness_contrast": {"p": 0.5, "brightness": 0.2, "contrast": 0.2},
    "rgb_shift": {"p": 0.5, "shift": 15},
    "mosaic": {"p": 0.5, "centre_range": 0.5},
    "mixup": {"p": 0.1, "alpha": 8.0},
    "box_filter": {"min_visibility": 0.3, "min_size": 2.0},
}
CROPS = {"crop", "border_crop"}
MULTI_IMAGE = {"mosaic", "mixup"}  # built from several samples by the dataset, not albumentations

# (low, high, what the range means) for parameters with a closed range beyond "a number".
_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("border_crop", "max_fraction"): (0.0, 0.4999),
    ("box_filter", "min_visibility"): (0.0, 1.0),
    ("affine", "degrees"): (0.0, 180.0),
    ("affine", "shear"): (0.0, 45.0),
    ("affine", "translate"): (0.0, 0.5),
    ("affine", "scale"): (0.0, 0.9),
    ("mosaic", "centre_range"): (0.0, 0.5),
    ("mixup", "alpha"): (0.01, 1000.0),
}


def _check_ranges(where: str, name: str, params: dict[str, float]) -> None:
    if "p" in params and not 0.0 <= params["p"] <= 1.0:
        raise ValueError(f"{where}.p: probability must be in [0, 1], got {params['p']}")
    if name == "scale_jitter" and not 0 < params["min_scale"] <= params["max_scale"]:
        raise ValueError(f"{where}: need 0 < min_scale <= max_scale, got {params}")
    for (entry, key), (low, high) in _RANGES.items():
        if entry == name and not low <= params[key] <= high:
            shown_high = "0.5)" if high == 0.4999 else f"{high:g}]"
            raise ValueError(f"{where}.{key}: must be in [{low:g}, {shown_high}, got {params[key]}")


def parse_augment(augment: list[dict[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    """Validate `augment` entries.

    Args:
        augment: the config's `augment:` list.

    Returns:
        (name, params with defaults filled) per entry, in list order.

    Raises:
        ValueError: not a list, an entry without a name, an unknown name or
            parameter, a non-number, a value out of range, or mosaic/mixup given twice.
    """
    if not isinstance(augment, (list, tuple)):
        raise ValueError(
            f"augment: expected a list of {{name: ..., params}} entries, got {augment!r}"
        )
    parsed = []
    for index, entry in enumerate(augment):
        where = f"augment[{index}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where}: expected a mapping with a 'name' key, got {entry!r}")
        name = entry["name"]
        if name not in PARAMS:
            raise ValueError(
                f"{where}.name: unknown transform {name!r} (known: {', '.join(sorted(PARAMS))})"
            )
        if name in MULTI_IMAGE and any(other == name for other, _ in parsed):
            raise ValueError(f"{where}: {name} is given twice; one entry sets its probability")
        params = dict(PARAMS[name])
        for key, value in entry.items():
            if key == "name":
                continue
            if key not in params:
                raise ValueError(
                    f"{where}.{key}: unknown parameter for {name} "
                    f"(known: {', '.join(sorted(params))})"
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not np.isfinite(value)
            ):
                raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
            params[key] = float(value)
        _check_ranges(where, name, params)
        parsed.append((name, params))
    return parsed
