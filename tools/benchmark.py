"""Benchmarks that print medians and ratios measured side by side in one run.

    python tools/benchmark.py nms                       # postprocess: nms / batched_nms
    python tools/benchmark.py data configs/shapes.yaml  # training input pipeline vs plain decoding
    python tools/benchmark.py eval                      # our evaluate path vs pycocotools alone
    python tools/benchmark.py train                     # training images/s and data-wait fraction
    python tools/benchmark.py detect                    # forward-only vs end-to-end video fps
    python tools/benchmark.py track                     # tracker cost, fps vs detect, IDF1/HOTA
    python tools/benchmark.py association --checkpoint a.pt  # tracker settings on many videos
    python tools/benchmark.py handover                  # memfd batch hand-over vs torch's (img/s)
    python tools/benchmark.py gpu                       # every GPU figure in one run (< 8 min)
    python tools/benchmark.py recipe                    # augmentation ablation, shapes + dense sets
    python tools/benchmark.py ladder                    # cost, speed, AP at equal wall-clock
    python tools/benchmark.py progressive --scale 0.8   # progressive vs plain at equal wall-clock
    python tools/benchmark.py resize                    # the one resize against its candidates
    python tools/benchmark.py slicing                   # tile merge vs NMS, batched tiles, merge AP
    python tools/benchmark.py int8 --model shapes=best.pt  # INT8 / fp32 ONNX Runtime speed, AP drop

Results and the exact commands are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import click

from benchmarks.association import association
from benchmarks.data import data
from benchmarks.detect import detect
from benchmarks.eval import eval_
from benchmarks.gpu import gpu
from benchmarks.handover import handover
from benchmarks.int8 import int8
from benchmarks.ladder import ladder
from benchmarks.nms import nms
from benchmarks.progressive import progressive
from benchmarks.recipe import recipe
from benchmarks.resize import resize
from benchmarks.slicing import slicing
from benchmarks.track import track
from benchmarks.train import train


@click.group()
def main() -> None:
    """Benchmarks of the package's hot paths."""


for command in (
    nms,
    data,
    eval_,
    train,
    detect,
    track,
    association,
    handover,
    recipe,
    ladder,
    progressive,
    resize,
    slicing,
    int8,
):
    main.add_command(command)
main.add_command(gpu)

if __name__ == "__main__":
    main()
