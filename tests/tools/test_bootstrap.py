"""tools/bootstrap.py on a fresh machine: what it says when the venv cannot be made."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """tools/bootstrap.py as a module, its .venv moved into tmp_path."""
    spec = importlib.util.spec_from_file_location(
        "bootstrap_under_test", ROOT / "tools" / "bootstrap.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(module, "STAMP", tmp_path / ".venv" / ".detector-installed")
    return module


def test_missing_ensurepip_names_the_package_and_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Debian and Ubuntu ship ensurepip apart (python3-venv): venv fails as it does there."""
    bootstrap = _bootstrap(tmp_path, monkeypatch)

    def create_without_ensurepip(self: venv.EnvBuilder, env_dir: str | Path) -> None:
        python = Path(env_dir) / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text("")  # the interpreter is made before ensurepip runs
        raise subprocess.CalledProcessError(
            1,
            [str(python), "-m", "ensurepip", "--upgrade", "--default-pip"],
            output=b"No module named ensurepip\n",
        )

    monkeypatch.setattr(venv.EnvBuilder, "create", create_without_ensurepip)
    with pytest.raises(SystemExit) as exited:
        bootstrap.main(["setup"])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    package = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "ensurepip" in lines[0], err
    assert package in lines[0] and f"apt install {package}" in lines[0], err
    assert "Traceback" not in out + err
    assert not (tmp_path / ".venv").exists()  # no half-made venv that the next run would trust
