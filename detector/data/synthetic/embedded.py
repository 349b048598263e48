"""The embedded synthetic datasets (VOC layout) and the mp4 writer of the demo video.

    detector data synth datasets/shapes --num-train 1000 --num-val 200
    detector data synth datasets/dense --kind dense --image-size 640 --names circle,square,star
    detector data synth datasets/aerial --kind aerial --image-size 2048 --num-train 200 --num-val 40
    generate_shapes_dataset("datasets/shapes", num_train=1000, num_val=200, image_size=192,
                            seed=0, names=["circle", "square", "triangle", "star", "ring"])
    ensure_synthetic_dataset(cfg.data)   # generates cfg.data.root once, when configured

`kind` "shapes" is the demo (shapes.py: a few shapes per image, S x S images);
"dense" is the tuning set unlike it (dense.py: tens of small shapes per image,
unlabelled look-alikes, a 10x rarer class, images of 0.75-1 S per side);
"aerial" is the large-image small-object set for sliced training and inference
(aerial.py: sides of 1024-S px, 8-40 px objects in clusters, clutter, a few large
objects).

The demo video of moving shapes and its tracking ground truth: shapes_video.py.

Layout written (what `data.format: voc` with `root: <out>` reads):

    <out>/JPEGImages/<id>.jpg
    <out>/Annotations/<id>.xml          1-based inclusive coordinates, <size>, <difficult>0
    <out>/ImageSets/Main/train.txt, val.txt
    <out>/synthetic.json                the generation parameters (marks a complete dataset)

Generation is deterministic per seed (image i draws from `default_rng([seed, i])`)
and atomic: it writes into a temporary sibling directory and renames it into place,
so an interrupted run never leaves half a dataset behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from detector.config import SYNTHETIC_KINDS, DataConfig
from detector.data.synthetic.aerial import aerial_image_size, render_aerial_scene
from detector.data.synthetic.dense import dense_image_size, render_dense_scene
from detector.data.synthetic.shapes import check_shape_names, render_scene

MARKER = "synthetic.json"
_JPEG_QUALITY = 90


def _voc_xml(
    image_id: str, width: int, height: int, boxes: np.ndarray, labels: np.ndarray, names: list[str]
) -> str:
    """VOC annotation text; boxes [N, 4] continuous xyxy -> 1-based inclusive pixels."""
    objects = []
    for box, label in zip(boxes, labels, strict=True):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        objects.append(
            f"  <object>\n    <name>{names[label]}</name>\n    <pose>Unspecified</pose>\n"
            f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
            f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>\n"
            f"  </object>\n"
        )
    return (
        f"<annotation>\n  <folder>shapes</folder>\n  <filename>{image_id}.jpg</filename>\n"
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
        f"  <segmented>0</segmented>\n{''.join(objects)}</annotation>\n"
    )


def _image_size_wh(image_size: int | tuple[int, int]) -> tuple[int, int]:
    width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
    if width < 16 or height < 16:
        raise ValueError(f"synthetic image size must be at least 16x16, got {width}x{height}")
    return int(width), int(height)


def _marker(
    num_train: int,
    num_val: int,
    image_size: int | tuple[int, int],
    seed: int,
    names: list[str],
    kind: str,
) -> dict:
    """The generation parameters written to MARKER (a root with other ones is regenerated)."""
    width, height = _image_size_wh(image_size)
    params = {
        "num_train": num_train,
        "num_val": num_val,
        "width": width,
        "height": height,
        "seed": seed,
        "names": names,
    }
    if kind != "shapes":  # shapes markers written before `kind` existed stay valid
        params["kind"] = kind
    return params


def generate_shapes_dataset(
    out_dir: str | Path,
    *,
    num_train: int,
    num_val: int,
    image_size: int | tuple[int, int],
    seed: int,
    names: list[str] | tuple[str, ...],
    noise: int = 5,
    jpeg_quality: int = _JPEG_QUALITY,
    kind: str = "shapes",
) -> Path:
    """Write a shapes dataset in VOC layout to `out_dir` (created; must not exist or be empty).

    Args:
        out_dir: destination directory.
        num_train, num_val: number of images in each split.
        image_size: side of square images, or (width, height); for `kind` dense, the
            largest side S (each image's sides are drawn in [0.75 S, S]); for aerial,
            the largest side S (sides in [min(1024, S), S]).
        seed: generation seed; the same seed gives byte-identical files.
        names: classes to draw, a subset of `shapes.SHAPE_CLASSES`.
        noise: per-pixel noise amplitude (see `shapes.render_scene`).
        jpeg_quality: JPEG quality 1..100.
        kind: "shapes" (`shapes.render_scene`), "dense" (`dense.render_dense_scene`) or
            "aerial" (`aerial.render_aerial_scene`).

    Returns:
        The dataset directory.
    """
    names = check_shape_names(names)
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(
            f"synthetic dataset: unknown kind {kind!r} (known: {', '.join(SYNTHETIC_KINDS)})"
        )
    if kind in ("dense", "aerial") and not isinstance(image_size, int):
        raise ValueError(
            f"{kind} synthetic dataset: image_size is one number (the largest side), "
            f"got {image_size}"
        )
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(
            f"synthetic dataset: need a positive number of images, got {num_train}+{num_val}"
        )
    width, height = _image_size_wh(image_size)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: exists and is not empty; choose a new directory")
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{index:06d}" for index in range(num_train + num_val)]
    for index, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, index])
        if kind == "dense":
            width, height = dense_image_size(rng, int(image_size))
            image, boxes, labels = render_dense_scene(rng, width, height, names, noise=noise)
        elif kind == "aerial":
            width, height = aerial_image_size(rng, int(image_size))
            image, boxes, labels = render_aerial_scene(rng, width, height, names, noise=noise)
        else:
            image, boxes, labels = render_scene(rng, width, height, names, noise=noise)
        ok, encoded = cv2.imencode(
            ".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        )
        if not ok:
            raise RuntimeError(f"could not encode synthetic image {image_id}")
        (out_dir / "JPEGImages" / f"{image_id}.jpg").write_bytes(encoded.tobytes())
        xml = _voc_xml(image_id, width, height, boxes, labels, names)
        (out_dir / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
    main = out_dir / "ImageSets" / "Main"
    (main / "train.txt").write_text("".join(f"{i}\n" for i in ids[:num_train]), encoding="utf-8")
    (main / "val.txt").write_text("".join(f"{i}\n" for i in ids[num_train:]), encoding="utf-8")
    params = _marker(num_train, num_val, image_size, seed, names, kind)
    (out_dir / MARKER).write_text(json.dumps(params, indent=1), encoding="utf-8")
    return out_dir


def ensure_synthetic_dataset(data_cfg: DataConfig) -> None:
    """Generate `data_cfg.root` from `data_cfg.synthetic` unless it already holds that dataset.

    Does nothing when `data_cfg.synthetic` is null. A root holding a dataset made
    with other parameters is regenerated (only if it carries our marker file); a
    non-empty root without the marker is an error, never overwritten. Safe when
    several processes (DDP ranks) call it at once: each generates into its own
    temporary directory and only the first rename wins.
    """
    synth = data_cfg.synthetic
    if synth is None:
        return
    root = Path(data_cfg.root)
    names = check_shape_names(data_cfg.names or [])
    wanted = _marker(
        synth.num_train, synth.num_val, synth.image_size, synth.seed, names, synth.kind
    )
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == wanted:
                return
        except ValueError:
            pass  # unreadable marker: regenerate below
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"data.root {root} exists but holds no synthetic dataset ({MARKER} missing); "
            "point data.root at a new directory or remove data.synthetic"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        generate_shapes_dataset(
            tmp / "data",
            num_train=synth.num_train,
            num_val=synth.num_val,
            image_size=synth.image_size,
            seed=synth.seed,
            names=names,
            kind=synth.kind,
        )
        stale = None
        if root.exists():
            stale = tmp / "stale"
            root.rename(stale)
        try:
            (tmp / "data").rename(root)
        except OSError:
            # Another process finished first; keep its (identical) dataset.
            if not (root / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_video(
    path: str | Path, frames_bgr: Iterable[np.ndarray], *, width: int, height: int, fps: float
) -> int:
    """Write BGR uint8 [H, W, 3] frames as an mp4 (mp4v); return the number written.

    Raises:
        ValueError: fps <= 0. RuntimeError: OpenCV cannot open a writer for `path`.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"need fps > 0, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (width, height)
    )
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open a video writer (mp4v, {width}x{height})")
    written = 0
    try:
        for frame in frames_bgr:
            writer.write(np.ascontiguousarray(frame))
            written += 1
    finally:
        writer.release()
    return written
