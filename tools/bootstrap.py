"""Set up a private virtual environment and run the demo or the test suite.

Standard library only, so it runs on a machine with nothing but Python and pip:

    python3 tools/bootstrap.py demo    # synth data -> train -> evaluate -> detect, track a video
    python3 tools/bootstrap.py test    # the whole pytest suite (what CI runs)

The environment lives in `.venv/` at the repository root and is reinstalled only
when `pyproject.toml` or `TORCH_SPEC` changes. `TORCH_SPEC` is the pip arguments
that install torch before the package, split on spaces (default `torch==2.13.0`:
whatever build the configured pip index serves for it, the CPU wheel on our build
machines). For example `TORCH_SPEC="torch==2.13.0 --index-url
https://download.pytorch.org/whl/cpu"` takes the CPU wheel from PyTorch's own index;
`TORCH_SPEC=skip` installs nothing first and lets pip resolve `torch>=2.6` from
`pyproject.toml`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".detector-installed"
DEFAULT_TORCH_SPEC = "torch==2.13.0"
DEMO_CONFIG = "configs/shapes.yaml"
DEMO_RUN = "runs/demo"
# Reference implementations the tests compare against, installed without their
# dependencies: the metadata of both asks for opencv-python (the GUI build), which would
# put a second cv2 beside opencv-python-headless. TrackEval (tracking metrics) runs on
# what we have; SAHI's postprocess (the tile merge, tests/test_postprocess_merge_vs_sahi.py)
# needs shapely besides, which the dev extra installs.
TEST_REFERENCES = ["trackeval==1.3.0", "sahi==0.12.8"]


def _venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def _create_venv() -> None:
    """`venv` with pip; without ensurepip (Debian/Ubuntu ship it apart) one line and exit 1."""
    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except subprocess.CalledProcessError as exc:
        if "ensurepip" not in " ".join(map(str, exc.cmd)):
            raise
        # The interpreter exists by now: remove it, or the next run would trust a venv without pip.
        shutil.rmtree(VENV, ignore_errors=True)
        package = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
        print(
            f"cannot create {VENV}: Python's ensurepip is missing (Debian and Ubuntu ship it in "
            f"{package}); install it with `sudo apt install {package}` and run this again",
            file=sys.stderr,
        )
        sys.exit(1)


def ensure_environment() -> Path:
    """Create `.venv` and install the package with its dev extras if needed."""
    torch_spec = os.environ.get("TORCH_SPEC", DEFAULT_TORCH_SPEC)
    fingerprint = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()
        + torch_spec.encode()
        + " ".join(TEST_REFERENCES).encode()
    ).hexdigest()
    python = _venv_python()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return python
    if not python.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        _create_venv()
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if torch_spec != "skip":
        # Installed first and on its own so that the package's `torch>=2.6` is
        # already satisfied and pip never reaches for a multi-GB CUDA build.
        _run(pip + torch_spec.split())
    _run(pip + ["-e", ".[dev]"])
    _run(pip + ["--no-deps", *TEST_REFERENCES])
    STAMP.write_text(fingerprint)
    return python


def run_tests(python: Path, extra: list[str]) -> int:
    """Run pytest; 'no tests collected' (exit 5) counts as a failure."""
    code = subprocess.run([str(python), "-m", "pytest", *extra], cwd=ROOT).returncode
    if code == 5:
        print("pytest collected no tests: treating as a failure", file=sys.stderr)
        return 1
    return code


def run_demo(python: Path) -> int:
    """Train on the embedded synthetic dataset, evaluate,
    detect and track on a video, score the tracks."""
    detector = [str(python), "-m", "detector"]
    run_dir = ROOT / DEMO_RUN
    steps = [
        detector
        + [
            "train",
            DEMO_CONFIG,
            "--set",
            f"train.run_dir={DEMO_RUN}",
            "--set",
            "train.exist_ok=true",
        ],
        detector + ["evaluate", f"{DEMO_RUN}/weights/best.pt", "--json", f"{DEMO_RUN}/eval.json"],
        detector + ["data", "video", DEMO_CONFIG, "--out", f"{DEMO_RUN}/demo_input.mp4"],
        detector
        + [
            "detect",
            f"{DEMO_RUN}/weights/best.pt",
            f"{DEMO_RUN}/demo_input.mp4",
            "--out",
            f"{DEMO_RUN}/detect",
            "--save-json",
            f"{DEMO_RUN}/detect/detections.json",
        ],
        # Tracking on the same video, scored against the ground truth `data video` wrote beside it.
        detector
        + [
            "track",
            f"{DEMO_RUN}/weights/best.pt",
            f"{DEMO_RUN}/demo_input.mp4",
            "--out",
            f"{DEMO_RUN}/track",
            "--save-mot",
            f"{DEMO_RUN}/track/demo_input.mot.txt",
        ],
        detector
        + [
            "evaluate-tracks",
            f"{DEMO_RUN}/demo_input.gt.txt",
            f"{DEMO_RUN}/track/demo_input.mot.txt",
            "--json",
            f"{DEMO_RUN}/track/scores.json",
        ],
    ]
    for step in steps:
        print("+", " ".join(step[1:]), flush=True)
        code = subprocess.run(step, cwd=ROOT).returncode
        if code != 0:
            return code
    print(
        f"\nDone. Metrics: {run_dir / 'eval.json'}; annotated video: {run_dir / 'detect'}/; "
        f"tracks: {run_dir / 'track'}/ (scores above, and in {run_dir / 'track' / 'scores.json'})"
    )
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        return 2
    python = ensure_environment()
    if argv[0] == "test":
        return run_tests(python, argv[1:])
    if argv[0] == "demo":
        return run_demo(python)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
