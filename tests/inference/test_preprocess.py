"""Device-side letterbox preprocessing against the CPU reference (letterbox_image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.data.letterbox import (
    PAD_VALUE,
    boxes_to_original,
    compute_letterbox,
    letterbox_image,
    resize_image,
    resize_pixels,
)
from detector.inference.preprocess import preprocess_batch


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB gradient with a block: interpolation kernels agree closely on it."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack(
        [xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], axis=2
    )
    image[height // 4 : height // 2, width // 4 : width // 2] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


@pytest.mark.parametrize("height, width", [(48, 64), (200, 120), (30, 30), (17, 90)])
def test_matches_letterbox_image_geometry_and_pixels(height: int, width: int) -> None:
    rgb = smooth_image(height, width)
    batch, (lb,) = preprocess_batch([rgb[:, :, ::-1]], size=64, device="cpu", color="bgr")
    reference, ref_lb = letterbox_image(rgb, 64)
    assert lb == ref_lb == compute_letterbox(height, width, 64)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == torch.float32
    ours = batch[0].permute(1, 2, 0).numpy()
    # One resize and one pad value (detector.data.letterbox): on the CPU the very same pixels.
    inside = np.zeros((64, 64), bool)
    inside[lb.pad_top : lb.pad_top + lb.new_height, lb.pad_left : lb.pad_left + lb.new_width] = True
    assert (ours[~inside] == PAD_VALUE).all()
    np.testing.assert_array_equal(ours, reference.astype(np.float32))


@pytest.mark.parametrize("height, width", [(200, 120), (90, 80), (20, 30), (1080, 1920), (64, 63)])
def test_device_kernel_is_within_one_level_of_the_cpu_resize(height: int, width: int) -> None:
    # CUDA resizes floats with resize_pixels (no uint8 kernel there): the same filters
    # as resize_image (antialiased above ANTIALIAS_ABOVE, else bilinear), so at most
    # one level apart where fixed-point and float arithmetic round differently.
    rgb = smooth_image(height, width, seed=3)
    rgb = np.clip(rgb + np.random.default_rng(0).normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    size = 64 if height < 1000 else 448
    lb = compute_letterbox(height, width, size)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    on_device = resize_pixels(pixels, lb)
    on_cpu = torch.from_numpy(resize_image(rgb, lb.new_width, lb.new_height)).permute(2, 0, 1)[None]
    assert on_device.dtype == torch.float32
    assert on_device.shape == on_cpu.shape == (1, 3, lb.new_height, lb.new_width)
    assert (
        (on_device == on_device.round()).all() and on_device.min() >= 0 and on_device.max() <= 255
    )
    difference = (on_device - on_cpu.float()).abs()
    assert difference.max() <= 1
    # Rounding, not another filter: most pixels agree exactly.
    assert (difference > 0).float().mean() < 0.35


def test_a_flat_image_stays_flat_and_pads_grey() -> None:
    flat = np.full((90, 30, 3), 37, np.uint8)
    canvas, lb = letterbox_image(flat, 64)
    assert (lb.new_height, lb.new_width) == (64, 21) and lb.pad_left == 21
    assert (canvas[:, 21:42] == 37).all()
    assert (canvas[:, :21] == PAD_VALUE).all() and (canvas[:, 42:] == PAD_VALUE).all()


def test_rgb_and_bgr_inputs_give_the_same_batch() -> None:
    rgb = smooth_image(40, 70)
    from_rgb, _ = preprocess_batch([rgb], 64, color="rgb")
    from_bgr, _ = preprocess_batch([np.ascontiguousarray(rgb[:, :, ::-1])], 64, color="bgr")
    assert torch.equal(from_rgb, from_bgr)
    # Channel 0 is red: the gradient along x.
    assert from_rgb[0, 0, 32, 40] > from_rgb[0, 0, 32, 20]


def test_mixed_sizes_in_one_batch_equal_singles() -> None:
    images = [smooth_image(48, 64, 1), smooth_image(100, 50, 2), smooth_image(48, 64, 3)]
    batch, letterboxes = preprocess_batch(images, 64, color="rgb")
    for index, image in enumerate(images):
        single, (lb,) = preprocess_batch([image], 64, color="rgb")
        assert letterboxes[index] == lb
        assert torch.equal(batch[index], single[0])


def test_boxes_map_back_through_the_letterbox() -> None:
    # A 100x50 image (h x w) in 64: scale 0.64, width 32, padded 16 left.
    _, (lb,) = preprocess_batch([smooth_image(100, 50)], 64, color="rgb")
    assert (lb.new_height, lb.new_width, lb.pad_top, lb.pad_left) == (64, 32, 0, 16)
    boxes_input = torch.tensor([[16.0, 0.0, 48.0, 64.0], [24.0, 32.0, 32.0, 48.0]])
    expected = torch.tensor([[0.0, 0.0, 50.0, 100.0], [12.5, 50.0, 25.0, 75.0]])
    assert torch.allclose(boxes_to_original(boxes_input, lb), expected, atol=1e-4)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="uint8"):
        preprocess_batch([np.zeros((10, 10, 3), np.float32)], 64)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        preprocess_batch([np.zeros((10, 10), np.uint8)], 64)
    with pytest.raises(ValueError, match="color"):
        preprocess_batch([np.zeros((10, 10, 3), np.uint8)], 64, color="hsv")
    with pytest.raises(ValueError, match="at least one"):
        preprocess_batch([], 64)
