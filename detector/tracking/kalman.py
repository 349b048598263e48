"""A constant-velocity Kalman filter over box centre and size, batched over tracks.

    mean, cov = initiate(boxes_xyxy)                 # [N, 8], [N, 8, 8]
    mean, cov = predict(mean, cov, steps)            # steps [N]: elapsed time in reference frames
    mean, cov = update(mean, cov, boxes_xyxy)        # fold in the matched detections

The state of one track is (cx, cy, w, h, vcx, vcy, vw, vh) in pixels, with
velocities in pixels per *reference frame* (1 / reference_fps seconds, see
`ByteTracker`). Time enters only through `steps`, the elapsed time in reference
frames, so a gap of several dropped frames is one prediction over the whole
gap, and the process noise grows with it (variance linear in time, a random
walk on position and velocity). Noise scales with the box size (x terms with
the width, y terms with the height), as in SORT/ByteTrack: a 10% error means
the same on a small and a large box.
"""

from __future__ import annotations

import numpy as np

# Standard deviations as fractions of the box side: of a measurement and of the
# position and velocity change over one reference frame.
POSITION_STD = 1.0 / 20
VELOCITY_STD = 1.0 / 160
MEASUREMENT_STD = 1.0 / 20


def box_xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy -> [N, 4] (cx, cy, w, h), float64."""
    boxes = np.asarray(boxes, np.float64)
    return np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2,
            (boxes[:, 1] + boxes[:, 3]) / 2,
            boxes[:, 2] - boxes[:, 0],
            boxes[:, 3] - boxes[:, 1],
        ],
        axis=1,
    )


def box_cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] (cx, cy, w, h) -> [N, 4] xyxy."""
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    return np.stack(
        [boxes[:, 0] - half_w, boxes[:, 1] - half_h, boxes[:, 0] + half_w, boxes[:, 1] + half_h],
        axis=1,
    )


def _scales(size_wh: np.ndarray) -> np.ndarray:
    """[N, 2] (w, h) -> [N, 4] per-coordinate scale (w, h, w, h), floored at 1 px."""
    size = np.maximum(size_wh, 1.0)
    return np.concatenate([size, size], axis=1)


def initiate(boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks at rest on their first boxes: mean [N, 8], covariance [N, 8, 8]."""
    measured = box_xyxy_to_cxcywh(boxes_xyxy)
    mean = np.concatenate([measured, np.zeros_like(measured)], axis=1)
    scale = _scales(measured[:, 2:4])
    # Velocity is unknown at birth: a wide prior that the second match pins down.
    std = np.concatenate([2 * POSITION_STD * scale, 10 * VELOCITY_STD * scale], axis=1)
    cov = np.zeros((len(mean), 8, 8))
    cov[:, np.arange(8), np.arange(8)] = std**2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move every track forward by its elapsed time `steps` [N] (reference frames, >= 0).

    Returns new arrays (inputs are not modified). A step of 0 returns the state unchanged.
    """
    steps = np.asarray(steps, np.float64).reshape(-1, 1)
    new_mean = mean.copy()
    new_mean[:, :4] += steps * mean[:, 4:]
    # A box cannot shrink below 1 px through its size velocity.
    new_mean[:, 2:4] = np.maximum(new_mean[:, 2:4], 1.0)
    # F C F^T with F = [[I, kI], [0, I]] in blocks: A + k(B + B^T) + k^2 D, B + kD, D.
    k = steps[:, :, None]
    a, b, d = cov[:, :4, :4], cov[:, :4, 4:], cov[:, 4:, 4:]
    new_b = b + k * d
    new_a = a + k * (b + b.transpose(0, 2, 1)) + k * k * d
    new_cov = np.empty_like(cov)
    new_cov[:, :4, :4] = new_a
    new_cov[:, :4, 4:] = new_b
    new_cov[:, 4:, :4] = new_b.transpose(0, 2, 1)
    new_cov[:, 4:, 4:] = d
    scale = _scales(mean[:, 2:4])
    noise = (
        np.concatenate([(POSITION_STD * scale) ** 2, (VELOCITY_STD * scale) ** 2], axis=1) * steps
    )
    new_cov[:, np.arange(8), np.arange(8)] += noise
    return new_mean, new_cov


def update(
    mean: np.ndarray, cov: np.ndarray, boxes_xyxy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correct N tracks with their matched boxes [N, 4] xyxy; returns new arrays."""
    measured = box_xyxy_to_cxcywh(boxes_xyxy)
    scale = _scales(mean[:, 2:4])
    innovation_cov = cov[:, :4, :4].copy()  # H C H^T with H = [I 0]
    innovation_cov[:, np.arange(4), np.arange(4)] += (MEASUREMENT_STD * scale) ** 2
    # Gain K = C H^T S^-1, solved rather than inverted: S is symmetric positive definite.
    gain = np.linalg.solve(innovation_cov, cov[:, :4, :].copy()).transpose(0, 2, 1)  # [N, 8, 4]
    residual = measured - mean[:, :4]
    new_mean = mean + (gain @ residual[:, :, None])[:, :, 0]
    new_cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return new_mean, new_cov
