"""The `detector` command line: a thin click group over the package.

    detector train configs/shapes.yaml --set train.epochs=5
    detector evaluate runs/train/exp/weights/best.pt --json metrics.json
    detector detect runs/train/exp/weights/best.pt video.mp4 --out out/
    detector data check configs/voc.yaml
    detector export runs/train/exp/weights/best.pt --nms
    detector track runs/train/exp/weights/best.pt video.mp4 --save-mot tracks.txt
    detector benchmark runs/train/exp/weights/best.pt --data configs/shapes.yaml

Each command lives in `detector/commands/` and imports heavy modules (torch,
cv2) only when it runs, so `detector --help` stays fast.
"""

from __future__ import annotations

import click

from detector.commands.benchmark import benchmark
from detector.commands.data import data
from detector.commands.detect import detect
from detector.commands.evaluate import evaluate
from detector.commands.evaluate_tracks import evaluate_tracks
from detector.commands.export import export
from detector.commands.track import track
from detector.commands.train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="detector")
def main() -> None:
    """Train, evaluate and run a grid YOLO detector on a ResNet backbone."""


main.add_command(train)
main.add_command(evaluate)
main.add_command(detect)
main.add_command(data)
main.add_command(export)
main.add_command(evaluate_tracks)
main.add_command(track)
main.add_command(benchmark)
