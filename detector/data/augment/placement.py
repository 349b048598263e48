"""Random placement of a resized image in the square network input (one albumentations step).

    from detector.data.augment.placement import RandomPlace
    place = RandomPlace(size=448, fill=114)   # inside an A.Compose with bbox_params
    out = A.Compose([place], bbox_params=A.BboxParams("pascal_voc"))(image=image, bboxes=boxes)

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
        return self.py_random.randint(0, slack) if slack >= 0 else -self.py_random.randint(0, -slack)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Draw the offsets (top, left) of the image's first pixel in the canvas (negative: cropped)."""
        height, width = params["shape"][:2]
        return {"top": self._offset(height), "left": self._offset(width), "height": height, "width": width}

    def apply(self, img: np.ndarray, top: int, left: int, **params: Any) -> np.ndarray:
        """uint8 [H, W, C] -> [S, S, C]: the overlapping window, bordered with `fill`."""
        height, width = img.shape[:2]
        row, col = max(-top, 0), max(-left, 0)  # first source pixel inside the canvas
        rows, cols = min(height - row, self.size - max(top, 0)), min(width - col, self.size - max(left, 0))
        window = img[row:row + rows, col:col + cols]
        pad_top, pad_left = max(top, 0), max(left, 0)
        fill = (self.fill,) * (img.shape[2] if img.ndim == 3 else 1)
        placed = cv2.copyMakeBorder(window, pad_top, self.size - pad_top - rows, pad_left,
                                    self.size - pad_left - cols, cv2.BORDER_CONSTANT, value=fill)
        return placed.reshape(self.size, self.size, *img.shape[2:])

    def apply_to_bboxes(self, bboxes: np.ndarray, top: int, left: int, height: int, width: int,
                        **params: Any) -> np.ndarray:
        """Shift normalised xyxy boxes (albumentations format, extra columns kept) into the canvas."""
        shifted = bboxes.copy()
        shifted[:, [0, 2]] = (bboxes[:, [0, 2]] * width + left) / self.size
        shifted[:, [1, 3]] = (bboxes[:, [1, 3]] * height + top) / self.size
        return shifted

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by repr() and used by albumentations' serialisation."""
        return ("size", "fill")
