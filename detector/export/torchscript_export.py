"""Export a `DecodedDetector` to TorchScript (torch.jit.trace), metadata as an extra file.

    write_torchscript(wrapper, "model.torchscript", metadata=meta)
    module = torch.jit.load("model.torchscript", _extra_files={"detector.json": ""})

The traced module takes what the ONNX graph takes (float32 RGB 0..255
[B, 3, H, W]) and returns the same (boxes [B, A, 4], scores [B, A, C]); the
grid is computed from the traced input shape, so other batch sizes and sizes
that are multiples of 32 work too. NMS stays outside (`--nms` is ONNX only).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from detector.data.letterbox import PAD_VALUE
from detector.export.files import write_atomic
from detector.export.metadata import TORCHSCRIPT_EXTRA_FILE, ExportMetadata


def write_torchscript(
    wrapper: torch.nn.Module, out: str | Path, *, metadata: ExportMetadata
) -> Path:
    """Trace `wrapper` at the metadata's batch and size and save it to `out` atomically."""
    size = metadata.image_size
    device = next(wrapper.parameters()).device
    example = torch.full((metadata.batch, 3, size, size), float(PAD_VALUE), device=device)
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about our shape checks; they hold for any multiple of 32.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    buffer = io.BytesIO()
    extra = {TORCHSCRIPT_EXTRA_FILE: json.dumps(metadata.to_props())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, buffer, _extra_files=extra)
    data = buffer.getvalue()
    return write_atomic(out, lambda handle: handle.write(data))
