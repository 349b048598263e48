"""Config value checks (range, finiteness, choices) and duplicated YAML keys, file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.config import ConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# (override, the key the error must name, a phrase of the reason)
BAD_VALUES = [
    ("train.lr=.nan", "train.lr", "not a finite number"),
    ("train.lr=.inf", "train.lr", "not a finite number"),
    ("train.lr=-0.01", "train.lr", "must be in (0, inf]"),
    ("train.lr=0", "train.lr", "must be in (0, inf]"),
    ("train.workers=-1", "train.workers", "must be in [0, inf]"),
    ("eval.iou_threshold=7", "eval.iou_threshold", "must be in (0, 1]"),
    ("eval.score_threshold=-0.1", "eval.score_threshold", "must be in [0, 1]"),
    ("eval.max_det=0", "eval.max_det", "must be in [1, inf]"),
    ("eval.batch_size=0", "eval.batch_size", "must be in [1, inf]"),
    ("train.batch_size=0", "train.batch_size", "must be in [1, inf]"),
    ("train.epochs=0", "train.epochs", "must be in [1, inf]"),
    ("train.accumulate=0", "train.accumulate", "must be in [1, inf]"),
    ("model.std=[0.2, 0.0, 0.2]", "model.std", "must be > 0"),
    ("model.std=[0.2, 0.2]", "model.std", "needs 3 values"),
    ("model.mean=[0.5, .nan, 0.5]", "model.mean", "finite"),
    ("train.device=gpu", "train.device", "is not a device"),
    ("train.device=cuda:x", "train.device", "is not a device"),
    ("train.ema_decay=1.0", "train.ema_decay", "must be in [0, 1)"),
    ("train.ema_decay=-0.5", "train.ema_decay", "must be in [0, 1)"),
    ("model.frozen_stages=6", "model.frozen_stages", "must be in [0, 5]"),
    ("train.time_limit=0", "train.time_limit", "must be in (0, inf]"),
    ("train.time_limit=-5", "train.time_limit", "must be in (0, inf]"),
    ("model.strides=[8, 16]", "model.strides", "this key was removed"),
    ("model.strides=[4, 8, 16]", "model.strides", "this key was removed"),
    ("train.close_mosaic=-1", "train.close_mosaic", "must be >= 0"),
    ("train.close_mosaic=2.0", "train.close_mosaic", "write the integer 2"),
    ("train.close_mosaic=0.0", "train.close_mosaic", "strictly between 0 and 1"),
    ("train.close_mosaic=.nan", "train.close_mosaic", "strictly between 0 and 1"),
    ("train.multi_scale=[320]", "train.multi_scale", "needs [low, high]"),
    ("train.multi_scale=[448, 320]", "train.multi_scale", "32 <= low <= high"),
    ("train.multi_scale=[330, 340]", "train.multi_scale", "holds no multiple of 32"),
    ("train.multi_scale=[0, 64]", "train.multi_scale", "32 <= low <= high"),
    ("train.momentum=1.5", "train.momentum", "must be in [0, 1)"),
    ("train.weight_decay=-1", "train.weight_decay", "must be in [0, inf]"),
    ("train.warmup_epochs=-1", "train.warmup_epochs", "must be in [0, inf]"),
    ("train.final_lr_fraction=2", "train.final_lr_fraction", "must be in [0, 1]"),
    ("train.grad_clip=0", "train.grad_clip", "must be in (0, inf]"),
    ("train.eval_interval=0", "train.eval_interval", "must be in [1, inf]"),
    ("train.early_stop_patience=-1", "train.early_stop_patience", "must be in [0, inf]"),
    ("train.max_nan_skips=0", "train.max_nan_skips", "must be in [1, inf]"),
    ("train.seed=-1", "train.seed", "must be in [0, inf]"),
    ("train.run_dir=''", "train.run_dir", "empty path"),
    ("model.neck_channels=0", "model.neck_channels", "must be in [1, inf]"),
    ("model.head_channels=-8", "model.head_channels", "must be in [1, inf]"),
    ("model.head_convs=-1", "model.head_convs", "must be in [0, inf]"),
    ("model.pretrained=''", "model.pretrained", "empty path"),
    (
        "model.pretrained=imagenet-v2",
        "model.pretrained",
        "'imagenet-v2': torchvision publishes no such file for resnet18 (it has: imagenet)",
    ),
    ("model.pretrained=ImageNet", "model.pretrained", "'ImageNet' is not a weight name"),
    (
        "model.pretrained=imagenet1k",
        "model.pretrained",
        "use imagenet, imagenet-v2 (resnet50 and resnet101 only)",
    ),
    ("model.pretrained=imagenet", "model.width", "weights exist at width 1.0 only"),
    ("data.min_box_size=-1", "data.min_box_size", "must be in [0, inf]"),
    ("data.max_image_pixels=0", "data.max_image_pixels", "must be in [1, inf]"),
    ("data.names=[]", "data.names", "at least one class"),
    ("data.names=[a, '']", "data.names", "must not be empty"),
    ("data.names=[a, a]", "data.names", "unique"),
    ("data.root=''", "data.root", "must not be empty"),
    ("data.train=[{images: x}]", "data.train[0]", "a voc entry is a path string"),
    ("data.synthetic.num_train=0", "data.synthetic.num_train", "must be in [1, inf]"),
    ("data.synthetic.image_size=8", "data.synthetic.image_size", "must be in [32, inf]"),
    (
        "data.slice.size=16",
        "data.slice.size",
        "must be a multiple of 32 (the model's largest stride)",
    ),
    ("data.slice.size=500", "data.slice.size", "must be a multiple of 32"),
    ("data.slice.overlap=1.0", "data.slice.overlap", "must be in [0, 1)"),
    ("data.slice.overlap=-0.1", "data.slice.overlap", "must be in [0, 1)"),
    ("data.slice.min_area_ratio=1.5", "data.slice.min_area_ratio", "must be in [0, 1]"),
    ("data.slice.empty_rate=-1", "data.slice.empty_rate", "must be in [0, 1]"),
    ("data.slice.group_images=-1", "data.slice.group_images", "must be in [0, inf]"),
    ("data.slice.full_images=-2", "data.slice.full_images", "must be in [0, inf]"),
    ("data.slice.full_images=1.5", "data.slice.full_images", "1.5 matches none of"),
    ("train.optimizer=lion", "train.optimizer", "is not one of"),
    ("eval.voc_metric=12point", "eval.voc_metric", "is not one of"),
]


@pytest.mark.parametrize(("override", "key", "reason"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_is_refused_naming_file_and_key(override: str, key: str, reason: str) -> None:
    path = CONFIGS / "shapes.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert reason in message


def test_pretrained_names_and_paths_accepted_where_torchvision_has_the_file() -> None:
    for backbone, name in [
        ("resnet18", "imagenet"),
        ("resnet34", "imagenet"),
        ("resnet50", "imagenet-v2"),
        ("resnet101", "imagenet-v2"),
    ]:
        cfg = config_from_dict({"model": {"backbone": backbone, "pretrained": name}})
        assert cfg.model.pretrained == name
    for path in ("weights/imagenet.pth", "imagenet-v2.pth", "/data/ImageNet/resnet18.pth"):
        assert config_from_dict({"model": {"pretrained": path}}).model.pretrained == path
    with pytest.raises(
        ConfigError, match=r"^<dict>: model\.pretrained: 'imagenet-v2': .* resnet34"
    ):
        config_from_dict({"model": {"backbone": "resnet34", "pretrained": "imagenet-v2"}})


def test_coco_entry_shape_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"data\.val\[0\]: a coco entry is"):
        load_config(CONFIGS / "coco.yaml", ["data.val=[val2017]"])


def test_device_strings_accepted() -> None:
    for value in ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"]:
        assert config_from_dict({"train": {"device": value}}).train.device == value


def test_close_mosaic_and_multi_scale_spellings_accepted() -> None:
    for value in (0, 3, 0.1, 0.999):
        assert config_from_dict({"train": {"close_mosaic": value}}).train.close_mosaic == value
    assert isinstance(config_from_dict({"train": {"close_mosaic": 3}}).train.close_mosaic, int)
    assert config_from_dict({"train": {"multi_scale": [320, 576]}}).train.multi_scale == [320, 576]
    assert config_from_dict({"train": {"multi_scale": [300, 330]}}).train.multi_scale == [
        300,
        330,
    ]  # holds 320
    assert config_from_dict({"train": {"multi_scale": None}}).train.multi_scale is None


def test_boundary_values_accepted() -> None:
    cfg = config_from_dict(
        {
            "eval": {"iou_threshold": 1.0, "score_threshold": 0.0, "max_det": 1},
            "train": {"workers": 0, "ema_decay": 0.0, "time_limit": 0.5, "grad_clip": None},
            "model": {"frozen_stages": 5},
        }
    )
    assert (cfg.eval.iou_threshold, cfg.train.workers, cfg.model.frozen_stages) == (1.0, 0, 5)


def test_huge_integer_is_a_range_error_not_an_overflow() -> None:
    with pytest.raises(ConfigError, match="eval.max_det"):
        config_from_dict({"eval": {"max_det": -(10**400)}})
    assert config_from_dict({"train": {"epochs": 10**400}}).train.epochs == 10**400


def test_duplicated_section_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  epochs: 3\neval:\n  max_det: 10\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: line 5: duplicated key 'train' "
        "(first given at line 1; YAML would keep only the last)"
    )


def test_duplicated_nested_and_flow_keys(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("model:\n  backbone: resnet18\n  image_size: 128\n  backbone: resnet50\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: line 4: duplicated key 'backbone'"):
        load_config(path)
    path.write_text("augment:\n  - {name: hflip, p: 0.5, p: 0.2}\n")
    with pytest.raises(ConfigError, match=r"line 2: duplicated key 'p'"):
        load_config(path)


def test_yaml_merge_key_still_overrides(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("train:\n  <<: {epochs: 3, lr: 0.1}\n  epochs: 4\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.lr) == (4, 0.1)


def test_duplicated_key_in_override_value() -> None:
    with pytest.raises(ConfigError, match="duplicated key 'name'"):
        load_config(CONFIGS / "shapes.yaml", ["augment=[{name: hflip, name: crop}]"])


def test_non_utf8_config_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  run_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not a UTF-8 text file"):
        load_config(path)


def test_train_with_bad_iou_threshold_fails_before_the_run_directory(
    tmp_path: Path, monkeypatch
) -> None:
    """Before this check, `eval.iou_threshold: 7` trained a whole epoch, then failed in NMS."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text(
        (CONFIGS / "shapes.yaml").read_text().replace("iou_threshold: 0.6", "iou_threshold: 7")
    )
    result = CliRunner().invoke(main, ["train", str(config), "--set", "train.run_dir=runs/x"])
    assert result.exit_code != 0
    assert f"{config}: eval.iou_threshold: 7.0 must be in (0, 1]" in result.output
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "datasets").exists()  # not even the synthetic data was written


