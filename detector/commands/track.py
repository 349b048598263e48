"""`detector track`: detect and track objects in videos, cameras and streams.

    detector track runs/demo/weights/best.pt video.mp4 --out out/ --save-mot out/video.mot.txt
    detector track best.pt rtsp://cam.local/stream --serve 8080 --track-buffer 3
    detector evaluate-tracks video.gt.txt out/video.mot.txt

Takes every option of `detect` (the same option objects: sources, sinks,
thresholds, classes, batching, precision) plus the tracker's. `--conf` is the
lowest score the tracker sees (default 0.1 here: ByteTrack's second stage uses
the low-score detections to continue tracks); `--track-high` is the score from
which detections match first and may start tracks. The annotated video shows
"#id class score" on each tracked box and a trail of the last second; the
JSON records carry each detection's "track_id" (-1: none).
"""

from __future__ import annotations

import copy
from typing import Any

import click

from detector.commands.detect import detect as _detect
from detector.commands.detect import options_from_cli, run_inference

TRACK_CONF_DEFAULT = 0.1


def _track_params() -> list[click.Parameter]:
    """detect's own parameters; `--conf` copied with the tracker's lower default."""
    params = []
    for param in _detect.params:
        if param.name == "score_threshold":
            param = copy.copy(param)
            param.default = TRACK_CONF_DEFAULT
            param.help = "Lowest detection score the tracker sees (low-score stage)."
        params.append(param)
    return params


def _run_track(
    save_mot: str | None,
    track_high: float,
    track_buffer: float,
    class_aware: bool,
    trail_seconds: float,
    checkpoint: str,
    source: str,
    **cli_options: Any,
) -> None:
    """Detect and track objects in SOURCE with CHECKPOINT (same sources and outputs as detect).

    SOURCE is a video file, a webcam index (0), an rtsp/rtmp/http(s) URL, or a
    folder/glob of images taken as consecutive frames. --save-mot writes
    MOTChallenge text (frame, id, x, y, w, h, score, -1, -1, -1) for
    `detector evaluate-tracks`.
    """
    options = options_from_cli(**cli_options)
    score_threshold = options.score_threshold
    if score_threshold > track_high:
        raise click.BadParameter(
            f"--conf {score_threshold} is above --track-high {track_high}", param_hint="--conf"
        )

    def make_stage(detector: Any, opened: Any) -> Any:
        from detector.tracking.stream import TrackingStage
        from detector.tracking.tracker import ByteTracker

        tracker = ByteTracker(
            high_threshold=track_high,
            low_threshold=score_threshold,
            track_buffer=track_buffer,
            class_aware=class_aware,
            frame_rate=opened.fps or 30.0,
        )
        try:
            return TrackingStage(
                tracker, opened, detector.names, mot_path=save_mot, trail_seconds=trail_seconds
            )
        except OSError as exc:
            raise click.ClickException(
                f"--save-mot {save_mot}: cannot write ({exc.strerror or exc})"
            ) from None

    run_inference(checkpoint, source, options, make_stage=make_stage)


track = click.Command(
    "track",
    callback=_run_track,
    help=_run_track.__doc__,
    short_help="Detect and track objects in a video, camera or stream.",
    params=[
        *_track_params(),
        click.Option(
            ["--save-mot"],
            type=click.Path(dir_okay=False),
            default=None,
            help="MOTChallenge text file of the tracks (for evaluate-tracks).",
        ),
        click.Option(
            ["--track-high"],
            type=click.FloatRange(0, 1),
            default=0.5,
            show_default=True,
            help="Score from which detections match first and may start tracks.",
        ),
        click.Option(
            ["--track-buffer"],
            type=click.FloatRange(min=0),
            default=2.0,
            show_default=True,
            help="Seconds a lost track is kept to be found again.",
        ),
        click.Option(
            ["--class-aware"],
            is_flag=True,
            help="Match detections only to tracks of the same class (default: any class; "
            "a track's class is its majority label).",
        ),
        click.Option(
            ["--trail", "trail_seconds"],
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="Seconds of trail drawn behind each tracked box.",
        ),
    ],
)
