"""Robust image loading (reliability.md, "Images"): broken files, EXIF, bit depths, odd paths."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from detector.data.images import (
    ImageReadError,
    apply_exif_orientation,
    probe_images,
    read_image_rgb,
    read_image_size,
)


def natural_image(height: int = 150, width: int = 200, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photo (many scan bytes)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], -1)
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


def save_jpeg(path: Path, image: np.ndarray, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(image).save(path, quality=95, exif=exif)
    return path


@pytest.fixture
def truncated_jpeg(tmp_path: Path) -> Path:
    data = save_jpeg(tmp_path / "full.jpg", natural_image()).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_jpeg_at_half_is_detected(truncated_jpeg: Path) -> None:
    with Image.open(truncated_jpeg) as image:
        image.verify()  # PIL's own check passes: that is why the marker is checked
    with pytest.raises(ImageReadError, match="truncated") as info:
        read_image_rgb(truncated_jpeg)
    assert info.value.path == str(truncated_jpeg)
    assert info.value.reason == "truncated JPEG (no end-of-image marker)"
    assert str(truncated_jpeg) in str(info.value)
    assert isinstance(info.value, ValueError)
    # the header is intact, but the cheap start-up probe looks at the file's end too
    with pytest.raises(ImageReadError) as header_info:
        read_image_size(truncated_jpeg)
    assert header_info.value.reason == "truncated JPEG (no end-of-image marker)"
    header, decoded = probe_images([truncated_jpeg]), probe_images([truncated_jpeg], decode=True)
    assert [e.reason for e in header + decoded] == ["truncated JPEG (no end-of-image marker)"] * 2


def test_truncation_check_steps_over_markers_inside_metadata(tmp_path: Path) -> None:
    # An APP2 segment holding the bytes FF D9 (as an EXIF thumbnail would) must not
    # be mistaken for the end of the image.
    data = save_jpeg(tmp_path / "a.jpg", natural_image()).read_bytes()
    payload = b"thumb\xff\xd8\xff\xda\x00\x02\xff\xd9"
    segment = b"\xff\xe2" + (len(payload) + 2).to_bytes(2, "big") + payload
    with_segment = data[:2] + segment + data[2:]
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    whole.write_bytes(with_segment + b"trailing bytes after the end, as motion photos have")
    cut.write_bytes(with_segment[: len(with_segment) // 2])
    assert read_image_rgb(whole).shape == (150, 200, 3)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image_rgb(cut)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"this is a text file, not a JPEG\n" * 4, "not")],
    ids=["zero-bytes", "text-renamed-jpg"],
)
def test_empty_and_non_image_files_raise_with_path(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    for read in (read_image_rgb, read_image_size):
        with pytest.raises(ImageReadError, match=reason) as info:
            read(path)
        assert info.value.path == str(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        read_image_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="not found"):
        read_image_size(tmp_path / "nope.jpg")


@pytest.mark.parametrize("height, width", [(8, 40), (40, 9)])
def test_image_under_ten_pixels_is_rejected(tmp_path: Path, height: int, width: int) -> None:
    path = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
    for read in (read_image_rgb, read_image_size):
        with pytest.raises(ImageReadError, match="10 px"):
            read(path)
    ten = tmp_path / "ten.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(ten)
    assert read_image_rgb(ten).shape == (10, 10, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil_exif_transpose(tmp_path: Path, orientation: int) -> None:
    # PNG keeps pixels exact, so the comparison with PIL's reference can be exact too.
    stored = natural_image(30, 50, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    result = read_image_rgb(path)
    np.testing.assert_array_equal(result, expected)
    assert read_image_size(path) == expected.shape[:2]
    assert result.shape[:2] == ((50, 30) if orientation >= 5 else (30, 50))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_puts_the_object_where_the_viewer_sees_it(
    tmp_path: Path, orientation: int
) -> None:
    displayed = np.full((60, 100, 3), 40, np.uint8)
    displayed[10:30, 60:90] = (250, 20, 20)  # a red block in the top-right of the upright view
    # orientation 6 means "stored turned 90 degrees counter-clockwise", 8 the opposite
    stored = np.rot90(displayed, k=1 if orientation == 6 else -1)
    path = save_jpeg(tmp_path / "rotated.jpg", np.ascontiguousarray(stored), orientation)
    image = read_image_rgb(path)
    assert image.shape == (60, 100, 3)
    assert read_image_size(path) == (60, 100)
    assert image[12:28, 62:88, 0].mean() > 200 and image[12:28, 62:88, 1].mean() < 60
    assert image[40:, :50, 0].mean() < 60


def test_apply_exif_orientation_keeps_channels_and_is_contiguous() -> None:
    image = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    rotated = apply_exif_orientation(image, 6)
    assert rotated.shape == (3, 2, 3) and rotated.flags.c_contiguous
    # clockwise turn: the stored bottom-left pixel lands top-left
    np.testing.assert_array_equal(rotated[0, 0], image[1, 0])
    np.testing.assert_array_equal(apply_exif_orientation(image, 1), image)


def test_sixteen_bit_png_is_scaled_by_the_dtype_maximum(tmp_path: Path) -> None:
    gray = np.array([[0, 257, 32896, 65535] * 3] * 12, np.uint16)  # 257 * k -> k exactly
    cv2.imwrite(str(tmp_path / "gray16.png"), gray)
    result = read_image_rgb(tmp_path / "gray16.png")
    assert result.dtype == np.uint8 and result.shape == (12, 12, 3)
    np.testing.assert_array_equal(result[0, :4, 0], [0, 1, 128, 255])
    assert (result[..., 0] == result[..., 2]).all()

    colour = np.zeros((12, 12, 3), np.uint16)
    colour[..., 0], colour[..., 1], colour[..., 2] = 65535, 257 * 100, 0  # OpenCV order: B, G, R
    cv2.imwrite(str(tmp_path / "rgb16.png"), colour)
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "rgb16.png")[0, 0], [0, 100, 255])


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P"])
def test_png_modes_give_the_same_rgb_as_pil(tmp_path: Path, mode: str) -> None:
    rgba = np.concatenate([natural_image(20, 24), np.full((20, 24, 1), 90, np.uint8)], -1)
    source = Image.fromarray(rgba)
    image = source.convert(mode) if mode != "P" else source.convert("RGB").quantize(16)
    path = tmp_path / f"{mode}.png"
    image.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == mode
        expected = np.asarray(reopened.convert("RGB"))  # alpha dropped, palette expanded
    result = read_image_rgb(path)
    assert result.dtype == np.uint8 and result.shape == (20, 24, 3)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    "name", ["données café/图像 1.png", "with spaces/my image.png", "Ωμέγα.jpg"]
)
def test_non_ascii_and_spaced_paths(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = natural_image(16, 18)
    Image.fromarray(image).save(path, quality=100)
    result = read_image_rgb(path)
    assert result.shape == (16, 18, 3)
    if path.suffix == ".png":
        np.testing.assert_array_equal(result, image)
    else:  # two JPEG decoders may differ by a rounding step
        with Image.open(path) as reference:
            assert np.abs(result.astype(int) - np.asarray(reference)).max() <= 3
    assert read_image_size(path) == (16, 18)


def test_formats_opencv_lacks_fall_back_to_pil(tmp_path: Path) -> None:
    image = natural_image(12, 14)
    buffer = io.BytesIO()
    Image.fromarray(image).convert("RGB").save(buffer, format="PPM")
    path = tmp_path / "x.ppm"
    path.write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(read_image_rgb(path), image)


def test_truncated_png_is_detected_by_the_header_probe_and_at_decode(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(natural_image()).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for read in (read_image_size, read_image_rgb):
        with pytest.raises(ImageReadError, match="cut.png: truncated PNG") as info:
            read(path)
        assert info.value.path == str(path)


def test_probe_images_in_threads_matches_sequential(tmp_path: Path) -> None:
    paths = []
    for index in range(70):  # above the threshold where threads are used
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.zeros((10 + index, 12, 3), np.uint8)).save(path)
        paths.append(path)
    paths[5].write_bytes(b"")
    threaded, sequential = probe_images(paths, decode=True), probe_images(paths, threads=1)
    assert [r if isinstance(r, tuple) else r.reason for r in threaded] == [
        r if isinstance(r, tuple) else r.reason for r in sequential
    ]
    assert threaded[3] == (13, 12) and isinstance(threaded[5], ImageReadError)
