"""`detector evaluate-tracks GT PRED`: HOTA, MOTA, IDF1 and friends of tracking results.

    detector evaluate-tracks runs/demo/demo_input.gt.txt runs/demo/track/demo_input.mot.txt
    detector evaluate-tracks gt_folder/ pred_folder/ --json scores.json     # <seq>.txt in each

GT and PRED are MOTChallenge text files (or folders of them, one per sequence).
Prints one row per sequence (and a COMBINED row) with HOTA, DetA, AssA, LocA,
MOTA, MOTP, IDF1, IDP, IDR (fractions in 0..1), ID switches, fragmentations,
mostly tracked/partly tracked/mostly lost objects and TP/FP/FN boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("evaluate-tracks")
@click.argument("gt", type=click.Path())
@click.argument("pred", type=click.Path())
@click.option(
    "--frames",
    "num_frames",
    type=click.IntRange(min=1),
    default=None,
    help="Sequence length in frames (default: the ground truth's last frame).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the scores (per sequence and combined) to this JSON file.",
)
def evaluate_tracks(gt: str, pred: str, num_frames: int | None, json_path: str | None) -> None:
    """Score tracking results PRED against ground truth GT (MOT text files or folders)."""
    from detector.tracking.evaluate import evaluate_tracks as evaluate
    from detector.tracking.mot import MotFormatError

    try:
        table = evaluate(gt, pred, num_frames=num_frames)
    except (MotFormatError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table.format())
    combined = table.combined
    click.echo(
        f"HOTA {combined['HOTA']:.4f}  DetA {combined['DetA']:.4f}  AssA {combined['AssA']:.4f}  "
        f"MOTA {combined['MOTA']:.4f}  IDF1 {combined['IDF1']:.4f}  "
        f"ID switches {combined['IDSW']}  fragmentations {combined['Frag']}"
    )
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(
            json.dumps({"sequences": table.sequences, "combined": combined}, indent=1),
            encoding="utf-8",
        )
        click.echo(f"wrote {json_path}")
