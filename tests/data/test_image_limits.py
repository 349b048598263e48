"""Decompression bombs, OpenCV decode errors and MemoryError: skipped and reported with the path
(image readers, `data check`, training's loader, `evaluate`, `detect`), and the pixel limit."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from detector.cli import main
from detector.data import images as images_module
from detector.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageReadError,
    probe_images,
    read_image_rgb,
    read_image_size,
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A complete, tiny PNG whose header claims `width` x `height` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _chunk(b"IEND", b"")
    )
    return path


def photo(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    width, height = size
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_pil_decompression_bomb_is_an_image_read_error(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "bomb.png", 100_000, 100_000)  # 10^10 px: PIL's own error
    for read in (read_image_size, read_image_rgb):
        with pytest.raises(ImageReadError) as info:
            read(path)
        assert info.value.path == str(path) and "decompression bomb" in info.value.reason
    assert isinstance(probe_images([path])[0], ImageReadError)


def test_header_over_the_default_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "big.png", 12_000, 9_000)  # 108 MP: under PIL's error, over ours
    expected = (
        "header claims 12000x9000 = 108000000 pixels, "
        f"over the limit of {DEFAULT_MAX_IMAGE_PIXELS} "
        "(data.max_image_pixels; a decompression bomb?)"
    )
    for read in (read_image_size, read_image_rgb):
        with pytest.raises(ImageReadError) as info:
            read(path)
        assert info.value.reason == expected


def test_pixel_limit_is_configurable_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = photo(tmp_path / "small.jpg", (64, 48))
    assert read_image_size(small) == (48, 64)
    with pytest.raises(ImageReadError, match="64x48 = 3072 pixels, over the limit of 3000"):
        read_image_size(small, max_pixels=3000)
    with pytest.raises(ImageReadError, match="over the limit of 3000"):
        read_image_rgb(small, max_pixels=3000)
    assert read_image_rgb(small, max_pixels=3072).shape == (48, 64, 3)
    # A limit above PIL's own threshold is honoured (PIL's limit is raised to it).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    huge = bomb_png(tmp_path / "huge.png", 20_000, 10_000)  # 2e8 px > 2 x PIL's default
    assert read_image_size(huge, max_pixels=300_000_000) == (10_000, 20_000)


def test_memory_error_and_opencv_error_while_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = photo(tmp_path / "a.jpg")

    def out_of_memory(*args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(images_module.cv2, "imdecode", out_of_memory)
    with pytest.raises(ImageReadError) as info:
        read_image_rgb(path)
    assert (info.value.path, info.value.reason) == (str(path), "out of memory while decoding")

    def cv2_error(*args: object) -> None:
        raise cv2.error(
            "OpenCV(4.10) loadsave.cpp:77: error: (-215:Assertion failed) "
            "pixels <= CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'"
        )

    monkeypatch.setattr(images_module.cv2, "imdecode", cv2_error)
    with pytest.raises(
        ImageReadError, match=r"a\.jpg: OpenCV cannot decode it \(.*CV_IO_MAX_IMAGE_PIXELS"
    ):
        read_image_rgb(path)


def test_png_with_data_after_iend_and_jpeg_with_a_long_tail_are_complete(tmp_path: Path) -> None:
    png = tmp_path / "tail.png"
    Image.fromarray(np.full((20, 30, 3), 9, np.uint8)).save(png)
    png.write_bytes(png.read_bytes() + b"\x00" * 10_000)  # past the 4 KiB tail read
    assert read_image_size(png) == (20, 30)
    jpeg = photo(tmp_path / "motion.jpg")
    jpeg.write_bytes(jpeg.read_bytes() + bytes(range(256)) * 40)  # 10 KB appended, as motion photos
    assert read_image_size(jpeg) == (48, 64)


def voc_dataset(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """train: good, a bomb header, a JPEG cut at half; val: good. Returns (config, paths)."""
    base = tmp_path / "voc"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True)
    paths = {name: base / "JPEGImages" / f"{name}.jpg" for name in ("good", "bomb", "cut", "val")}
    photo(paths["good"], seed=1)
    photo(paths["val"], seed=2)
    bomb_png(paths["bomb"], 100_000, 100_000)  # PNG bytes under a .jpg name: content decides
    data = photo(paths["cut"], (128, 96), seed=3).read_bytes()
    paths["cut"].write_bytes(data[: len(data) // 2])
    for name in paths:
        (base / "Annotations" / f"{name}.xml").write_text(
            "<annotation><object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
            "<xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>"
        )
    (base / "ImageSets/Main/train.txt").write_text("good\nbomb\ncut\n")
    (base / "ImageSets/Main/val.txt").write_text("val\n")
    config = tmp_path / "data.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "format": "voc",
                    "root": str(base),
                    "names": ["cat"],
                    "train": ["ImageSets/Main/train.txt"],
                    "val": ["ImageSets/Main/val.txt"],
                },
                "model": {
                    "backbone": "resnet18",
                    "image_size": 64,
                    "neck_channels": 16,
                    "head_channels": 16,
                },
                "train": {"epochs": 1, "batch_size": 1, "workers": 0, "device": "cpu"},
            }
        )
    )
    return config, paths


def test_data_check_without_decode_names_the_bomb_and_the_half_jpeg(tmp_path: Path) -> None:
    config, paths = voc_dataset(tmp_path)
    result = CliRunner().invoke(main, ["data", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert "skipped:       2 image(s) (path: reason)" in result.output
    assert f"{paths['cut']}: truncated JPEG (no end-of-image marker)" in result.output
    assert f"{paths['bomb']}: header claims too many pixels (decompression bomb?)" in result.output
    assert "images:        1 usable" in result.output


def test_data_check_with_a_configured_limit(tmp_path: Path) -> None:
    config, paths = voc_dataset(tmp_path)
    result = CliRunner().invoke(
        main, ["data", "check", str(config), "--set", "data.max_image_pixels=1000"]
    )
    assert result.exit_code == 1  # nothing usable is left in either split
    assert (
        f"{paths['good']}: header claims 64x48 = 3072 pixels, over the limit of 1000"
        in result.output
    )


def test_training_loader_skips_at_start_up_and_replaces_a_memory_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from detector.config import load_config
    from detector.data.loading.dataset import build_dataloader

    config, paths = voc_dataset(tmp_path)
    photo(paths["bomb"], seed=4)  # now only the cut JPEG is bad at start-up
    loader, split = build_dataloader(load_config(config), "train", train=False)
    err = capsys.readouterr().err
    assert "train: 1 image(s) skipped" in err and f"{paths['cut']}: truncated JPEG" in err
    real_decode = cv2.imdecode
    bomb_bytes = paths["bomb"].read_bytes()

    def decode(buffer: np.ndarray, flags: int) -> np.ndarray:
        if buffer.tobytes() == bomb_bytes:
            raise MemoryError
        return real_decode(buffer, flags)

    monkeypatch.setattr(images_module.cv2, "imdecode", decode)
    with pytest.warns(
        RuntimeWarning, match=r"bomb\.jpg: cannot decode \(out of memory while decoding\)"
    ):
        metas = [meta for batch in loader for meta in batch["metas"]]
    assert [meta["path"] for meta in metas] == [str(paths["good"])] * 2  # replaced by the next one


def test_evaluate_reports_the_bomb_and_scores_the_rest(tmp_path: Path) -> None:
    config, paths = voc_dataset(tmp_path)
    predictions = tmp_path / "p.json"
    predictions.write_text(
        json.dumps([{"image_id": "good", "category_id": 1, "bbox": [1, 1, 29, 29], "score": 0.9}])
    )
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--predictions",
            str(predictions),
            "--data",
            str(config),
            "--split",
            "train",
            "--voc-metric",
            "none",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train: 2 image(s) skipped" in result.output
    assert f"{paths['bomb']}: header claims too many pixels" in result.output
    assert "train: 1 images, 1 detections" in result.output


def test_detect_reports_the_bomb_and_a_limit_option(tmp_path: Path) -> None:
    from detector.inference.synthetic import random_checkpoint

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        checkpoint = random_checkpoint(tmp_path / "tiny.pt", image_size=64)
        folder = tmp_path / "images"
        folder.mkdir()
        photo(folder / "good.jpg")
        bomb_png(folder / "bomb.png", 100_000, 100_000)
        runner = CliRunner()
        result = runner.invoke(
            main,
            [
                "detect",
                str(checkpoint),
                str(folder),
                "--device",
                "cpu",
                "--save-json",
                str(tmp_path / "d.json"),
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "1 unreadable" in result.output and "bomb.png" in result.output
        records = {Path(r["path"]).name: r for r in json.loads((tmp_path / "d.json").read_text())}
        assert (
            "decompression bomb" in records["bomb.png"]["error"]
            and "error" not in records["good.jpg"]
        )
        result = runner.invoke(
            main,
            [
                "detect",
                str(checkpoint),
                str(folder / "good.jpg"),
                "--device",
                "cpu",
                "--max-pixels",
                "100",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0 and "1 unreadable" in result.output
        assert "over the limit of 100" in result.output
    finally:
        torch.set_num_threads(previous)


def test_header_bomb_bytes_from_memory_are_refused_too() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(buffer, format="PNG")
    assert images_module._png_complete(buffer.getvalue())
    assert not images_module._png_complete(buffer.getvalue()[:-12])
