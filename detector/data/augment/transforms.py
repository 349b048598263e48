"""Box-aware augmentation (albumentations) built from the config's `augment:` list.

    from detector.data.augment.transforms import DEFAULT_AUGMENT, build_train_transform
    transform = build_train_transform(DEFAULT_AUGMENT, image_size=448, seed=0)
    sample = transform(image_rgb, boxes_xyxy, labels, ignore)   # -> TransformedSample
    sample.image.shape  # (448, 448, 3) uint8; sample.boxes in network-input pixels

Each `augment:` entry is `{name: <transform>, <param>: <value>, ...}`; parameters
left out take the values shown:

    crop                {p: 0.5, erosion_rate: 0.0}         random crop that keeps every box whole
    border_crop         {p: 0.5, max_fraction: 0.2}         free crop of up to this fraction per side
    scale_jitter        {min_scale: 0.75, max_scale: 1.25}  longest side -> image_size * U(min, max)
                                                            (4 px steps), placed at a random offset
    hflip               {p: 0.5}                            horizontal mirror
    hsv                 {p: 0.5, hue: 10, saturation: 40, value: 30}   shifts in OpenCV uint8 units
    brightness_contrast {p: 0.5, brightness: 0.2, contrast: 0.2}       fractions of the range
    rgb_shift           {p: 0.5, shift: 15}                 per-channel shift in grey levels
    box_filter          {min_visibility: 0.3, min_size: 2.0} drop policy (not a transform)

`augment: null` (the default) means DEFAULT_AUGMENT; `augment: []` a plain letterbox.

Order, chosen for speed and so that it does not depend on how the list is written:
crops run first on the decoded image (cheap slices), then the image is resized once
(`scale_jitter`, or to fit `image_size`), then the remaining transforms run in list
order on the small image, and finally it is placed in the `S x S` canvas filled with
114 (centred like `letterbox.compute_letterbox`, or at a random offset with
`scale_jitter`). Boxes are clipped to the image; a box whose visible fraction falls
below `min_visibility`, or whose width or height falls below `min_size` pixels, is
dropped together with its label and ignore flag.

Randomness: one numpy and one Python generator are shared by all transforms of a
pipeline (albumentations' own `seed=` gives every transform the same stream, which
would correlate e.g. the flip and the colour shift). `set_seed` re-seeds them (~15 us);
`DetectionDataset` calls it before every training sample with the sample's own seed
(detector/data/loading/sampling.py), so augmentation does not depend on which worker runs it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.core.bbox_utils import BboxProcessor, check_bboxes

from detector.data.augment.placement import RandomPlace
from detector.data.letterbox import Letterbox, boxes_to_input, compute_letterbox, letterbox_image

PAD_FILL = 114  # grey padding, the same value as letterbox_image's default

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

# Parameters each name accepts, with their defaults (documented in the module docstring).
_PARAMS: dict[str, dict[str, float]] = {
    "crop": {"p": 0.5, "erosion_rate": 0.0},
    "border_crop": {"p": 0.5, "max_fraction": 0.2},
    "scale_jitter": {"min_scale": 0.75, "max_scale": 1.25},
    "hflip": {"p": 0.5},
    "hsv": {"p": 0.5, "hue": 10, "saturation": 40, "value": 30},
    "brightness_contrast": {"p": 0.5, "brightness": 0.2, "contrast": 0.2},
    "rgb_shift": {"p": 0.5, "shift": 15},
    "box_filter": {"min_visibility": 0.3, "min_size": 2.0},
}
_CROPS = {"crop", "border_crop"}


@dataclass
class TransformedSample:
    """One image and its targets after a transform.

    Attributes:
        image: uint8 [S, S, 3] RGB.
        boxes: float32 [N, 4] xyxy in network-input pixels.
        labels: int64 [N]; ignore: bool [N] (aligned with boxes).
        letterbox: how the original image maps to the input; exact for evaluation,
            nominal (the un-augmented geometry) for training.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    letterbox: Letterbox


