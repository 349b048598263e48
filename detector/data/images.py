"""Robust image loading: EXIF orientation, 8-bit RGB from any common layout, clear errors.

    from detector.data.images import read_image_rgb, read_image_size
    image = read_image_rgb("datasets/VOCdevkit/VOC2007/JPEGImages/000005.jpg")  # uint8 HxWx3 RGB
    height, width = read_image_size("photo.jpg")  # header only, EXIF-aware

Skip policy (what the data pipeline does with a bad image):

- At start-up `detector.data.catalog.load_split` calls `read_image_size` on every
  image (header only: the file exists, is not empty, has a readable header and
  is at least 10 px on each side). A file that fails becomes a `SkippedSample`
  with the reason, and the caller prints the count and the list.
- The header read also looks at the end of JPEG and PNG files (the last 4 KiB):
  a JPEG without its end-of-image marker or a PNG without its IEND chunk (a file
  cut off during a download) is skipped at start-up, without decoding.
- A header that claims more than `max_pixels` pixels (`data.max_image_pixels`,
  default 100 million, e.g. 10000 x 10000) is refused before any pixel is
  decoded: a "decompression bomb" (a few KB of file that would expand to
  gigabytes) is skipped and reported like any other bad image. PIL's own
  `DecompressionBombError`, OpenCV decode errors and `MemoryError` while decoding
  become the same `ImageReadError`.
- Any other broken data is caught by `read_image_rgb` when it is decoded: it
  raises `ImageReadError` carrying `.path` and `.reason`, and the dataset skips
  that sample and reports the path. `detector data check --decode` finds these
  files up front.

Decoding goes through OpenCV from the file's bytes (never `cv2.imread(path)`), so
non-ASCII paths work on every OS. Images are decoded with `IMREAD_UNCHANGED` (the
only mode that keeps 16-bit data) and the EXIF orientation is applied here, from
the tag that PIL reads in the header, so both `read_image_rgb` and
`read_image_size` agree on the oriented frame that annotations refer to.
"""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_IMAGE_SIDE = 10  # pixels; smaller images carry no usable signal at any input size
EXIF_ORIENTATION_TAG = 0x0112
# Larger headers are refused before decoding (the config's data.max_image_pixels default):
# 100 MP decodes to 300 MB of RGB, far above any detection dataset's images.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
TAIL_BYTES = 4096  # end of file read by the header check for the JPEG / PNG end markers
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An image that cannot be used; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan (SOS) marker of the main JPEG image, or None.

    Walks the marker segments by their lengths, so JPEG thumbnails embedded in
    EXIF (which carry their own SOS and EOI markers) are stepped over.
    """
    offset = 2  # after SOI
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
        elif marker == 0xDA:
            return offset
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            offset += 2
        elif marker == 0xD9:
            return None
        else:
            offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return None


def _check_jpeg_complete(path: str | Path, data: bytes) -> None:
    """Raise if a JPEG has no end-of-image marker after its scan data.

    libjpeg decodes a truncated file with a warning and fills the missing part
    with grey, and PIL's verify() accepts it, so the marker is checked directly.
    Entropy-coded data never contains the bytes FF D9, so the first FF D9 after
    the scan start is the real end; data appended after it (motion photos) is fine.
    """
    scan_start = _jpeg_scan_start(data)
    if scan_start is None:
        raise ImageReadError(path, "corrupt JPEG (no image data found after the header)")
    if data.find(b"\xff\xd9", scan_start) < 0:
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")


def _png_complete(data: bytes) -> bool:
    """True when the PNG chunk chain reaches its IEND chunk (walked by the chunk lengths)."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"IEND":
            return True
        offset += 12 + length  # length, type, data, CRC
    return False


def _check_png_complete(path: str | Path, data: bytes) -> None:
    if not _png_complete(data):
        raise ImageReadError(path, "truncated PNG (no IEND chunk)")


