"""Mixup for detection: two augmented samples blended pixel-wise, their boxes concatenated.

    from detector.data.augment.mixup import blend_samples
    mixed = blend_samples(first, second, weight=0.6)   # two TransformedSamples of the same S

The image is `weight * first + (1 - weight) * second` (rounded to uint8 by
`cv2.addWeighted`); the targets are both samples' boxes, labels and ignore flags,
first's then second's, so each label stays with its box. Every box keeps full
weight in the loss (the loss has no per-box weights): with `alpha` >= 4 the
weight rarely leaves [0.25, 0.75], so neither object is faint. The dataset
(detector/data/augment/multi_image.py) draws whether to mix, the partner, its
seed and the weight ~ Beta(alpha, alpha) from the sample's seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from detector.data.augment.transforms import TransformedSample


def blend_samples(
    first: TransformedSample, second: TransformedSample, weight: float
) -> TransformedSample:
    """Blend two samples of the same input side (see the module docstring);
    `first`'s letterbox is kept."""
    if first.image.shape != second.image.shape:
        raise ValueError(
            f"mixup: images of different shapes {first.image.shape} and {second.image.shape}"
        )
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mixup: weight must be in [0, 1], got {weight}")
    image = cv2.addWeighted(first.image, weight, second.image, 1.0 - weight, 0.0)
    return TransformedSample(
        image=image,
        boxes=np.concatenate([first.boxes, second.boxes]).astype(np.float32).reshape(-1, 4),
        labels=np.concatenate([first.labels, second.labels]).astype(np.int64),
        ignore=np.concatenate([first.ignore, second.ignore]).astype(bool),
        letterbox=first.letterbox,
    )
