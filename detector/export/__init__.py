"""Export a checkpoint to ONNX or TorchScript and verify the file against it.

    from detector.export import ExportOptions, export_checkpoint, verify_export
    result = export_checkpoint("best.pt", ExportOptions(out="best.onnx"))
    report = verify_export("best.onnx", "best.pt")      # report.passed, report.table()

Nothing here imports onnx, onnxscript or onnxruntime until an export or a
verification runs; without them the error says what to install.
"""

from detector.export.exporter import ExportOptions, ExportResult, check_options, export_checkpoint
from detector.export.metadata import ExportedModelError, ExportMetadata
from detector.export.onnx_export import ExportError
from detector.export.verify import VerifyReport, verify_export

__all__ = [
    "ExportError",
    "ExportMetadata",
    "ExportOptions",
    "ExportResult",
    "ExportedModelError",
    "VerifyReport",
    "check_options",
    "export_checkpoint",
    "verify_export",
]