def test_save_period_and_worker_timeout_checked_at_load() -> None:
    """train.save_period / worker_timeout (added with preemption) are range-checked at load time."""
    for override, fragment in (
        ("train.save_period=30", "train.save_period"),
        ("train.save_period='0 steps'", "train.save_period"),
        ("train.worker_timeout=0", "train.worker_timeout"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            load_config("configs/shapes.yaml", overrides=[override])
    cfg = load_config("configs/shapes.yaml", overrides=["train.save_period='5 steps'"])
    assert cfg.train.save_period == "5 steps"


def test_removed_model_strides_with_its_only_value_still_loads() -> None:
    # Older config files and checkpoints carry model.strides: [8, 16, 32]; they load as before.
    from detector.config import config_from_dict, config_to_dict

    cfg = config_from_dict({"model": {"strides": [8, 16, 32], "image_size": 64}}, source="old.pt")
    assert cfg.model.image_size == 64 and "strides" not in config_to_dict(cfg)["model"]
    with pytest.raises(
        ConfigError, match=r"old.pt: model.strides: \[8, 16\]: this key was removed .*; delete it"
    ):
        config_from_dict({"model": {"strides": [8, 16]}}, source="old.pt")


class _NoBackend:
    """Enough of an inference backend for `Detector` to check its thresholds."""

    fixed_size = None
    device = "cpu"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        *[("iou_threshold", v) for v in (-0.1, 0.0, 1e-9, 0.5, 1.0, 1.0 + 1e-9)],
        *[("score_threshold", v) for v in (-1e-9, 0.0, 0.5, 1.0, 1.0 + 1e-9)],
        *[("max_det", v) for v in (0, 1, 300)],
    ],
)
def test_eval_range_check_agrees_with_detector(key: str, value: float) -> None:
    """A value the config accepts must not fail at the first validation (`Detector`), and back.

    `eval.iou_threshold: 0` passed the range check and failed after a whole epoch.
    """
    from detector import Detector

    try:
        config_from_dict({"eval": {key: value}})
        config_accepts = True
    except ConfigError:
        config_accepts = False
    try:
        Detector(_NoBackend(), names=["a"], image_size=64, **{key: value})
        detector_accepts = True
    except ValueError:
        detector_accepts = False
    assert config_accepts == detector_accepts, (
        f"eval.{key}={value}: config {config_accepts}, Detector {detector_accepts}"
    )


@pytest.mark.parametrize("value", ["1", "30", "0.5"])
def test_bare_number_save_period_names_the_accepted_forms(tmp_path: Path, value: str) -> None:
    """`save_period: 1` (other toolkits: every epoch) was refused
    with "expected a string, got 1"."""
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  save_period: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: train.save_period: "), message
    assert "expected a string" not in message
    assert '"30 min"' in message and '"500 steps"' in message and "every epoch" in message, message


def test_slice_boundary_values_accepted_and_absent_by_default() -> None:
    assert config_from_dict({}).data.slice is None
    for spec in (
        {"size": 32, "overlap": 0.0, "min_area_ratio": 0.0, "empty_rate": 0.0, "group_images": 0},
        {
            "size": 2048,
            "overlap": 0.99,
            "min_area_ratio": 1.0,
            "empty_rate": 1.0,
            "full_images": False,
        },
        {"size": 256, "full_images": 4},
        {"size": 256, "full_images": 0},
    ):
        sliced = config_from_dict({"data": {"slice": spec}}).data.slice
        assert {key: getattr(sliced, key) for key in spec} == spec
