"""Dead and repeated code stays gone: the inference defaults have one home (issue 18, item 17)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "detector"
HOME = PACKAGE / "defaults.py"  # DEFAULT_SCORE_THRESHOLD, DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET

# A default written as a literal: `score_threshold: float = 0.25`, `default=0.45`, `max_det=300`.
LITERAL_DEFAULT = re.compile(
    r"(score_threshold|iou_threshold|max_det)\b[^=]*=\s*(0\.25|0\.45|300)\b"
    r"|default\s*=\s*(0\.25|0\.45|300)\b"
)


def _sources() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path != HOME)


def _code_lines(path: Path) -> dict[int, str]:
    """Line number -> its code tokens joined by spaces (strings and comments left out)."""
    lines: dict[int, list[str]] = {}
    source = io.StringIO(path.read_text(encoding="utf-8")).readline
    for token in tokenize.generate_tokens(source):
        if token.type not in (tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
            lines.setdefault(token.start[0], []).append(token.string)
    return {number: " ".join(parts) for number, parts in lines.items()}


def test_inference_defaults_are_written_once() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line}"
        for path in _sources()
        for number, line in _code_lines(path).items()
        if LITERAL_DEFAULT.search(line)
    ]
    assert not found, "literal inference defaults (use detector.defaults'):\n" + "\n".join(found)


def test_the_defaults_have_the_documented_values() -> None:
    from detector.defaults import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET, DEFAULT_SCORE_THRESHOLD

    assert (DEFAULT_SCORE_THRESHOLD, DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET) == (0.25, 0.45, 300)


def test_dead_and_repeated_helpers_are_gone() -> None:
    from detector.inference import runner
    from detector.tracking import mot

    assert not hasattr(mot, "format_mot_line")  # never called; MotWriter writes the lines
    assert not hasattr(runner, "median_latency_ms")  # unused
    definitions = [
        path.name
        for path in (PACKAGE.parent / "tools" / "benchmarks").glob("*.py")
        if re.search(r"^def _?sync\(", path.read_text(encoding="utf-8"), re.M)
    ]
    assert len(definitions) == 1, definitions


def test_detect_track_and_detector_share_one_options_object() -> None:
    """The click options' defaults are `InferenceOptions`' and `Detector`'s keywords its part."""
    import inspect

    from detector.commands.detect import detect
    from detector.defaults import InferenceOptions
    from detector.inference.predictor import Detector

    defaults = InferenceOptions()
    by_name = {param.name: param.default for param in detect.params}
    for name in (
        "device",
        "score_threshold",
        "iou_threshold",
        "max_det",
        "out_dir",
        "json_path",
        "serve_port",
        "serve_host",
        "batch_size",
        "timeout",
        "max_image_pixels",
    ):
        assert by_name[name] == getattr(defaults, name), name
    keywords = inspect.signature(Detector.from_checkpoint).parameters
    settings = defaults.detector_settings()
    assert set(settings) <= set(keywords)
    assert all(keywords[key].default == value for key, value in settings.items())
