"""`detector data synth OUT` and `detector data video CONFIG --out FILE.mp4`.

    detector data synth datasets/shapes --num-train 1000 --num-val 200 --image-size 192
    detector data synth datasets/dense --kind dense --image-size 640 --num-train 600 --num-val 150
    detector data synth datasets/aerial --kind aerial --image-size 2048 --num-train 200 --num-val 40
    detector data video configs/shapes.yaml --out demo.mp4 --frames 150 --fps 30

`synth` writes the procedural shapes dataset in VOC layout (what configs/shapes.yaml
reads; training also generates it on first use). `video` renders shapes of the
config's classes moving over a cluttered background, a demo input for
`detector detect` and `detector track`, with its tracking ground truth in
MOTChallenge text beside it (`<stem>.gt.txt`: crossings, occlusions, an exit and
re-entry, speed changes; see detector/data/synthetic/shapes_video.py).
"""

from __future__ import annotations

import click

from detector.config import SYNTHETIC_KINDS


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    if width < 16 or height < 16:
        raise click.BadParameter(f"{text!r}: at least 16x16")
    return width, height


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--num-train", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--num-val", type=click.IntRange(min=0), default=200, show_default=True)
@click.option(
    "--image-size",
    type=click.IntRange(min=16),
    default=192,
    show_default=True,
    help="Side of the square images in pixels (dense, aerial: the largest side).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--kind",
    type=click.Choice(SYNTHETIC_KINDS),
    default="shapes",
    show_default=True,
    help="shapes: the demo; dense: tens of small shapes, look-alike clutter, a 10x rarer "
    "class; aerial: 1024-2048 px images, 8-40 px objects, a few large ones.",
)
def synth(out: str, num_train: int, num_val: int, image_size: int, seed: int, kind: str) -> None:
    """Generate a synthetic shapes dataset (VOC layout) into OUT."""
    from detector.data.synthetic.embedded import generate_shapes_dataset
    from detector.data.synthetic.shapes import SHAPE_CLASSES

    try:
        root = generate_shapes_dataset(
            out,
            num_train=num_train,
            num_val=num_val,
            image_size=image_size,
            seed=seed,
            names=list(SHAPE_CLASSES),
            kind=kind,
        )
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {num_train} train + {num_val} val {kind} images ({image_size}px, classes "
        f"{', '.join(SHAPE_CLASSES)}) to {root}"
    )


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Video file (.mp4)."
)
@click.option("--frames", type=click.IntRange(min=1), default=150, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option("--size", default="320x240", show_default=True, help="Frame size WIDTHxHEIGHT.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--shapes",
    "num_shapes",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Moving shapes (the first five play the scripted crossings; more make a crowd).",
)
def video(
    config: str, out_path: str, frames: int, fps: float, size: str, seed: int, num_shapes: int
) -> None:
    """Render a video of moving shapes of CONFIG's classes,
    and its MOT ground truth <stem>.gt.txt."""
    from detector.config import ConfigError, load_config
    from detector.data.synthetic.shapes_video import ground_truth_path, write_shapes_video

    width, height = _parse_size(size)
    try:
        cfg = load_config(config)
        if cfg.data.synthetic is None:
            raise click.ClickException(
                f"{config}: data.synthetic is not set; video draws the synthetic shapes"
            )
        written = write_shapes_video(
            out_path,
            list(cfg.data.names or []),
            width=width,
            height=height,
            frames=frames,
            fps=fps,
            seed=seed,
            num_shapes=num_shapes,
        )
    except (ConfigError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_path}: {written} frames, {width}x{height} at {fps:g} fps")
    click.echo(
        f"wrote {ground_truth_path(out_path)}: MOTChallenge ground truth (detector evaluate-tracks)"
    )