def _check_end_marker(path: Path, file: IO[bytes], num_bytes: int) -> None:
    """Cheap completeness test of a JPEG or PNG from the file's last bytes.

    A complete file ends with the JPEG end-of-image marker (FF D9) or the PNG IEND
    chunk. Only when the tail lacks it (a truncated file, or data appended after
    the image such as a motion photo's video) is the whole file read and walked,
    which tells the two apart.
    """
    file.seek(0)
    head = file.read(8)
    is_jpeg, is_png = head[:2] == b"\xff\xd8", head == PNG_SIGNATURE
    if not (is_jpeg or is_png):
        return
    file.seek(max(0, num_bytes - TAIL_BYTES))
    tail = file.read()
    if (is_jpeg and b"\xff\xd9" in tail) or (is_png and b"IEND" in tail):
        return
    file.seek(0)
    data = file.read()
    if is_jpeg:
        _check_jpeg_complete(path, data)
    else:
        _check_png_complete(path, data)


def _pil_bomb_threshold() -> float:
    limit = Image.MAX_IMAGE_PIXELS
    return float("inf") if limit is None else 2 * limit


def _open_pil(source: str | Path | IO[bytes], path: str | Path, max_pixels: int) -> Image.Image:
    """`Image.open` with the pixel limit checked on the header, before any decoding.

    PIL refuses more than 2 x `Image.MAX_IMAGE_PIXELS` itself; a `max_pixels`
    above that raises PIL's limit to it (the one global this module sets, and
    only when asked for such images).

    Raises:
        ImageReadError: over the limit; UnidentifiedImageError, OSError, ...: as `Image.open`.
    """
    if max_pixels > _pil_bomb_threshold():
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():  # our own message below replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            path, f"header claims too many pixels (decompression bomb?): {exc}"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(
            path,
            f"header claims {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (data.max_image_pixels; a decompression bomb?)",
        )
    return image


