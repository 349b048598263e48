"""Append class-aware ONNX NonMaxSuppression to an exported boxes/scores graph.

    model = onnx.load("dense.onnx")                       # outputs boxes [B, A, 4], scores [B, A, C]
    append_nms(model, score_threshold=0.25, iou_threshold=0.45, max_det=300)
    # outputs now: detections [B, max_det, 6] (x1 y1 x2 y2 score label), num_detections int64 [B]

Built with `onnx.helper` on the exported graph rather than traced from torch:
the ONNX `NonMaxSuppression` operator has no torch counterpart either exporter
maps to, and this way both exporters get the same tail. The layout is the one
TensorRT's and ONNX Runtime's users expect; rows past `num_detections` are zeros.

How the per-image top `max_det` is taken without a loop over images:
NonMaxSuppression returns `selected [N, 3]` (image, class, cell) triples for
all images; their scores are spread into a `[B, N]` matrix (-1 where a triple
belongs to another image), `max_det` columns of -1 are appended so TopK always
has enough, and one TopK per row gives each image's best `max_det`. Because NMS
keeps at most `max_det` boxes per class, that is exactly "NMS per class, then
the best `max_det` over classes", which is what `batched_nms` + `max_det` does.
ONNX keeps scores strictly above `score_threshold` (our decode keeps `>=`); only
a score exactly at the threshold can differ.
"""

from __future__ import annotations

from typing import Any

from detector.export.metadata import DENSE_OUTPUTS, NMS_OUTPUTS


