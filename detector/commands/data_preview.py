"""`detector data preview CONFIG --out FILE`: a grid of augmented training samples.

    detector data preview configs/shapes.yaml --out preview.jpg
    detector data preview configs/voc.yaml --out voc.png --num 9 --seed 3 --set augment=[]

Writes one image (format from the extension: .jpg, .png, ...) of `--num` samples
as the training DataLoader delivers them, boxes and class names drawn. With
`data.slice` the samples are the training tiles, each captioned with its image
and corner, after a first cell showing one image with its tile grid.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Image file to write (.jpg or .png).",
)
@click.option(
    "--num", type=click.IntRange(min=1), default=16, show_default=True, help="Number of samples."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Picks samples and seeds augmentation."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set model.image_size=320 (repeatable).",
)
def preview(config: str, out_path: str, num: int, seed: int, overrides: tuple[str, ...]) -> None:
    """Write a grid of augmented training samples with their boxes to --out."""
    import cv2

    from detector.config import ConfigError, load_config
    from detector.data.inspection.preview import render_preview

    try:
        cfg = load_config(config, list(overrides))
        grid = render_preview(cfg, num=num, seed=seed)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(out.suffix or ".jpg", grid)
    if not ok:
        raise click.ClickException(f"{out}: cannot encode an image with extension {out.suffix!r}")
    out.write_bytes(encoded.tobytes())  # write_bytes: non-ASCII paths work everywhere
    click.echo(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]}, {num} samples)")