def _exif_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not make the image unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into the displayed frame for an EXIF orientation value.

    Args:
        image: [H, W, ...] array as stored in the file.
        orientation: EXIF tag 0x0112, 1..8 (1 = as stored).

    Returns:
        A contiguous array in the displayed orientation ([W, H, ...] for 5..8).
    """
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    elif orientation == 5:
        image = np.swapaxes(image, 0, 1)
    elif orientation == 6:  # stored rotated 90 degrees counter-clockwise: turn clockwise
        image = np.swapaxes(image, 0, 1)[:, ::-1]
    elif orientation == 7:
        image = np.swapaxes(image[::-1, ::-1], 0, 1)
    elif orientation == 8:  # stored rotated 90 degrees clockwise: turn counter-clockwise
        image = np.swapaxes(image, 0, 1)[::-1]
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale integer data by its dtype's maximum (16-bit -> 8-bit); floats are taken as 0..1."""
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.integer):
        scale = 255.0 / np.iinfo(image.dtype).max
        return np.clip(np.rint(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    return np.clip(np.rint(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def _cv2_to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's IMREAD_UNCHANGED layouts (gray, gray+alpha, BGR, BGRA) -> RGB.

    Alpha is dropped (the colour channels are kept as stored), as OpenCV's own
    IMREAD_COLOR does.
    """
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(image[:, :, :4], cv2.COLOR_BGRA2RGB)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Decode with PIL (formats OpenCV lacks); 16-bit grayscale is scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _cv2_to_rgb(_to_uint8(np.asarray(image, dtype=np.uint16)))
    if image.mode == "I":
        return _cv2_to_rgb(_to_uint8(np.asarray(image).astype(np.uint32)))
    return np.asarray(image.convert("RGB"))


def read_image_rgb(path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image file to 8-bit RGB in its displayed (EXIF-oriented) frame.

    Grayscale is replicated to three channels, alpha is dropped, palette images are
    expanded, and 16-bit data is scaled by 255 / 65535.

    Args:
        path: image file (any name, including non-ASCII characters and spaces).
        max_pixels: refuse (before decoding) an image whose header claims more pixels.

    Returns:
        uint8 array [H, W, 3], RGB, contiguous.

    Raises:
        ImageReadError: missing, empty, truncated or undecodable file, a header over
            `max_pixels`, OpenCV failing or running out of memory while decoding, or
            an image smaller than 10 px on a side; `.path` and `.reason` say which and why.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    if data[:2] == b"\xff\xd8":
        _check_jpeg_complete(path, data)
    elif data[:8] == PNG_SIGNATURE:
        _check_png_complete(path, data)

    try:
        pil_image: Image.Image | None = _open_pil(io.BytesIO(data), path, max_pixels)
        orientation = _exif_orientation(pil_image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, ImageReadError):
            raise
        pil_image, orientation = None, 1  # maybe a format only OpenCV knows (its own limit applies)

    try:
        rgb = _decode(path, data, pil_image)
    except MemoryError:
        raise ImageReadError(path, "out of memory while decoding") from None
    rgb = apply_exif_orientation(rgb, orientation)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageReadError(
            path, f"image is {width}x{height} px, under the {MIN_IMAGE_SIDE} px minimum"
        )
    return rgb


def _decode(path: str | Path, data: bytes, pil_image: Image.Image | None) -> np.ndarray:
    """Decode with OpenCV (PIL for the formats OpenCV lacks) to RGB uint8."""
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. over OpenCV's own CV_IO_MAX_IMAGE_PIXELS
        raise ImageReadError(
            path, f"OpenCV cannot decode it ({str(exc).strip().splitlines()[-1]})"
        ) from None
    if decoded is not None:
        return _cv2_to_rgb(_to_uint8(decoded))
    if pil_image is None:
        raise ImageReadError(path, "not an image (neither OpenCV nor PIL can read it)")
    try:  # OpenCV lacks some formats; PIL refuses truncated files by default
        pil_image.load()
        return _pil_to_rgb(pil_image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"cannot decode image ({exc})") from None


def read_image_size(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[int, int]:
    """Size of an image in its displayed (EXIF-oriented) frame, from the header only.

    Args:
        path: image file.
        max_pixels: refuse an image whose header claims more pixels.

    Returns:
        (height, width) in pixels; orientations 5..8 swap the stored sides.

    Raises:
        ImageReadError: missing or empty file, unreadable header, a header over
            `max_pixels`, a JPEG without its end-of-image marker or a PNG without
            its IEND chunk (truncated), or a side under 10 px.
    """
    path = Path(path)
    try:
        num_bytes = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if num_bytes == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as file:
            with _open_pil(file, path, max_pixels) as image:
                width, height = image.size
                orientation = _exif_orientation(image)
            _check_end_marker(path, file, num_bytes)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"not a readable image ({exc.__class__.__name__})") from None
    if orientation >= 5:
        width, height = height, width
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageReadError(
            path, f"image is {width}x{height} px, under the {MIN_IMAGE_SIDE} px minimum"
        )
    return height, width


def probe_images(
    paths: list[Path],
    *,
    decode: bool = False,
    threads: int = 8,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> list[tuple[int, int] | ImageReadError]:
    """Check many images at start-up.

    Args:
        paths: image files.
        decode: False reads headers only (`read_image_size`); True decodes every
            image fully (`read_image_rgb`), which also finds truncated files.
        threads: worker threads for `decode=True` (OpenCV releases the GIL while
            decoding). Header reads stay in the calling thread: they are mostly
            Python, and threads made them slower (4.4k vs 6.4k images/s on 2 cores).
        max_pixels: images whose header claims more pixels are refused.

    Returns:
        One entry per path, in order: (height, width) or the `ImageReadError`.
    """

    def probe(path: Path) -> tuple[int, int] | ImageReadError:
        try:
            if decode:
                return read_image_rgb(path, max_pixels=max_pixels).shape[:2]
            return read_image_size(path, max_pixels=max_pixels)
        except ImageReadError as exc:
            return exc

    if not decode or threads <= 1 or len(paths) < 64:
        return [probe(path) for path in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(probe, paths, chunksize=32))
