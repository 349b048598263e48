"""`detector data check CONFIG`: scan a dataset and print what training would see.

    detector data check configs/voc.yaml
    detector data check configs/coco.yaml --set data.root=/data/coco --decode

Prints, for train and val: usable images, boxes per class, empty images, ignored
(difficult/crowd) boxes, boxes clipped or dropped by the box policy, skipped files
with their reasons, box-size statistics, and object sizes (longest box side) in
image pixels and at `model.image_size` after the letterbox (and through
`data.slice` tiles when set). When most training objects would shrink below 8 px
at the input, it suggests a tile size for sliced training and inference
(docs/sliced-training.md). Exits non-zero with a one-line reason when a split has
no usable image or the annotations are broken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from detector.data.inspection.check import CheckReport, SplitReport


def _format_split(report: SplitReport, names: list[str]) -> list[str]:
    """Printable lines for one split of a `data check` report."""
    stats = report.read_stats
    lines = [
        f"[{report.split}] {report.num_entries} entr{'y' if report.num_entries == 1 else 'ies'}",
        f"  images:        {report.num_images} usable, {report.num_empty} without objects "
        "(kept as negatives)",
        f"  boxes:         {report.num_boxes} used, {report.num_ignored} ignored (difficult/crowd)",
        f"  box policy:    {stats.boxes_clipped} clipped to the image, "
        f"{stats.boxes_dropped} dropped (under data.min_box_size or zero-size)",
    ]
    if stats.size_mismatches:
        lines.append(
            f"  size:          {stats.size_mismatches} annotated sizes differ from the image "
            "(image used)"
        )
    if stats.missing_label_files:
        lines.append(
            f"  labels:        {stats.missing_label_files} images without a label file (negatives)"
        )
    width = max([len(name) for name in names] + [5])
    lines.append(f"  {'class':<{width}}  {'boxes':>8}  {'ignored':>8}")
    for name in names:
        boxes = report.boxes_per_class.get(name, 0)
        ignored = report.ignored_per_class.get(name, 0)
        lines.append(f"  {name:<{width}}  {boxes:>8}  {ignored:>8}")
    sizes = report.box_sizes
    if sizes is None:
        lines.append("  box sizes:     no boxes")
    else:
        lines += [
            f"  box width  px: min {sizes.width_min:.1f}  median {sizes.width_median:.1f}  "
            f"max {sizes.width_max:.1f}",
            f"  box height px: min {sizes.height_min:.1f}  median {sizes.height_median:.1f}  "
            f"max {sizes.height_max:.1f}",
            f"  box area:      small {sizes.small}  medium {sizes.medium}  large {sizes.large}"
            " (COCO: < 32^2, < 96^2, larger)",
        ]
    objects = report.object_sizes
    if objects is not None:
        lines += [
            "  object size:   longest box side, px (median; share under 8 px at the input)",
            f"    in the image         {objects.native}",
            f"    at input {objects.network_size:<11} {objects.at_input}; "
            f"{objects.fraction_tiny_at_input:.0%} (whole image letterboxed)",
        ]
        if objects.through_tiles is not None:
            tiles = f"{objects.slice_size} px tiles"
            lines.append(
                f"    {tiles:<20} {objects.through_tiles}; "
                f"{objects.fraction_tiny_through_tiles:.0%} "
                f"(data.slice, letterboxed to {objects.network_size})"
            )
    lines.append(
        f"  skipped:       {len(report.skipped)} image(s)"
        + (" (path: reason)" if report.skipped else "")
    )
    lines += [f"    {sample.path}: {sample.reason}" for sample in report.skipped]
    return lines


def _tile_advice(report: CheckReport, network_size: int, *, sliced: bool) -> str:
    """The suggestion printed when most training objects are under 8 px at the network input."""
    size = report.suggested_tile_size
    objects = report.splits[0].object_sizes
    tiny = objects.fraction_tiny_through_tiles if sliced else objects.fraction_tiny_at_input
    how = (
        "objects keep their size"
        if size == network_size
        else f"tiles are magnified {network_size / size:.1f}x to the {network_size} px input"
    )
    where = (
        f"through data.slice.size {objects.slice_size} tiles" if sliced else "after the letterbox"
    )
    return (
        f"suggestion: {tiny:.0%} of the train objects are under 8 px at model.image_size "
        f"{network_size} {where}; train on tiles with data.slice: {{size: {size}}} ({how}) "
        "and detect with "
        f"--slice {size} (docs/sliced-training.md)"
    )


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set data.root=/data/VOCdevkit (repeatable).",
)
@click.option(
    "--decode", is_flag=True, help="Decode every image fully (slower; also finds truncated files)."
)
def check(config: str, overrides: tuple[str, ...], decode: bool) -> None:
    """Scan the train and val splits of CONFIG's dataset and print counts and box statistics."""
    from detector.config import ConfigError, load_config
    from detector.data.inspection.check import check_dataset

    try:
        cfg = load_config(config, list(overrides))
        report = check_dataset(cfg.data, decode=decode, network_size=cfg.model.image_size)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"dataset: format {report.format}, root {report.root}, {len(report.names)} classes")
    for split_report in report.splits:
        click.echo("\n".join(_format_split(split_report, report.names)))
    if report.suggested_tile_size is not None:
        click.echo(_tile_advice(report, cfg.model.image_size, sliced=cfg.data.slice is not None))
    problems = report.problems()
    if problems:
        raise click.ClickException("; ".join(problems))
