"""Random affine (rotation, shear, translation, scale) and vertical flip, box-aware.

    from detector.data.augment.affine import build_affine
    params = {"p": 0.5, "degrees": 10, "shear": 2, "translate": 0.1, "scale": 0.2}
    affine = build_affine(params, fill=114)

`affine` draws, per image, a rotation in [-degrees, degrees], a shear in
[-shear, shear] degrees on each axis, a translation in [-translate, translate] of
the side on each axis and one scale factor in [1 - scale, 1 + scale] (both axes
alike, so objects keep their aspect ratio), all about the image centre, through
albumentations' `A.Affine`. It runs on the S x S canvas after placement, so the
corners it uncovers get the same grey (`fill`) as the letterbox padding.

Rotated boxes: an axis-aligned box does not say where the object's outline is, so
after a rotation its new box must be guessed. The tight box of the four rotated
corners ("largest_box") always contains the object but is too loose for anything
round: a circle's box rotated by 45 degrees grows by sqrt(2) = 1.41x per side
(2x in area) although the circle's true box does not change. We use "ellipse":
albumentations rotates the ellipse inscribed in the box (sampled at 360 points)
and takes the box of that, which is exact for round objects, never looser than
the corners' box, and too tight for a rectangular object: a square rotated by the
default 10 degrees gets a box 14% smaller per side than its true one (1 / (cos +
sin) of it; 29% at 45 degrees), so keep `degrees` small for boxy objects. Shear
and scale move the ellipse's points with the same matrix, so they are exact for
both. The box filter (`box_filter`) applies afterwards like after any transform.
"""

from __future__ import annotations

import albumentations as A
import cv2

# How rotated boxes are recomputed; see the module docstring.
ROTATED_BOX_METHOD = "ellipse"


def build_affine(params: dict[str, float], fill: int) -> A.Affine:
    """The albumentations Affine for an `{name: affine, ...}` entry
    (params with defaults filled)."""
    return A.Affine(
        rotate=(-params["degrees"], params["degrees"]),
        shear={"x": (-params["shear"], params["shear"]), "y": (-params["shear"], params["shear"])},
        translate_percent={
            "x": (-params["translate"], params["translate"]),
            "y": (-params["translate"], params["translate"]),
        },
        scale=(1.0 - params["scale"], 1.0 + params["scale"]),
        keep_ratio=True,
        rotate_method=ROTATED_BOX_METHOD,
        interpolation=cv2.INTER_LINEAR,
        border_mode=cv2.BORDER_CONSTANT,
        fill=fill,
        fit_output=False,
        p=params["p"],
    )


def build_vflip(params: dict[str, float]) -> A.VerticalFlip:
    """The albumentations VerticalFlip for a `{name: vflip, p}` entry."""
    return A.VerticalFlip(p=params["p"])
