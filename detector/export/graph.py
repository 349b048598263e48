"""The module that gets exported: normalisation, network and grid decode in one graph.

    wrapper = DecodedDetector(model).eval()
    boxes, scores = wrapper(images)     # images float32 0..255 RGB [B, 3, H, W]
    # boxes [B, A, 4] xyxy input px, scores [B, A, C]: final, no grid left to decode

Users of exported detectors most often get wrong boxes from preprocessing skew
or from grids left undecoded; here both are inside the graph, so its outputs
are the same tensors `DenseOutput` holds on the PyTorch path
(`detector.model.decode.decode_boxes_scores`, the same function).
"""

from __future__ import annotations

import torch
from torch import nn

from detector.model.decode import decode_boxes_scores


class DecodedDetector(nn.Module):
    """`YOLODetector` + `decode_boxes_scores`, with fp32 input and outputs.

    Args:
        model: an eval-mode `YOLODetector` (its buffers hold mean and std).
        half: run the network in float16 (weights converted; the decode stays
            fp32 because box corners of large inputs need the precision).
    """

    def __init__(self, model: nn.Module, *, half: bool = False) -> None:
        super().__init__()
        self.model = model.half() if half else model.float()
        self.half = half
        self.strides = tuple(model.strides)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images float32 [B, 3, H, W] RGB 0..255 -> (boxes [B, A, 4], scores [B, A, C]) float32."""
        raw = self.model(images.half() if self.half else images)
        return decode_boxes_scores(
            raw.float(), strides=self.strides, input_size=tuple(images.shape[-2:])
        )
