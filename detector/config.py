"""Typed, strict configuration loaded from YAML, with `--set KEY=VALUE` overrides: the whole schema.

    cfg = load_config("configs/voc.yaml", overrides=["train.epochs=5", "model.backbone=resnet18"])
    cfg.train.epochs  # -> 5
    parse_save_period("30 min")   # SavePeriod(minutes=30.0): train.save_period's grammar

Unknown keys, wrong types, values outside a choice set (`BACKBONE_NAMES`,
`DATA_FORMATS`, ... typed as `Literal`s the converter checks) and values out of
range (`check_config_ranges`) are errors that name the file and the key. The
modules that act on a choice import its set from here. A leaf of the package: it
imports nothing else of it (and no torch, so the CLI starts fast). The resolved
config is a plain dict (`config_to_dict`) so it can be written to a run directory
and stored in checkpoints, and read back with `config_from_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


# The choice sets: each key's type is the Literal, and the tuple is what code iterates.
Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]  # depths: model/backbone.py
DataFormat = Literal["voc", "coco", "yolo"]  # one reader each: data/catalog.py
# dense: many small objects, clutter, a rare class; aerial: large images, 8-40 px objects
SyntheticKind = Literal["shapes", "dense", "aerial"]
Optimizer = Literal["sgd", "adamw"]
AmpDtype = Literal["bf16", "fp16"]  # fp16 trains with a GradScaler
NanPolicy = Literal["skip", "stop"]  # what the NaN guard does on a non-finite step
VocMetric = Literal["auto", "area", "11point", "none"]  # auto: on for voc data
# `model.pretrained` names for torchvision's published ImageNet files (model/imagenet.py
# fetches them); any other value is a local path.
PretrainedName = Literal["imagenet", "imagenet-v2"]
BACKBONE_NAMES: tuple[Backbone, ...] = typing.get_args(Backbone)
DATA_FORMATS: tuple[DataFormat, ...] = typing.get_args(DataFormat)
SYNTHETIC_KINDS: tuple[SyntheticKind, ...] = typing.get_args(SyntheticKind)
OPTIMIZERS: tuple[Optimizer, ...] = typing.get_args(Optimizer)
AMP_DTYPES: tuple[AmpDtype, ...] = typing.get_args(AmpDtype)
NAN_POLICIES: tuple[NanPolicy, ...] = typing.get_args(NanPolicy)
VOC_METRICS: tuple[VocMetric, ...] = typing.get_args(VocMetric)
PRETRAINED_NAMES: tuple[PretrainedName, ...] = typing.get_args(PretrainedName)
# The names torchvision publishes a file for, per backbone: V1 for every depth, V2 (its
# newer training recipe) for 50 and 101 only.
IMAGENET_WEIGHTS: dict[Backbone, tuple[PretrainedName, ...]] = {
    "resnet18": ("imagenet",),
    "resnet34": ("imagenet",),
    "resnet50": ("imagenet", "imagenet-v2"),
    "resnet101": ("imagenet", "imagenet-v2"),
}
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # train.device
FROZEN_STAGES = 5  # what `model.frozen_stages` can freeze: the stem and layer1..layer4


@dataclass
class SynthConfig:
    """Procedural dataset written to `data.root` when it does not exist yet."""

    num_train: int = 800
    num_val: int = 200
    image_size: int = 128  # side of the square images written (dense, aerial: the largest side)
    seed: int = 0
    kind: SyntheticKind = "shapes"


@dataclass
class SliceConfig:
    """Training on tiles cut from the full-resolution images (docs/sliced-training.md).

    Each epoch holds every tile of every training image that has a target, a share
    of the empty ones, and each whole image once; validation images stay whole.
    """

    # Tile side in pixels of the original image: >= 32 and a multiple of 32 (the model's
    # largest stride). Each tile is then letterboxed to model.image_size like an image;
    # size == model.image_size keeps objects at native resolution.
    size: int = 512
    # Fraction of the tile that neighbouring tiles share at least, in [0, 1): an object
    # up to overlap * size px wide lies whole in some tile.
    overlap: float = 0.2
    # A box cut by the tile edge stays a target when at least this fraction of its area
    # is inside, else it is marked ignore (neither object nor background), in [0, 1].
    min_area_ratio: float = 0.5
    # Fraction of the tiles without any target that are trained on (as negatives), in
    # [0, 1]; drawn once per run from train.seed.
    empty_rate: float = 0.1
    # Also train on each whole image, letterboxed: the objects larger than a tile that the
    # full-image pass of sliced inference finds. An integer N >= 0: N times per epoch (each
    # copy augmented anew); true: once; false or 0: never. 2: the best AP at equal budget
    # on the aerial set, and AP_large +28% over once (docs/sliced-training.md).
    full_images: bool | int = 2
    # Images whose samples are shuffled together (a window of the epoch's order); each
    # loader worker keeps this many decoded images, so an image is decoded about once
    # per worker per epoch instead of once per tile. 0: tiles shuffled over the whole
    # split, every tile decoding its image.
    group_images: int = 8


@dataclass
class DataConfig:
    """Where the dataset lives and how to read it (see datasets/README.md)."""

    format: DataFormat = "voc"
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
    slice: SliceConfig | None = None  # train on tiles of the images; null: whole images


@dataclass
class ModelConfig:
    """Backbone and head; see docs/architecture.md."""

    backbone: Backbone = "resnet18"
    # Channel multiplier of the backbone (stem and stages, rounded to multiples of 8);
    # the neck and head follow unless set. The ladder: docs/architecture.md.
    width: float = 1.0
    image_size: int = 448  # square network input (letterboxed), multiple of 32
    # imagenet / imagenet-v2 (torchvision's file, fetched into torch's cache), a local path
    # to a torchvision ResNet state dict, or null; width 1.0 only.
    pretrained: str | None = None
    frozen_stages: int = 0  # 0: train all; 1: freeze the stem; k: the stem and layer1..layer(k-1)
    freeze_bn: bool = False  # frozen BatchNorm statistics and affine (small batches)
    neck_channels: int | None = None  # null: 128 * width (multiple of 8)
    head_channels: int | None = None  # null: 128 * width (multiple of 8)
    head_convs: int = 2  # 3x3 convs in each head branch (classification; box + objectness)
    head_depthwise: bool = False  # depthwise-separable 3x3 convs in the head branches
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # RGB, 0..1
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class ProgressiveResize:
    """`train.progressive`: smaller inputs for the first part of the planned epochs."""

    # The first epochs' input side as a share of model.image_size, in (0, 1): the side is
    # scale * image_size rounded down to a multiple of 32 (at least 32), so the recipe
    # follows a changed model.image_size.
    scale: float
    fraction: float  # share of the planned epochs before model.image_size, in (0, 1)


@dataclass
class TrainConfig:
    """Optimisation, schedule and run bookkeeping."""

    epochs: int = 100
    batch_size: int = 16
    workers: int = 2
    device: str = "auto"  # DEVICE_PATTERN
    seed: int = 0
    optimizer: Optimizer = "sgd"
    lr: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.05  # cosine ends at lr * this
    accumulate: int = 1  # gradient accumulation steps
    grad_clip: float | None = 10.0  # max global grad norm; null disables
    amp: bool = True  # only used on CUDA
    amp_dtype: AmpDtype = "bf16"
    # torch.compile the training forward (inductor: needs a C++ compiler on CPU, triton
    # on CUDA; without one, training runs eager and says so). Costs a compile at the
    # start: docs/benchmarks.md "Model ladder" says when it pays.
    compile: bool = False
    ema: bool = True
    ema_decay: float = 0.9998
    eval_interval: int = 1  # validate every N epochs (and always at the end)
    early_stop_patience: int = 0  # epochs without AP improvement; 0 disables
    # Minutes of wall clock; one warmup + cosine planned to end there.
    time_limit: float | None = None
    # Mid-epoch last.pt: "30 min" (wall clock) or "500 steps" (optimizer steps); null: epoch
    # ends only.
    # A bare number is typed so that `parse_save_period` can refuse it naming these forms.
    save_period: str | int | float | None = None
    # Seconds to wait for one batch from the workers; null: forever.
    worker_timeout: float | None = 300.0
    nan_policy: NanPolicy = "skip"
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
    # {scale, fraction}: the first `fraction` of the planned epochs train at sides rising
    # in steps of 32 from scale * model.image_size to model.image_size (validation always at
    # model.image_size); each small step costs ~(side / image_size)^2 of a full one, and
    # train.time_limit plans with that. null: model.image_size throughout.
    progressive: ProgressiveResize | None = None


@dataclass
class EvalConfig:
    """Thresholds used when predicting for validation and `detector evaluate`."""

    score_threshold: float = 0.001
    iou_threshold: float = 0.6
    max_det: int = 100  # COCO's maxDets upper limit; more would not be counted
    batch_size: int = 16
    voc_metric: VocMetric = "auto"


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
    if origin is Literal:
        allowed = typing.get_args(tp)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {sorted(allowed)}")
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
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
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
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in values]
    if missing:
        raise ConfigError(
            f"{where or 'config'}: missing key {missing[0]} (needs: {', '.join(required)})"
        )
    kwargs = {
        name: _convert(value, hints[name], f"{where}.{name}" if where else name)
        for name, value in values.items()
    }
    return cls(**kwargs)


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping that names the same key twice (PyYAML keeps the last one silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (`<<` merges override)."""

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
            raise ConfigError(
                f"{section}.{key}: {part[key]!r}: this key was removed ({why}); delete it"
            )
        raw[section] = {name: value for name, value in part.items() if name != key}
    return raw