def _parse(augment: list[dict[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    """Validate `augment` entries; return (name, params with defaults filled)."""
    if not isinstance(augment, (list, tuple)):
        raise ValueError(f"augment: expected a list of {{name: ..., params}} entries, got {augment!r}")
    parsed = []
    for index, entry in enumerate(augment):
        where = f"augment[{index}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where}: expected a mapping with a 'name' key, got {entry!r}")
        name = entry["name"]
        if name not in _PARAMS:
            raise ValueError(f"{where}.name: unknown transform {name!r} (known: {', '.join(sorted(_PARAMS))})")
        params = dict(_PARAMS[name])
        for key, value in entry.items():
            if key == "name":
                continue
            if key not in params:
                raise ValueError(
                    f"{where}.{key}: unknown parameter for {name} (known: {', '.join(sorted(params))})"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
            params[key] = float(value)
        if "p" in params and not 0.0 <= params["p"] <= 1.0:
            raise ValueError(f"{where}.p: probability must be in [0, 1], got {params['p']}")
        if name == "scale_jitter" and not 0 < params["min_scale"] <= params["max_scale"]:
            raise ValueError(f"{where}: need 0 < min_scale <= max_scale, got {params}")
        if name == "border_crop" and not 0 <= params["max_fraction"] < 0.5:
            raise ValueError(f"{where}.max_fraction: must be in [0, 0.5), got {params['max_fraction']}")
        if name == "box_filter" and not 0 <= params["min_visibility"] <= 1:
            raise ValueError(f"{where}.min_visibility: must be in [0, 1], got {params['min_visibility']}")
        parsed.append((name, params))
    return parsed


def _scale_choices(image_size: int, min_scale: float, max_scale: float) -> list[int]:
    """Longest-side sizes for scale jitter: every 4 px between the two scales."""
    low, high = max(8, round(image_size * min_scale)), max(8, round(image_size * max_scale))
    return sorted(set(range(low, high + 1, 4)) | {high})


def _build_albumentation(name: str, params: dict[str, float]) -> A.BasicTransform:
    """One albumentations transform for an `augment` entry `_parse` has checked.

    Every entry but `box_filter` and `scale_jitter` (those shape the box filter and
    the resize in `build_train_transform`): the crops (`crop`, `border_crop`), which
    the caller puts before the resize, and the flip and colour ones after it.
    """
    builders: dict[str, Callable[[], A.BasicTransform]] = {
        "crop": lambda: A.BBoxSafeRandomCrop(erosion_rate=params["erosion_rate"], p=params["p"]),
        "border_crop": lambda: A.RandomCropFromBorders(
            crop_left=params["max_fraction"], crop_right=params["max_fraction"],
            crop_top=params["max_fraction"], crop_bottom=params["max_fraction"], p=params["p"],
        ),
        "hflip": lambda: A.HorizontalFlip(p=params["p"]),
        "hsv": lambda: A.HueSaturationValue(
            hue_shift_limit=params["hue"], sat_shift_limit=params["saturation"],
            val_shift_limit=params["value"], p=params["p"],
        ),
        "brightness_contrast": lambda: A.RandomBrightnessContrast(
            brightness_limit=params["brightness"], contrast_limit=params["contrast"], p=params["p"],
        ),
        "rgb_shift": lambda: A.RGBShift(
            r_shift_limit=params["shift"], g_shift_limit=params["shift"], b_shift_limit=params["shift"],
            p=params["p"],
        ),
    }
    return builders[name]()


class _QuickCheckBboxProcessor(BboxProcessor):
    """albumentations' BboxProcessor whose validity check first tries one cheap test.

    `check_bboxes` runs twice per sample and spends most of its ~35 us in
    `np.isclose`; boxes that are plainly inside [0, 1] with positive width and height
    pass here in a few microseconds, and anything else goes to albumentations' own
    check, so what is accepted or rejected (and its error message) is unchanged.
    """

    def check(self, data: np.ndarray, shape: Any) -> None:
        boxes = np.asarray(data)[:, :4] if len(data) else np.zeros((0, 4))
        plainly_valid = (
            bool(((boxes >= 0.0) & (boxes <= 1.0)).all())
            and bool((boxes[:, 2] > boxes[:, 0]).all())
            and bool((boxes[:, 3] > boxes[:, 1]).all())
        )
        if not plainly_valid:
            check_bboxes(data)


def _with_quick_box_check(compose: A.Compose) -> A.Compose:
    """Swap the Compose's box processor for `_QuickCheckBboxProcessor` (same params).

    Only an exact BboxProcessor is swapped, so another albumentations layout leaves
    the Compose as it is (slower, never different).
    """
    processors = getattr(compose, "processors", None)
    if isinstance(processors, dict) and type(processors.get("bboxes")) is BboxProcessor:
        processors["bboxes"] = _QuickCheckBboxProcessor(processors["bboxes"].params)
    return compose


class TrainTransform:
    """Random augmentation + letterbox to `image_size`; see the module docstring."""

    def __init__(self, compose: A.Compose, image_size: int, seed: int | None = None) -> None:
        self.compose = compose
        self.image_size = image_size
        self.set_seed(seed)

    def set_seed(self, seed: int | None) -> None:
        """Re-seed the generators shared by every transform (None: fresh entropy)."""
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray
    ) -> TransformedSample:
        """Augment one sample.

        Args:
            image: uint8 [H, W, 3] RGB.
            boxes: float [N, 4] xyxy pixels of `image`; labels: int [N]; ignore: bool [N].

        Returns:
            TransformedSample with an [S, S, 3] image and the surviving boxes.
        """
        height, width = image.shape[:2]
        # Boxes enter albumentations normalised, clipped and non-degenerate, i.e. in
        # its own internal format: its pascal_voc conversion, clipping and invalid-box
        # filter cost more per call than this numpy (~0.1 ms per image together).
        normalised = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / (width, height, width, height)
        np.clip(normalised, 0.0, 1.0, out=normalised)
        valid = np.flatnonzero((normalised[:, 2] > normalised[:, 0]) & (normalised[:, 3] > normalised[:, 1]))
        # Each box carries its index as a fifth column (extra columns travel with
        # their box), so labels and ignore flags are selected by it afterwards and
        # can never fall out of step; cheaper than a `label_fields` entry, which
        # albumentations encodes and decodes every call.
        indexed = np.concatenate([normalised[valid], valid[:, None].astype(np.float64)], axis=1)
        result = self.compose(image=image, bboxes=indexed)
        out = np.asarray(result["bboxes"], dtype=np.float64).reshape(-1, 5)
        out_height, out_width = result["image"].shape[:2]
        keep = out[:, 4].astype(np.int64)
        return TransformedSample(
            image=result["image"],
            boxes=(out[:, :4] * (out_width, out_height, out_width, out_height)).astype(np.float32),
            labels=np.asarray(labels, dtype=np.int64).reshape(-1)[keep],
            ignore=np.asarray(ignore, dtype=bool).reshape(-1)[keep],
            letterbox=compute_letterbox(height, width, self.image_size),
        )


class EvalTransform:
    """Deterministic letterbox to `image_size` (exactly `letterbox.letterbox_image`)."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray
    ) -> TransformedSample:
        """Letterbox one sample; every box is kept (mapped with `boxes_to_input`)."""
        canvas, letterbox = letterbox_image(image, self.image_size, fill=PAD_FILL)
        return TransformedSample(
            image=canvas,
            boxes=boxes_to_input(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), letterbox),
            labels=np.asarray(labels, dtype=np.int64).reshape(-1),
            ignore=np.asarray(ignore, dtype=bool).reshape(-1),
            letterbox=letterbox,
        )

    def set_seed(self, seed: int | None) -> None:
        """No randomness; present so datasets can seed any transform alike."""


def build_train_transform(
    augment: list[dict[str, Any]] | None, image_size: int, seed: int | None = None
) -> TrainTransform:
    """Build the training pipeline from `augment:` entries (None: DEFAULT_AUGMENT).

    Args:
        augment: list of `{name, **params}` dicts (see the module docstring).
        image_size: side S of the square network input.
        seed: seed of the pipeline's random stream; None draws fresh entropy.

    Returns:
        A TrainTransform mapping (image, boxes, labels, ignore) to a TransformedSample.

    Raises:
        ValueError: an unknown transform or parameter, or a value out of range,
            naming the entry (e.g. `augment[2].hue`).
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    parsed = _parse(DEFAULT_AUGMENT if augment is None else augment)
    box_filter = dict(_PARAMS["box_filter"])
    scale_jitter = None
    crops, others = [], []
    for name, params in parsed:
        if name == "box_filter":
            box_filter = params
        elif name == "scale_jitter":
            scale_jitter = params
        elif name in _CROPS:
            crops.append(_build_albumentation(name, params))
        else:
            others.append(_build_albumentation(name, params))

    if scale_jitter is None:
        # Linear interpolation (not INTER_AREA as in eval): ~5x cheaper per image.
        resize = A.LongestMaxSize(max_size=image_size, interpolation=cv2.INTER_LINEAR)
        place = [A.PadIfNeeded(
            min_height=image_size, min_width=image_size, position="center",
            border_mode=cv2.BORDER_CONSTANT, fill=PAD_FILL,
        )]
    else:
        sizes = _scale_choices(image_size, scale_jitter["min_scale"], scale_jitter["max_scale"])
        resize = A.LongestMaxSize(max_size=sizes, interpolation=cv2.INTER_LINEAR)
        # Smaller than S: padded at a random offset; larger: a random S x S window.
        place = [RandomPlace(image_size, fill=PAD_FILL)]
    bbox_params = A.BboxParams(
        format="albumentations",  # TrainTransform normalises, clips and drops degenerate boxes
        min_visibility=box_filter["min_visibility"],
        min_width=box_filter["min_size"],
        min_height=box_filter["min_size"],
        clip=False,
        filter_invalid_bboxes=False,
        # Filter once, after the last transform: boxes travel unclipped through the
        # crops and the resize, so visibility is measured against the whole original
        # box (two crops compound correctly) and the per-step checks are not paid.
        check_each_transform=False,
    )
    # Shape checks guard masks against images of another size; we pass one image only.
    compose = _with_quick_box_check(
        A.Compose([*crops, resize, *others, *place], bbox_params=bbox_params, is_check_shapes=False))
    return TrainTransform(compose, image_size, seed=seed)


def build_eval_transform(image_size: int) -> EvalTransform:
    """Deterministic letterbox for evaluation and inference.

    Args:
        image_size: side S of the square network input.

    Returns:
        An EvalTransform; its `letterbox` maps predictions back with
        `letterbox.boxes_to_original` exactly.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return EvalTransform(image_size)
