"""The resize and the placement of an image in the square network input (albumentations steps).

    from detector.data.augment.placement import FitLongestSide, RandomPlace
    steps = [FitLongestSide([416, 448, 480]), RandomPlace(size=448, fill=114)]
    out = A.Compose(steps, bbox_params=A.BboxParams("pascal_voc"))(image=image, bboxes=boxes)

`FitLongestSide` resizes with `letterbox.resize_image` to `letterbox.compute_letterbox`'s
size, so a training sample without augmentation has exactly the pixels evaluation and
`Detector` give the same image (albumentations' LongestMaxSize would resize with
another filter). Boxes are normalised in albumentations, so a resize leaves them as
they are: they scale exactly as the pixels do.

Scale jitter makes the resized image smaller or larger than S x S: a smaller side is
padded at a random offset, a larger one cropped to a random window. Doing both in one
`cv2.copyMakeBorder` of the overlapping window writes the canvas once, where
PadIfNeeded followed by RandomCrop wrote it two or three times (and paid two
transforms' fixed cost). Boxes are only shifted; clipping and visibility filtering
stay with the Compose's BboxParams, as for any albumentations transform.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from detector.data.letterbox import compute_letterbox, resize_image


class FitLongestSide(A.DualTransform):
    """Resize so the longer side is `max_size` (one value, or one drawn from a list).

    Args:
        max_size: the longer side after resizing; a list: drawn uniformly per call
            (scale jitter), from the Compose's Python generator like LongestMaxSize.
        p: probability (1.0: always).
    """

    def __init__(self, max_size: int | list[int], p: float = 1.0) -> None:
        super().__init__(p=p)
        self.max_size = max_size

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Draw the longer side and derive the new (height, width) as every letterbox does."""
        sizes = self.max_size
        side = self.py_random.choice(sizes) if isinstance(sizes, list) else sizes
        lb = compute_letterbox(*params["shape"][:2], side)
        return {"new_height": lb.new_height, "new_width": lb.new_width}

    def apply(self, img: np.ndarray, new_height: int, new_width: int, **params: Any) -> np.ndarray:
        """uint8 [H, W, C] -> [new_height, new_width, C] (`resize_image`)."""
        return resize_image(img, new_width, new_height)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        """Normalised boxes are unchanged by a resize."""
        return bboxes

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by repr() and used by albumentations' serialisation."""
        return ("max_size",)


class RandomPlace(A.DualTransform):
    """Put an image into a `size` x `size` canvas at a random offset (pad and/or crop).

    Args:
        size: side S of the output.
        fill: grey value of padded pixels.
        p: probability (1.0: always; otherwise the output would not be S x S).

    Along each axis the image's first pixel lands at an offset drawn uniformly from
    [0, S - length] when the image is shorter than S, or from [S - length, 0] (a
    random window) when it is longer, like PadIfNeeded(position="random") then
    RandomCrop.
    """

    def __init__(self, size: int, fill: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size = size
        self.fill = fill

    def _offset(self, length: int) -> int:
        slack = self.size - length
        return (
            self.py_random.randint(0, slack) if slack >= 0 else -self.py_random.randint(0, -slack)
        )

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Draw the offsets (top, left) of the image's first pixel in the canvas
        (negative: cropped)."""
        height, width = params["shape"][:2]
        return {
            "top": self._offset(height),
            "left": self._offset(width),
            "height": height,
            "width": width,
        }

    def apply(self, img: np.ndarray, top: int, left: int, **params: Any) -> np.ndarray:
        """uint8 [H, W, C] -> [S, S, C]: the overlapping window, bordered with `fill`."""
        height, width = img.shape[:2]
        row, col = max(-top, 0), max(-left, 0)  # first source pixel inside the canvas
        rows, cols = (
            min(height - row, self.size - max(top, 0)),
            min(width - col, self.size - max(left, 0)),
        )
        window = img[row : row + rows, col : col + cols]
        pad_top, pad_left = max(top, 0), max(left, 0)
        fill = (self.fill,) * (img.shape[2] if img.ndim == 3 else 1)
        placed = cv2.copyMakeBorder(
            window,
            pad_top,
            self.size - pad_top - rows,
            pad_left,
            self.size - pad_left - cols,
            cv2.BORDER_CONSTANT,
            value=fill,
        )
        return placed.reshape(self.size, self.size, *img.shape[2:])

    def apply_to_bboxes(
        self, bboxes: np.ndarray, top: int, left: int, height: int, width: int, **params: Any
    ) -> np.ndarray:
        """Shift normalised xyxy boxes into the canvas
        (albumentations format, extra columns kept)."""
        shifted = bboxes.copy()
        shifted[:, [0, 2]] = (bboxes[:, [0, 2]] * width + left) / self.size
        shifted[:, [1, 3]] = (bboxes[:, [1, 3]] * height + top) / self.size
        return shifted

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by repr() and used by albumentations' serialisation."""
        return ("size", "fill")