def append_nms(model: Any, *, score_threshold: float, iou_threshold: float, max_det: int) -> None:
    """Replace the graph outputs `boxes`, `scores` by `detections`, `num_detections` (in place).

    Args:
        model: an `onnx.ModelProto` whose graph outputs are boxes [B, A, 4] and
            scores [B, A, C], float32.
        score_threshold: NMS drops scores <= this.
        iou_threshold: NMS IoU threshold (per image and class).
        max_det: detections per image (the second dimension of `detections`).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    names = [output.name for output in graph.output]
    if names != list(DENSE_OUTPUTS):
        raise ValueError(f"append_nms needs outputs {list(DENSE_OUTPUTS)}, got {names}")
    boxes, scores = DENSE_OUTPUTS

    def const(name: str, value: Any, dtype: Any) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), f"nms/{name}"))
        return f"nms/{name}"

    max_out = const("max_output_boxes_per_class", [max_det], np.int64)
    iou = const("iou_threshold", [iou_threshold], np.float32)
    score_thr = const("score_threshold", [score_threshold], np.float32)
    axis0, axis1 = const("axis0", [0], np.int64), const("axis1", [1], np.int64)
    col = {i: const(f"col{i}", i, np.int64) for i in range(3)}
    minus_one = const("minus_one", -1.0, np.float32)
    zero_f = const("zero", 0.0, np.float32)
    start, step = const("start", 0, np.int64), const("step", 1, np.int64)
    k = const("k", [max_det], np.int64)
    pad_rows = const("pad_boxes", np.zeros((max_det, 4)), np.float32)
    pad_labels = const("pad_labels", np.zeros((max_det,)), np.float32)

    n = helper.make_node
    nodes = [
        n("Transpose", [scores], ["nms/scores_bca"], perm=[0, 2, 1]),  # [B, C, A]
        n("NonMaxSuppression", [boxes, "nms/scores_bca", max_out, iou, score_thr], ["nms/selected"],
          center_point_box=0),  # [N, 3] (image, class, cell); corners in any order per axis
        n("Gather", ["nms/selected", col[0]], ["nms/image"], axis=1),  # [N]
        n("Gather", ["nms/selected", col[1]], ["nms/class"], axis=1),
        n("Gather", ["nms/selected", col[2]], ["nms/cell"], axis=1),
        n("GatherND", ["nms/scores_bca", "nms/selected"], ["nms/sel_scores"]),  # [N]
        n("Unsqueeze", ["nms/image", axis1], ["nms/image_col"]),
        n("Unsqueeze", ["nms/cell", axis1], ["nms/cell_col"]),
        n("Concat", ["nms/image_col", "nms/cell_col"], ["nms/image_cell"], axis=1),  # [N, 2]
        n("GatherND", [boxes, "nms/image_cell"], ["nms/sel_boxes"]),  # [N, 4]
        n("Cast", ["nms/class"], ["nms/sel_labels"], to=TensorProto.FLOAT),
        # [B, N] matrix of this image's scores (-1 elsewhere), then max_det columns of -1.
        n("Shape", [boxes], ["nms/boxes_shape"]),
        n("Gather", ["nms/boxes_shape", col[0]], ["nms/batch"], axis=0),
        n("Range", [start, "nms/batch", step], ["nms/images"]),  # [B]
        n("Unsqueeze", ["nms/images", axis1], ["nms/images_col"]),  # [B, 1]
        n("Unsqueeze", ["nms/image", axis0], ["nms/image_row"]),  # [1, N]
        n("Equal", ["nms/images_col", "nms/image_row"], ["nms/owner"]),  # [B, N]
        n("Unsqueeze", ["nms/sel_scores", axis0], ["nms/score_row"]),
        n("Where", ["nms/owner", "nms/score_row", minus_one], ["nms/dense"]),
        n("Unsqueeze", ["nms/batch", axis0], ["nms/batch_1d"]),
        n("Concat", ["nms/batch_1d", k], ["nms/pad_shape"], axis=0),  # [B, max_det]
        n("ConstantOfShape", ["nms/pad_shape"], ["nms/pad"],
          value=numpy_helper.from_array(np.array([-1.0], np.float32))),
        n("Concat", ["nms/dense", "nms/pad"], ["nms/dense_padded"], axis=1),  # [B, N + max_det]
        n("TopK", ["nms/dense_padded", k], ["nms/top_scores", "nms/top_index"], axis=1, largest=1, sorted=1),
        # Rows N.. of the padded tables are zeros: padding columns pick them.
        n("Concat", ["nms/sel_boxes", pad_rows], ["nms/boxes_padded"], axis=0),  # [N + max_det, 4]
        n("Concat", ["nms/sel_labels", pad_labels], ["nms/labels_padded"], axis=0),
        n("Gather", ["nms/boxes_padded", "nms/top_index"], ["nms/top_boxes"], axis=0),  # [B, max_det, 4]
        n("Gather", ["nms/labels_padded", "nms/top_index"], ["nms/top_labels"], axis=0),  # [B, max_det]
        n("Greater", ["nms/top_scores", const("half_neg", -0.5, np.float32)], ["nms/valid"]),
        n("Where", ["nms/valid", "nms/top_scores", zero_f], ["nms/out_scores"]),
        n("Unsqueeze", ["nms/out_scores", const("axis2", [2], np.int64)], ["nms/out_scores_col"]),
        n("Unsqueeze", ["nms/top_labels", const("axis2b", [2], np.int64)], ["nms/out_labels_col"]),
        n("Concat", ["nms/top_boxes", "nms/out_scores_col", "nms/out_labels_col"], [NMS_OUTPUTS[0]], axis=2),
        n("Cast", ["nms/valid"], ["nms/valid_i64"], to=TensorProto.INT64),
        n("ReduceSum", ["nms/valid_i64", axis1], [NMS_OUTPUTS[1]], keepdims=0),
    ]
    graph.node.extend(nodes)
    batch_dim = graph.output[0].type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else (batch_dim.dim_param or "batch")
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(NMS_OUTPUTS[0], TensorProto.FLOAT, [batch, max_det, 6]),
        helper.make_tensor_value_info(NMS_OUTPUTS[1], TensorProto.INT64, [batch]),
    ])
