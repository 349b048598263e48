"""The sliced-inference options of `detect`, `track` and `evaluate` (docs/slicing.md).

    detector detect best.pt aerial.jpg --slice 640 --slice-overlap 0.2 --out out/
    detector evaluate best.pt --slice 640 --no-slice-full
    detector track best.pt drone.mp4 --slice 512 --slice-batch 16

Defaults come from `detector.defaults.SlicingOptions`; whether a size suits the
model (a multiple of its largest stride) is checked when the model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from detector.defaults import DEFAULT_SLICE_OVERLAP, SlicingOptions

_DEFAULT = SlicingOptions(size=0)

_OPTIONS = (
    click.option(
        "--slice",
        "slice_size",
        type=click.IntRange(min=1),
        default=None,
        metavar="SIZE",
        help="Sliced inference: tiles of SIZE x SIZE pixels at native resolution "
        "(>= 32, a multiple of the model's largest stride), merged across tiles.",
    ),
    click.option(
        "--slice-overlap",
        type=click.FloatRange(0, 1, max_open=True),
        default=DEFAULT_SLICE_OVERLAP,
        show_default=True,
        help="Fraction of a tile its neighbours share (with --slice).",
    ),
    click.option(
        "--slice-full/--no-slice-full",
        "slice_full",
        default=_DEFAULT.full_image,
        show_default=True,
        help="Add one letterboxed full-image pass for large objects (with --slice).",
    ),
    click.option(
        "--slice-batch",
        type=click.IntRange(min=1),
        default=None,
        help="Tiles per forward pass (with --slice) [default: 8 on CPU, 32 per 16 GiB "
        "of GPU memory, at most 64].",
    ),
)


def slice_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command with --slice, --slice-overlap, --slice-full, --slice-batch."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def slicing_from_cli(
    *, slice_size: int | None, slice_overlap: float, slice_full: bool, slice_batch: int | None
) -> SlicingOptions | None:
    """The `SlicingOptions` the options spell; None without --slice.

    Raises:
        click.UsageError: --slice-overlap, --no-slice-full or --slice-batch without --slice.
    """
    if slice_size is None:
        if (
            slice_overlap != DEFAULT_SLICE_OVERLAP
            or slice_full != _DEFAULT.full_image
            or slice_batch
        ):
            raise click.UsageError(
                "--slice-overlap, --no-slice-full and --slice-batch need --slice SIZE"
            )
        return None
    return SlicingOptions(
        size=slice_size, overlap=slice_overlap, full_image=slice_full, batch_size=slice_batch
    )
