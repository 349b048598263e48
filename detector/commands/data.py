"""`detector data ...`: dataset utilities.

Usage:

    detector data check configs/voc.yaml
    detector data preview configs/shapes.yaml --out preview.jpg
    detector data synth datasets/shapes
    detector data video configs/shapes.yaml --out demo.mp4
"""

from __future__ import annotations

import click

from detector.commands.data_check import check
from detector.commands.data_preview import preview
from detector.commands.data_synth import synth, video


@click.group()
def data() -> None:
    """Inspect, preview and generate datasets."""


data.add_command(check)
data.add_command(preview)
data.add_command(synth)
data.add_command(video)
