"""Box-aware augmentation (albumentations) built from the config's `augment:` list.

    from detector.data.augment.transforms import DEFAULT_AUGMENT, build_train_transform
    transform = build_train_transform(DEFAULT_AUGMENT, image_size=448, seed=0)
    sample = transform(image_rgb, boxes_xyxy, labels, ignore)   # -> TransformedSample
    sample.image.shape  # (448, 448, 3) uint8; sample.boxes in network-input pixels

Each `augment:` entry is `{name: <transform>, <param>: <value>, ...}`; parameters
left out take the values shown:

    crop                {p: 0.5, erosion_rate: 0.0}         random crop that keeps every box whole
    border_crop         {p: 0.5, max_fraction: 0.2}         free crop, up to this fraction a side
    scale_jitter        {min_scale: 0.75, max_scale: 1.25}  longest side -> image_size * U(min, max)
                                                            (4 px steps), placed at a random offset
    hflip               {p: 0.5}                            horizontal mirror
    vflip               {p: 0.5}                            vertical mirror (aerial, medical);
                                                            off by default
    affine              {p: 0.5, degrees: 10, shear: 2, translate: 0.1, scale: 0.0}
                                                            rotation and shear in degrees,
                                                            translation as a fraction of S,
                                                            scale factor 1 +- scale
                                                            (detector/data/augment/affine.py)
    hsv                 {p: 0.5, hue: 10, saturation: 40, value: 30}   shifts in OpenCV uint8 units
    brightness_contrast {p: 0.5, brightness: 0.2, contrast: 0.2}       fractions of the range
    rgb_shift           {p: 0.5, shift: 15}                 per-channel shift in grey levels
    mosaic              {p: 0.5, centre_range: 0.5}         four images in one
                                                            (detector/data/augment/mosaic.py)
    mixup               {p: 0.1, alpha: 8.0}                two samples blended
                                                            (detector/data/augment/mixup.py)
    box_filter          {min_visibility: 0.3, min_size: 2.0} drop policy (not a transform)

Names, defaults and range checks live in detector/data/augment/entries.py.

`augment: null` (the default) means DEFAULT_AUGMENT; `augment: []` a plain letterbox.

Order, chosen for speed and so that it does not depend on how the list is written:
crops run first on the decoded image (cheap slices), then the image is resized once
(`scale_jitter`, or to fit `image_size`; with `letterbox.resize_image`, the resize of
evaluation and inference), then the remaining transforms run in list
order on the small image, then it is placed in the `S x S` canvas filled with 114
(centred like `letterbox.compute_letterbox`, or at a random offset with
`scale_jitter`), and last `affine` runs on that canvas (the corners it uncovers get
the same grey). `mosaic` and `mixup` are not albumentations steps: the dataset
builds their input from several samples (detector/data/augment/multi_image.py) and
this pipeline runs on it. Boxes are clipped to the image; a box whose visible
fraction falls below `min_visibility`, or whose width or height falls below
`min_size` pixels, is dropped together with its label and ignore flag.

Input side: a TrainTransform called with `image_size=s` produces s x s inputs for
multi-scale training (one albumentations Compose per side, built on first use and
sharing the generators below); `scale_jitter` sizes are relative to that side.

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

from detector.data.augment.affine import build_affine, build_vflip
from detector.data.augment.box_check import with_quick_box_check
from detector.data.augment.entries import CROPS, DEFAULT_AUGMENT, MULTI_IMAGE, PARAMS, parse_augment
from detector.data.augment.placement import FitLongestSide, RandomPlace
from detector.data.letterbox import (
    PAD_VALUE,
    Letterbox,
    boxes_to_input,
    compute_letterbox,
    letterbox_image,
)

__all__ = [
    "DEFAULT_AUGMENT",
    "EvalTransform",
    "TrainTransform",
    "TransformedSample",
    "build_eval_transform",
    "build_train_transform",
]


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
            crop_left=params["max_fraction"],
            crop_right=params["max_fraction"],
            crop_top=params["max_fraction"],
            crop_bottom=params["max_fraction"],
            p=params["p"],
        ),
        "hflip": lambda: A.HorizontalFlip(p=params["p"]),
        "vflip": lambda: build_vflip(params),
        "hsv": lambda: A.HueSaturationValue(
            hue_shift_limit=params["hue"],
            sat_shift_limit=params["saturation"],
            val_shift_limit=params["value"],
            p=params["p"],
        ),
        "brightness_contrast": lambda: A.RandomBrightnessContrast(
            brightness_limit=params["brightness"],
            contrast_limit=params["contrast"],
            p=params["p"],
        ),
        "rgb_shift": lambda: A.RGBShift(
            r_shift_limit=params["shift"],
            g_shift_limit=params["shift"],
            b_shift_limit=params["shift"],
            p=params["p"],
        ),
    }
    return builders[name]()


class TrainTransform:
    """Random augmentation + placement in an S x S input; see the module docstring.

    One albumentations Compose per input side S is built on first use (multi-scale
    training asks for several); all of them draw from the same two generators.
    `mosaic` and `mixup` hold those entries' parameters (None: not configured); the
    dataset applies them (detector/data/augment/multi_image.py).
    """

    def __init__(
        self, parsed: list[tuple[str, dict[str, float]]], image_size: int, seed: int | None = None
    ) -> None:
        self.parsed = parsed
        self.image_size = image_size
        entries = dict(parsed)
        self.mosaic: dict[str, float] | None = entries.get("mosaic")
        self.mixup: dict[str, float] | None = entries.get("mixup")
        self.box_filter: dict[str, float] = entries.get("box_filter", dict(PARAMS["box_filter"]))
        self._composes: dict[int, A.Compose] = {}
        self._seeded: A.Compose | None = None
        self.set_seed(seed)

    @property
    def compose(self) -> A.Compose:
        """The Compose for the default side `image_size`."""
        return self.compose_for(self.image_size)

    def compose_for(self, image_size: int) -> A.Compose:
        """The Compose producing `image_size` x `image_size` inputs (built once per size)."""
        compose = self._composes.get(image_size)
        if compose is None:
            compose = self._composes[image_size] = _build_compose(self.parsed, image_size)
        return compose

    def set_seed(self, seed: int | None) -> None:
        """Re-seed the generators shared by every transform (None: fresh entropy)."""
        self._generators = (np.random.default_rng(seed), random.Random(seed))
        self._seeded = None  # handed to a Compose when it is next used (~15 us)

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        ignore: np.ndarray,
        image_size: int | None = None,
    ) -> TransformedSample:
        """Augment one sample.

        Args:
            image: uint8 [H, W, 3] RGB.
            boxes: float [N, 4] xyxy pixels of `image`; labels: int [N]; ignore: bool [N].
            image_size: side S of the output; None: `self.image_size`.

        Returns:
            TransformedSample with an [S, S, 3] image and the surviving boxes.
        """
        size = self.image_size if image_size is None else image_size
        compose = self.compose_for(size)
        if compose is not self._seeded:
            compose.set_random_state(*self._generators)
            self._seeded = compose
        height, width = image.shape[:2]
        # Boxes enter albumentations normalised, clipped and non-degenerate, i.e. in
        # its own internal format: its pascal_voc conversion, clipping and invalid-box
        # filter cost more per call than this numpy (~0.1 ms per image together).
        normalised = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / (
            width,
            height,
            width,
            height,
        )
        np.clip(normalised, 0.0, 1.0, out=normalised)
        valid = np.flatnonzero(
            (normalised[:, 2] > normalised[:, 0]) & (normalised[:, 3] > normalised[:, 1])
        )
        # Each box carries its index as a fifth column (extra columns travel with
        # their box), so labels and ignore flags are selected by it afterwards and
        # can never fall out of step; cheaper than a `label_fields` entry, which
        # albumentations encodes and decodes every call.
        indexed = np.concatenate([normalised[valid], valid[:, None].astype(np.float64)], axis=1)
        result = compose(image=image, bboxes=indexed)
        out = np.asarray(result["bboxes"], dtype=np.float64).reshape(-1, 5)
        out_height, out_width = result["image"].shape[:2]
        keep = out[:, 4].astype(np.int64)
        return TransformedSample(
            image=result["image"],
            boxes=(out[:, :4] * (out_width, out_height, out_width, out_height)).astype(np.float32),
            labels=np.asarray(labels, dtype=np.int64).reshape(-1)[keep],
            ignore=np.asarray(ignore, dtype=bool).reshape(-1)[keep],
            letterbox=compute_letterbox(height, width, size),
        )


class EvalTransform:
    """Deterministic letterbox to `image_size` (exactly `letterbox.letterbox_image`)."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray
    ) -> TransformedSample:
        """Letterbox one sample; every box is kept (mapped with `boxes_to_input`)."""
        canvas, letterbox = letterbox_image(image, self.image_size, fill=PAD_VALUE)
        return TransformedSample(
            image=canvas,
            boxes=boxes_to_input(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), letterbox),
            labels=np.asarray(labels, dtype=np.int64).reshape(-1),
            ignore=np.asarray(ignore, dtype=bool).reshape(-1),
            letterbox=letterbox,
        )

    def set_seed(self, seed: int | None) -> None:
        """No randomness; present so datasets can seed any transform alike."""


