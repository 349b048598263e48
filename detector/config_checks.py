"""Range checks on every config key, run by `detector.config` before anything uses the config.

    from detector.config_checks import check_config_ranges
    check_config_ranges(cfg)   # raises ConfigError("eval.iou_threshold: 7.0 must be in [0, 1]")

Types are checked while the dataclasses are built (`detector.config._convert`);
this module checks values: ranges, finiteness, list lengths, choices, and the
few combinations that only fail deep inside a run (`frozen_stages` against the
backbone). Choice lists are read from the modules that define them (`choices`). `load_config` prefixes each message
with the file, so a bad value is reported before a run directory exists, not
after an epoch of training. `augment:` entries are checked by
`detector.data.augment.transforms` when the pipeline is built (also before the run
directory): that module owns the transform names and parameters.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.config import Config

# The generators `data.synthetic.kind` selects (detector/data/synthetic/embedded.py imports this).
SYNTHETIC_KINDS = ("shapes", "dense")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

def choices() -> dict[str, tuple[str, ...]]:
    """Every choice key's allowed values, from the modules that define them.

    Imported here, not at the top: `detector.config` loads this module and must
    stay importable without torch (the CLI's start-up).
    """
    from detector.data.catalog import DATA_FORMATS
    from detector.evaluation.voc_metric import VOC_METRICS
    from detector.model.backbone import BACKBONES
    from detector.model.precision import AMP_DTYPES
    from detector.training.epoch import NAN_POLICIES
    from detector.training.optim import OPTIMIZERS

    return {"data.format": DATA_FORMATS, "model.backbone": tuple(BACKBONES), "train.amp_dtype": AMP_DTYPES,
            "eval.voc_metric": VOC_METRICS, "train.optimizer": OPTIMIZERS, "train.nan_policy": NAN_POLICIES}


def _error(key: str, message: str) -> Exception:
    from detector.config import ConfigError  # config imports this module

    return ConfigError(f"{key}: {message}")


def _get(cfg: Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _number(cfg: Config, key: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """Check that a numeric key is finite and inside [low, high] (open ends when asked)."""
    value = _get(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, float) and not math.isfinite(value):  # ints are finite (and may exceed a float)
        raise _error(key, f"{value} is not a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise _error(key, f"{value} must be in {span}")


def _check_data(cfg: Config) -> None:
    data = cfg.data
    if not data.root.strip():
        raise _error("data.root", "must not be empty")
    _number(cfg, "data.min_box_size", low=0)
    _number(cfg, "data.max_image_pixels", low=1)
    if data.names is not None:
        if not data.names:
            raise _error("data.names", "must list at least one class (or be left out for coco)")
        if any(not name.strip() for name in data.names):
            raise _error("data.names", f"class names must not be empty: {data.names}")
        if len(set(data.names)) != len(data.names):
            raise _error("data.names", "class names must be unique")
    for split in ("train", "val"):
        for index, entry in enumerate(getattr(data, split)):
            key = f"data.{split}[{index}]"
            if data.format == "coco":
                if not (isinstance(entry, dict) and set(entry) == {"images", "annotations"}
                        and all(isinstance(v, str) and v for v in entry.values())):
                    raise _error(key, f"a coco entry is {{images: DIR, annotations: FILE.json}}, got {entry!r}")
            elif not isinstance(entry, str) or not entry.strip():
                raise _error(key, f"a {data.format} entry is a path string, got {entry!r}")
    if data.synthetic is not None:
        _number(cfg, "data.synthetic.num_train", low=1)
        _number(cfg, "data.synthetic.num_val", low=1)
        _number(cfg, "data.synthetic.image_size", low=32)
        _number(cfg, "data.synthetic.seed", low=0)
        if data.synthetic.kind not in SYNTHETIC_KINDS:
            raise _error("data.synthetic.kind", f"{data.synthetic.kind!r} is not one of {list(SYNTHETIC_KINDS)}")
        if data.synthetic.kind == "dense" and data.synthetic.image_size < 64:
            raise _error("data.synthetic.image_size", f"{data.synthetic.image_size} must be >= 64 for kind dense")


def _check_model(cfg: Config) -> None:
    model = cfg.model
    if model.image_size <= 0 or model.image_size % 32:
        raise _error("model.image_size", f"{model.image_size} must be a positive multiple of 32")
    from detector.model.backbone import FROZEN_STAGES

    _number(cfg, "model.frozen_stages", low=0, high=FROZEN_STAGES)
    _number(cfg, "model.width", low=0.0625, high=4)
    for key in ("model.neck_channels", "model.head_channels"):
        _number(cfg, key, low=1, optional=True)
    _number(cfg, "model.head_convs", low=0)
    if model.pretrained is not None and not model.pretrained.strip():
        raise _error("model.pretrained", "an empty path; use null for no pretrained weights")
    if model.pretrained is not None and model.width != 1.0:
        raise _error(
            "model.width",
            f"{model.width:g} with model.pretrained: ImageNet ResNet weights exist at width 1.0 only "
            "(set model.width: 1.0, or model.pretrained: null to train this width from scratch)",
        )
    for key, values in (("model.mean", model.mean), ("model.std", model.std)):
        if len(values) != 3:
            raise _error(key, f"needs 3 values (R, G, B), got {len(values)}: {values}")
        if not all(math.isfinite(v) for v in values):
            raise _error(key, f"values must be finite, got {values}")
    if any(v <= 0 for v in model.std):
        raise _error("model.std", f"values must be > 0 (they divide the pixels), got {model.std}")


def _check_train(cfg: Config) -> None:
    train = cfg.train
    if not DEVICE_PATTERN.fullmatch(train.device):
        raise _error("train.device", f"{train.device!r} is not a device: auto, cpu, mps, cuda or cuda:N")
    for key in ("train.epochs", "train.batch_size", "train.accumulate", "train.eval_interval",
                "train.max_nan_skips"):
        _number(cfg, key, low=1)
    for key in ("train.workers", "train.seed", "train.early_stop_patience", "train.weight_decay",
                "train.warmup_epochs"):
        _number(cfg, key, low=0)
    _number(cfg, "train.lr", low=0, low_open=True)
    _number(cfg, "train.momentum", low=0, high=1, high_open=True)
    _number(cfg, "train.final_lr_fraction", low=0, high=1)
    _number(cfg, "train.grad_clip", low=0, low_open=True, optional=True)
    _number(cfg, "train.ema_decay", low=0, high=1, high_open=True)
    _number(cfg, "train.time_limit", low=0, low_open=True, optional=True)
    _number(cfg, "train.worker_timeout", low=0, low_open=True, optional=True)
    # Imported here: engine modules import detector.config, which imports this module.
    from detector.training.save_period import parse_save_period

    parse_save_period(train.save_period)  # its errors already name train.save_period
    if train.run_dir is not None and not train.run_dir.strip():
        raise _error("train.run_dir", "an empty path; use null for runs/train/exp, exp2, ...")
    _check_close_mosaic(train.close_mosaic)
    _check_multi_scale(train.multi_scale)


def _check_close_mosaic(value: int | float) -> None:
    """An integer >= 0 (epochs) or a fraction strictly between 0 and 1 of the planned epochs."""
    if isinstance(value, int):
        if value < 0:
            raise _error("train.close_mosaic", f"{value} epochs must be >= 0 (0: keep mosaic to the end)")
        return
    if not math.isfinite(value) or not 0 < value < 1:
        whole = f"; for {value:g} epochs write the integer {int(value)}" if math.isfinite(value) and value >= 1 \
            and value == int(value) else ""
        raise _error("train.close_mosaic", f"{value} is neither an integer number of epochs nor a fraction "
                     f"strictly between 0 and 1 of the planned epochs{whole}")


def _check_multi_scale(value: list[int] | None) -> None:
    """null, or [low, high] with 32 <= low <= high and a multiple of 32 between them."""
    if value is None:
        return
    if len(value) != 2:
        raise _error("train.multi_scale", f"needs [low, high] (input sides in pixels), got {value}")
    low, high = value
    if not 32 <= low <= high:
        raise _error("train.multi_scale", f"needs 32 <= low <= high, got {value}")
    if -(-low // 32) * 32 > high:
        raise _error("train.multi_scale", f"{value} holds no multiple of 32 (input sides must be)")


def _check_eval(cfg: Config) -> None:
    _number(cfg, "eval.score_threshold", low=0, high=1)
    # Open at 0, as `Detector` (and NMS) require: 0 would suppress every overlapping box.
    _number(cfg, "eval.iou_threshold", low=0, high=1, low_open=True)
    _number(cfg, "eval.max_det", low=1)
    _number(cfg, "eval.batch_size", low=1)


def check_config_ranges(cfg: Config) -> None:
    """Check every key's value; raise ConfigError naming the first bad key.

    Args:
        cfg: a config whose types are already checked.

    Raises:
        ConfigError: "<section>.<key>: <value> must be ..." (the caller adds the file).
    """
    for key, allowed in choices().items():
        value = _get(cfg, key)
        if value not in allowed:
            raise _error(key, f"{value!r} is not one of {sorted(allowed)}")
    _check_data(cfg)
    _check_model(cfg)
    _check_train(cfg)
    _check_eval(cfg)
