"""Typed, strict configuration loaded from YAML, with `--set KEY=VALUE` overrides.

    cfg = load_config("configs/voc.yaml", overrides=["train.epochs=5", "model.backbone=resnet18"])
    cfg.train.epochs  # -> 5

Unknown keys and wrong types are errors that name the file and the key. The
resolved config is a plain dict (`config_to_dict`) so it can be written to a run
directory and stored in checkpoints, and read back with `config_from_dict`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from detector.config_checks import check_config_ranges


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


@dataclass
class SynthConfig:
    """Procedural dataset written to `data.root` when it does not exist yet."""

    num_train: int = 800
    num_val: int = 200
    image_size: int = 128  # side of the square images written (dense: the largest side)
    seed: int = 0
    kind: str = "shapes"  # shapes (the demo) | dense (many small objects, clutter, a rare class)


@dataclass
class DataConfig:
    """Where the dataset lives and how to read it (see datasets/README.md)."""

    format: str = "voc"  # voc | coco | yolo
    root: str = "datasets/VOCdevkit"
    # voc: split files; coco: {images, annotations} dicts; yolo: image folders or list files
    train: list[Any] = field(default_factory=list)
    val: list[Any] = field(default_factory=list)
    names: list[str] | None = None
    synthetic: SynthConfig | None = None  # generate the dataset at `root` if missing
    # Boxes smaller than this (pixels, either side, after clipping) are dropped at read time.
    min_box_size: float = 1.0
    # Images whose header claims more pixels are skipped and reported (decompression bombs).
    max_image_pixels: int = 100_000_000


@dataclass
class ModelConfig:
    """Backbone and head; see docs/architecture.md."""

    backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50 | resnet101
    # Channel multiplier of the backbone (stem and stages, rounded to multiples of 8);
    # the neck and head follow unless set. The ladder: docs/architecture.md.
    width: float = 1.0
    image_size: int = 448  # square network input (letterboxed), multiple of 32
    pretrained: str | None = None  # local path to a torchvision ResNet state dict (width 1.0 only)
    frozen_stages: int = 0  # 0: train all; 1: freeze the stem; k: the stem and layer1..layer(k-1)
    freeze_bn: bool = False  # frozen BatchNorm statistics and affine (small batches)
    neck_channels: int | None = None  # null: 128 * width (multiple of 8)
    head_channels: int | None = None  # null: 128 * width (multiple of 8)
    head_convs: int = 2  # 3x3 convs in each head branch (classification; box + objectness)
    head_depthwise: bool = False  # depthwise-separable 3x3 convs in the head branches
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # RGB, 0..1
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class TrainConfig:
    """Optimisation, schedule and run bookkeeping."""

    epochs: int = 100
    batch_size: int = 16
    workers: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.05  # cosine ends at lr * this
    accumulate: int = 1  # gradient accumulation steps
    grad_clip: float | None = 10.0  # max global grad norm; null disables
    amp: bool = True  # only used on CUDA
    amp_dtype: str = "bf16"  # bf16 | fp16 (fp16 uses a GradScaler)
    # torch.compile the training forward (inductor: needs a C++ compiler on CPU, triton
    # on CUDA; without one, training runs eager and says so). Costs a compile at the
    # start: docs/benchmarks.md "Model ladder" says when it pays.
    compile: bool = False
    ema: bool = True
    ema_decay: float = 0.9998
    eval_interval: int = 1  # validate every N epochs (and always at the end)
    early_stop_patience: int = 0  # epochs without AP improvement; 0 disables
    time_limit: float | None = None  # minutes of wall clock; one warmup + cosine planned to end there
    # Mid-epoch last.pt: "30 min" (wall clock) or "500 steps" (optimizer steps); null: epoch ends only.
    # A bare number is typed so that save_period.py can refuse it naming these forms.
    save_period: str | int | float | None = None
    worker_timeout: float | None = 300.0  # seconds to wait for one batch from the workers; null: forever
    nan_policy: str = "skip"  # skip | stop
    max_nan_skips: int = 20  # consecutive non-finite steps before giving up even with skip
    run_dir: str | None = None  # default: runs/train/exp, exp2, ...
    exist_ok: bool = False  # allow writing into an existing run_dir (starting fresh)
    deterministic: bool = False
    # Mosaic off for the end of training: an integer N = the last N epochs; a number
    # strictly between 0 and 1 = that fraction of the planned epochs (under
    # train.time_limit, of the epochs the budget plans); 0: never.
    close_mosaic: int | float = 0
    # [low, high]: one input side per batch among the multiples of 32 in it; null: model.image_size.
    multi_scale: list[int] | None = None


@dataclass
class EvalConfig:
    """Thresholds used when predicting for validation and `detector evaluate`."""

    score_threshold: float = 0.001
    iou_threshold: float = 0.6
    max_det: int = 100  # COCO's maxDets upper limit; more would not be counted
    batch_size: int = 16
    voc_metric: str = "auto"  # auto (on for voc data) | area | 11point | none


@dataclass
class Config:
    """The whole configuration: one section per concern."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: list[dict[str, Any]] | None = None  # None: transforms.DEFAULT_AUGMENT
    eval: EvalConfig = field(default_factory=EvalConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against type `tp` (building nested dataclasses); raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-3` (no dot) as a string; accept plain numerals.
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})"
        )
    kwargs = {
        name: _convert(value, hints[name], f"{where}.{name}" if where else name)
        for name, value in values.items()
    }
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    """Value checks that types alone cannot express (ranges, choices, lengths)."""
    check_config_ranges(cfg)


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping that names the same key twice (PyYAML keeps the last one silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (`<<` merges still override)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                previous = first_line.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if previous is not None:
                raise _DuplicateKeyError(
                    f"line {line}: duplicated key {key!r} "
                    f"(first given at line {previous}; YAML would keep only the last)"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    """Parse YAML safely, refusing duplicated keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to a raw dict."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. train.epochs=10")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = _load_yaml(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {override!r}: value is not valid YAML ({exc})") from exc


# Keys that were removed, with the one value they could ever hold: older config files and
# checkpoints that still carry that value load (the key is dropped: it changed nothing);
# any other value is refused, naming the key.
REMOVED_KEYS: dict[tuple[str, str], tuple[Any, str]] = {
    ("model", "strides"): ([8, 16, 32], "the model always reads C3, C4, C5 at strides 8, 16, 32"),
}


def _drop_removed_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` without the REMOVED_KEYS that hold their only value; ConfigError for another value."""
    for (section, key), (only_value, why) in REMOVED_KEYS.items():
        part = raw.get(section)
        if not isinstance(part, dict) or key not in part:
            continue
        if part[key] != only_value:
            raise ConfigError(f"{section}.{key}: {part[key]!r}: this key was removed ({why}); delete it")
        raw[section] = {name: value for name, value in part.items() if name != key}
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "<dict>", overrides: list[str] | None = None) -> Config:
    """Build and validate a Config from a plain dict; errors name `source`."""
    raw = dict(raw or {})
    for override in overrides or []:
        _apply_override(raw, override)
    try:
        cfg = _build(Config, _drop_removed_keys(raw), "")
        _validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply `KEY=VALUE` overrides, validate.

    Relative `data.root` paths are kept as written; they are resolved against the
    current directory by the data readers.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = _load_yaml(path.read_text(encoding="utf-8")) or {}
    except _DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return config_from_dict(raw, source=str(path), overrides=overrides)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain containers (YAML/`weights_only`-safe)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