def _build_compose(parsed: list[tuple[str, dict[str, float]]], image_size: int) -> A.Compose:
    """The albumentations pipeline of parsed entries for S = `image_size`
    (order: module docstring)."""
    box_filter = dict(PARAMS["box_filter"])
    scale_jitter = affine = None
    crops, others = [], []
    for name, params in parsed:
        if name == "box_filter":
            box_filter = params
        elif name == "scale_jitter":
            scale_jitter = params
        elif name == "affine":
            affine = params
        elif name in CROPS:
            crops.append(_build_albumentation(name, params))
        elif name not in MULTI_IMAGE:
            others.append(_build_albumentation(name, params))

    if scale_jitter is None:
        # letterbox.resize_image, as evaluation and Detector resize: the same pixels.
        resize = FitLongestSide(image_size)
        place = [
            A.PadIfNeeded(
                min_height=image_size,
                min_width=image_size,
                position="center",
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
            )
        ]
    else:
        sizes = _scale_choices(image_size, scale_jitter["min_scale"], scale_jitter["max_scale"])
        resize = FitLongestSide(sizes)
        # Smaller than S: padded at a random offset; larger: a random S x S window.
        place = [RandomPlace(image_size, fill=PAD_VALUE)]
    if affine is not None:
        # On the placed canvas: the corners it uncovers get the padding's grey.
        place.append(build_affine(affine, fill=PAD_VALUE))
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
    return with_quick_box_check(
        A.Compose([*crops, resize, *others, *place], bbox_params=bbox_params, is_check_shapes=False)
    )


def build_train_transform(
    augment: list[dict[str, Any]] | None, image_size: int, seed: int | None = None
) -> TrainTransform:
    """Build the training pipeline from `augment:` entries (None: DEFAULT_AUGMENT).

    Args:
        augment: list of `{name, **params}` dicts (see the module docstring).
        image_size: side S of the square network input (other sides on request:
            `TrainTransform.__call__(..., image_size=)`, for multi-scale training).
        seed: seed of the pipeline's random stream; None draws fresh entropy.

    Returns:
        A TrainTransform mapping (image, boxes, labels, ignore) to a TransformedSample.

    Raises:
        ValueError: an unknown transform or parameter, or a value out of range,
            naming the entry (e.g. `augment[2].hue`).
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    parsed = parse_augment(DEFAULT_AUGMENT if augment is None else augment)
    transform = TrainTransform(parsed, image_size, seed=seed)
    transform.compose_for(image_size)  # builds (and so checks) the default size now
    return transform


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
