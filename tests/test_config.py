"""Config loading: strict keys and types, overrides, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import ConfigError, config_from_dict, config_to_dict, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["shapes", "voc", "coco"])
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg


def test_override_sets_nested_value_with_yaml_types() -> None:
    cfg = load_config(
        CONFIGS / "shapes.yaml", ["train.epochs=3", "model.pretrained=null", "train.lr=1e-3"]
    )
    assert cfg.train.epochs == 3
    assert cfg.model.pretrained is None
    assert cfg.train.lr == pytest.approx(1e-3)


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epohcs: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key train\.epohcs"):
        load_config(path)


def test_wrong_type_names_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        load_config(path)


def test_bad_choice_and_image_size_rejected() -> None:
    with pytest.raises(ConfigError, match="model.backbone"):
        config_from_dict({"model": {"backbone": "vgg16"}})
    with pytest.raises(ConfigError, match="multiple of 32"):
        config_from_dict({"model": {"image_size": 100}})


def test_malformed_override_rejected() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_from_dict({}, overrides=["train.epochs"])


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_imports_nothing_else_of_the_package() -> None:
    """The schema is a leaf: importing it loads no other detector module (and no torch)."""
    import subprocess
    import sys

    code = (
        "import sys, detector.config; "
        "print(sorted(m for m in sys.modules if m.startswith(('detector.', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['detector.config']"


def test_choice_sets_are_checked_while_building() -> None:
    from detector.config import OPTIMIZERS, ConfigError, config_from_dict

    assert config_from_dict({"train": {"optimizer": OPTIMIZERS[-1]}}).train.optimizer == "adamw"
    with pytest.raises(
        ConfigError, match=r"train.optimizer: 'adam' is not one of \['adamw', 'sgd'\]"
    ):
        config_from_dict({"train": {"optimizer": "adam"}}, source="x.yaml")
    with pytest.raises(ConfigError, match="model.backbone: expected a string, got 18"):
        config_from_dict({"model": {"backbone": 18}})
