"""Lines stay within the configured 100 characters (E501, pyproject.toml [tool.ruff]): the suite
runs ruff's E501 check over the repository, so CI enforces it (only E501: other rules and the
formatter's style move between ruff releases)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("ruff", reason="ruff comes with the dev extra")


def _e501(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--no-cache",
        "--select",
        "E501",
        "--config",
        str(ROOT / "pyproject.toml"),
        *map(str, paths),
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)


def test_no_line_of_the_repository_is_over_the_limit() -> None:
    result = _e501(ROOT / "detector", ROOT / "tests", ROOT / "tools")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_fails_on_a_line_of_101_characters(tmp_path: Path) -> None:
    source = tmp_path / "long.py"
    # Words, not one long token (ruff leaves a line that cannot be split alone).
    words = "x = 1  # " + "word " * 30
    source.write_text(words[:100] + ".\n")  # 101 characters
    result = _e501(source)
    assert result.returncode == 1 and "E501" in result.stdout, result.stdout
    source.write_text(words[:99] + ".\n")  # 100: within the limit
    assert _e501(source).returncode == 0