def config_from_dict(
    raw: dict[str, Any], source: str = "<dict>", overrides: list[str] | None = None
) -> Config:
    """Build and validate a Config from a plain dict; errors name `source`."""
    raw = dict(raw or {})
    for override in overrides or []:
        _apply_override(raw, override)
    try:
        cfg = _build(Config, _drop_removed_keys(raw), "")
        check_config_ranges(cfg)
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
        raise ConfigError(
            f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
        ) from None
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


# train.save_period: how often last.pt is written inside an epoch.
_FORM = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(min|minutes?|steps?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SavePeriod:
    """Save every `minutes` of wall clock, or every `steps` optimizer steps (exactly one is set)."""

    minutes: float | None = None
    steps: int | None = None

    def due(self, *, steps_since_save: int, seconds_since_save: float) -> bool:
        """True when a mid-epoch save is due (counted from the last save of last.pt)."""
        if self.steps is not None:
            return steps_since_save >= self.steps
        return seconds_since_save >= self.minutes * 60.0

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.minutes:g} min"


def parse_save_period(value: str | float | None) -> SavePeriod | None:
    """Read `train.save_period`; None for null.

    The value is a string with its unit, so nobody has to guess whether `30` means
    minutes or steps: a number then `min` (also `minute(s)`) for wall clock, or
    `step(s)` for optimizer steps. null (the default) saves at epoch ends only. A
    mid-epoch last.pt lets `--resume` continue from that very step (docs/reliability.md).

    Raises:
        ConfigError: not of the form "30 min" / "500 steps", or not positive; a bare
            number (other toolkits' "every N epochs") is refused naming both forms.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        # `save_period: 1` means "every epoch" elsewhere; here last.pt is written at every
        # epoch end anyway, and a unitless number would leave minutes vs steps to a guess.
        is_int = isinstance(value, int) and not isinstance(value, bool)
        steps = f' or "{value} steps"' if is_int else ""
        raise ConfigError(
            f"train.save_period: {value!r} has no unit; last.pt is written at every "
            f"epoch end anyway (null, the default); to save inside epochs too write "
            f'e.g. "{value:g} min"{steps} (the forms: "30 min", "500 steps")'
        )
    match = _FORM.match(value)
    if match is None:
        raise ConfigError(
            f'train.save_period: {value!r} is not a period; write e.g. "30 min" or "500 steps"'
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    if number <= 0:
        raise ConfigError(f"train.save_period: {value!r} must be positive")
    if unit.startswith("step"):
        if number != int(number):
            raise ConfigError(f"train.save_period: {value!r}: steps are a whole number")
        return SavePeriod(steps=int(number))
    return SavePeriod(minutes=number)


# Value checks (`check_config_ranges`), run by `config_from_dict` after the types.


def _error(key: str, message: str) -> ConfigError:
    return ConfigError(f"{key}: {message}")


def _get(cfg: Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _number(
    cfg: Config,
    key: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    """Check that a numeric key is finite and inside [low, high] (open ends when asked)."""
    value = _get(cfg, key)
    if value is None and optional:
        return
    # ints are finite (and may exceed a float)
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(key, f"{value} is not a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lower = "-inf" if low is None else f"{low:g}"
        upper = "inf" if high is None else f"{high:g}"
        span = f"{left}{lower}, {upper}{right}"
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
                if not (
                    isinstance(entry, dict)
                    and set(entry) == {"images", "annotations"}
                    and all(isinstance(v, str) and v for v in entry.values())
                ):
                    raise _error(
                        key,
                        f"a coco entry is {{images: DIR, annotations: FILE.json}}, got {entry!r}",
                    )
            elif not isinstance(entry, str) or not entry.strip():
                raise _error(key, f"a {data.format} entry is a path string, got {entry!r}")
    if data.slice is not None:
        _check_slice(cfg)
    if data.synthetic is not None:
        _number(cfg, "data.synthetic.num_train", low=1)
        _number(cfg, "data.synthetic.num_val", low=1)
        _number(cfg, "data.synthetic.image_size", low=32)
        _number(cfg, "data.synthetic.seed", low=0)
        least = {"dense": 64, "aerial": 256}.get(data.synthetic.kind, 32)
        if data.synthetic.image_size < least:
            raise _error(
                "data.synthetic.image_size",
                f"{data.synthetic.image_size} must be >= {least} for kind {data.synthetic.kind}",
            )


def _check_slice(cfg: Config) -> None:
    """data.slice: a tile of >= 32 px, a multiple of the largest stride; fractions in range."""
    size = cfg.data.slice.size
    if size < 32 or size % 32:
        raise _error(
            "data.slice.size",
            f"{size} must be a multiple of 32 (the model's largest stride) and at least 32",
        )
    _number(cfg, "data.slice.overlap", low=0, high=1, high_open=True)
    _number(cfg, "data.slice.min_area_ratio", low=0, high=1)
    _number(cfg, "data.slice.empty_rate", low=0, high=1)
    _number(cfg, "data.slice.group_images", low=0)
    _number(cfg, "data.slice.full_images", low=0)


def _check_model(cfg: Config) -> None:
    model = cfg.model
    if model.image_size <= 0 or model.image_size % 32:
        raise _error("model.image_size", f"{model.image_size} must be a positive multiple of 32")
    _number(cfg, "model.frozen_stages", low=0, high=FROZEN_STAGES)
    _number(cfg, "model.width", low=0.0625, high=4)
    for key in ("model.neck_channels", "model.head_channels"):
        _number(cfg, key, low=1, optional=True)
    _number(cfg, "model.head_convs", low=0)
    if model.pretrained is not None and not model.pretrained.strip():
        raise _error("model.pretrained", "an empty path; use null for no pretrained weights")
    _check_pretrained_name(model.pretrained, model.backbone)
    if model.pretrained is not None and model.width != 1.0:
        raise _error(
            "model.width",
            f"{model.width:g} with model.pretrained: ImageNet ResNet weights exist at width 1.0 "
            "only "
            "(set model.width: 1.0, or model.pretrained: null to train this width from scratch)",
        )
    for key, values in (("model.mean", model.mean), ("model.std", model.std)):
        if len(values) != 3:
            raise _error(key, f"needs 3 values (R, G, B), got {len(values)}: {values}")
        if not all(math.isfinite(v) for v in values):
            raise _error(key, f"values must be finite, got {values}")
    if any(v <= 0 for v in model.std):
        raise _error("model.std", f"values must be > 0 (they divide the pixels), got {model.std}")


def _looks_like_weight_name(value: str) -> bool:
    """True for a bare word starting with "imagenet" (any case): meant as a name, not a file."""
    text = value.strip()
    return text.lower().startswith("imagenet") and not any(c in text for c in "/\\.")


def _check_pretrained_name(value: str | None, backbone: Backbone) -> None:
    """A weight name must be one torchvision publishes for `backbone`; paths pass unchecked."""
    if value is None or not (value in PRETRAINED_NAMES or _looks_like_weight_name(value)):
        return
    available = IMAGENET_WEIGHTS[backbone]
    if value not in PRETRAINED_NAMES:
        v2 = " and ".join(b for b, names in IMAGENET_WEIGHTS.items() if "imagenet-v2" in names)
        raise _error(
            "model.pretrained",
            f"{value!r} is not a weight name: use imagenet, "
            f"imagenet-v2 ({v2} only), a path to a local .pth file, or null",
        )
    if value not in available:
        raise _error(
            "model.pretrained",
            f"{value!r}: torchvision publishes no such file for "
            f"{backbone} (it has: {', '.join(available)})",
        )


def _check_train(cfg: Config) -> None:
    train = cfg.train
    if not DEVICE_PATTERN.fullmatch(train.device):
        raise _error(
            "train.device", f"{train.device!r} is not a device: auto, cpu, mps, cuda or cuda:N"
        )
    for key in (
        "train.epochs",
        "train.batch_size",
        "train.accumulate",
        "train.eval_interval",
        "train.max_nan_skips",
    ):
        _number(cfg, key, low=1)
    for key in (
        "train.workers",
        "train.seed",
        "train.early_stop_patience",
        "train.weight_decay",
        "train.warmup_epochs",
    ):
        _number(cfg, key, low=0)
    _number(cfg, "train.lr", low=0, low_open=True)
    _number(cfg, "train.momentum", low=0, high=1, high_open=True)
    _number(cfg, "train.final_lr_fraction", low=0, high=1)
    _number(cfg, "train.grad_clip", low=0, low_open=True, optional=True)
    _number(cfg, "train.ema_decay", low=0, high=1, high_open=True)
    _number(cfg, "train.time_limit", low=0, low_open=True, optional=True)
    _number(cfg, "train.worker_timeout", low=0, low_open=True, optional=True)
    parse_save_period(train.save_period)  # its errors already name train.save_period
    if train.run_dir is not None and not train.run_dir.strip():
        raise _error("train.run_dir", "an empty path; use null for runs/train/exp, exp2, ...")
    _check_close_mosaic(train.close_mosaic)
    _check_multi_scale(train.multi_scale)
    _check_progressive(train.progressive, train.multi_scale)


def _check_close_mosaic(value: int | float) -> None:
    """An integer >= 0 (epochs) or a fraction strictly between 0 and 1 of the planned epochs."""
    if isinstance(value, int):
        if value < 0:
            raise _error(
                "train.close_mosaic", f"{value} epochs must be >= 0 (0: keep mosaic to the end)"
            )
        return
    if not math.isfinite(value) or not 0 < value < 1:
        integral = math.isfinite(value) and value >= 1 and value == int(value)
        whole = f"; for {value:g} epochs write the integer {int(value)}" if integral else ""
        raise _error(
            "train.close_mosaic",
            f"{value} is neither an integer number of epochs nor a "
            f"fraction strictly between 0 and 1 of the planned epochs{whole}",
        )


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


def _check_progressive(value: ProgressiveResize | None, multi_scale: list[int] | None) -> None:
    """null, or a scale and a fraction, each strictly between 0 and 1."""
    if value is None:
        return
    if multi_scale is not None:
        raise _error(
            "train.progressive",
            "cannot be combined with train.multi_scale "
            "(both choose the batch's input side); set one of them to null",
        )
    if not math.isfinite(value.scale) or not 0 < value.scale < 1:
        raise _error(
            "train.progressive.scale",
            f"{value.scale} must be strictly between 0 and 1 (share of model.image_size)",
        )
    if not math.isfinite(value.fraction) or not 0 < value.fraction < 1:
        raise _error(
            "train.progressive.fraction",
            f"{value.fraction} must be strictly between 0 and 1 (share of the planned epochs)",
        )


def _check_eval(cfg: Config) -> None:
    _number(cfg, "eval.score_threshold", low=0, high=1)
    # Open at 0, as `Detector` (and NMS) require: 0 would suppress every overlapping box.
    _number(cfg, "eval.iou_threshold", low=0, high=1, low_open=True)
    _number(cfg, "eval.max_det", low=1)
    _number(cfg, "eval.batch_size", low=1)


def check_config_ranges(cfg: Config) -> None:
    """Check every key's value; raise ConfigError naming the first bad key.

    Types and choice sets are checked while the dataclasses are built (`_convert`);
    this checks values: ranges, finiteness, list lengths, and the few combinations
    that only fail deep inside a run (`frozen_stages` against the backbone), so a
    bad value is reported before a run directory exists. `augment:` entries are
    checked by `detector.data.augment.transforms`, which owns the transform names.

    Args:
        cfg: a config whose types are already checked.

    Raises:
        ConfigError: "<section>.<key>: <value> must be ..." (the caller adds the file).
    """
    _check_data(cfg)
    _check_model(cfg)
    _check_train(cfg)
    _check_eval(cfg)
