"""Append class-aware ONNX NonMaxSuppression to an exported boxes/scores graph.

    model = onnx.load("dense.onnx")  # outputs boxes [B, A, 4], scores [B, A, C]
    append_nms(model, score_threshold=0.25, iou_threshold=0.45, max_det=300)
    # outputs now: detections [B, max_det, 6] (x1 y1 x2 y2 score label), num_detections int64 [B]
    session.run(None, {"images": x, "score_threshold": np.array(0.1, np.float32)})  # optional

Built with `onnx.helper` on the exported graph rather than traced from torch:
the ONNX `NonMaxSuppression` operator has no torch counterpart either exporter
maps to, and this way both exporters get the same tail. The layout is the one
TensorRT's and ONNX Runtime's users expect; rows past `num_detections` are zeros.

The tail selects what `select_detections` (the PyTorch path) selects:
`class_mask` drops classes first, the `PRE_NMS_TOPK` best (cell, class) pairs
per image are the only candidates, a score is kept when >= `score_threshold`,
then NMS per image and class at `iou_threshold`, then the best `max_det`.
`score_threshold`, `iou_threshold`, `max_det` and `class_mask` are graph inputs
whose initializers hold the exported defaults (ONNX Runtime lists them among
`get_overridable_initializers`, not `get_inputs`), so a caller's thresholds
reach the graph. `max_det` can only lower the exported one (the output shape).

How the per-image top `max_det` is taken without a loop over images:
NonMaxSuppression returns `selected [N, 3]` (image, class, candidate) triples
for all images; their scores are spread into a `[B, N]` matrix (-1 where a
triple belongs to another image), `max_det` columns of -1 are appended so TopK
always has enough, and one TopK per row gives each image's best `max_det`.
Because NMS keeps at most `max_det` boxes per class, that is exactly "NMS per
class, then the best `max_det` over classes", which is what `batched_nms` +
`max_det` does.
"""

from __future__ import annotations

from typing import Any

from detector.export.metadata import DENSE_OUTPUTS, NMS_INPUTS, NMS_OUTPUTS

# Candidates per image entering NMS: select_detections' default `pre_nms_topk`.
PRE_NMS_TOPK = 1000


def append_nms(
    model: Any,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_det: int,
    num_classes: int | None = None,
    pre_nms_topk: int = PRE_NMS_TOPK,
) -> None:
    """Replace the graph outputs `boxes`, `scores` by `detections`, `num_detections` (in place).

    Args:
        model: an `onnx.ModelProto` whose graph outputs are boxes [B, A, 4] and
            scores [B, A, C], float32 (C known in the graph's output shape).
        score_threshold: default of the `score_threshold` input (float32 [], kept when >=).
        iou_threshold: default of the `iou_threshold` input (float32 []; per image and class).
        max_det: detections per image (the second dimension of `detections`), and the
            default of the `max_det` input (int64 []), which may only lower it.
        num_classes: C (default: from the scores output's shape, where the exporter fixed it).
        pre_nms_topk: candidates per image entering NMS.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    names = [output.name for output in graph.output]
    if names != list(DENSE_OUTPUTS):
        raise ValueError(f"append_nms needs outputs {list(DENSE_OUTPUTS)}, got {names}")
    boxes, scores = DENSE_OUTPUTS
    if num_classes is None:
        num_classes = graph.output[1].type.tensor_type.shape.dim[2].dim_value
    if num_classes < 1:
        raise ValueError("append_nms needs the number of classes in the scores output's shape")

    def const(name: str, value: Any, dtype: Any) -> str:
        graph.initializer.append(
            numpy_helper.from_array(np.asarray(value, dtype=dtype), f"nms/{name}")
        )
        return f"nms/{name}"

    def graph_input(name: str, value: Any, dtype: Any, elem_type: int, shape: list[int]) -> str:
        # An input with an initializer of the same name: its default, overridable at run time.
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        graph.input.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    score_thr, iou, max_det_in, class_mask = (
        graph_input(NMS_INPUTS[0], score_threshold, np.float32, TensorProto.FLOAT, []),
        graph_input(NMS_INPUTS[1], iou_threshold, np.float32, TensorProto.FLOAT, []),
        graph_input(NMS_INPUTS[2], max_det, np.int64, TensorProto.INT64, []),
        graph_input(NMS_INPUTS[3], np.ones(num_classes), bool, TensorProto.BOOL, [num_classes]),
    )
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
        # The pre-cut of select_detections: class filter, then the best pre_nms_topk
        # (cell, class) pairs of each image, then the score threshold (>=).
        n("Where", [class_mask, scores, minus_one], ["nms/class_scores"]),  # [B, A, C]
        n(
            "Reshape", ["nms/class_scores", const("flat_shape", [0, -1], np.int64)], ["nms/flat"]
        ),  # [B, A*C]
        n("Shape", ["nms/flat"], ["nms/flat_dims"]),
        n("Gather", ["nms/flat_dims", const("col1_1d", [1], np.int64)], ["nms/pairs"], axis=0),
        n("Min", ["nms/pairs", const("pre_nms_topk", [pre_nms_topk], np.int64)], ["nms/k_pre"]),
        n(
            "TopK",
            ["nms/flat", "nms/k_pre"],
            ["nms/pre_scores", "nms/pre_index"],
            axis=1,
            largest=1,
            sorted=1,
        ),  # [B, K]
        n("Div", ["nms/pre_index", const("classes", num_classes, np.int64)], ["nms/pre_cell"]),
        n("Mod", ["nms/pre_index", "nms/classes"], ["nms/pre_class"]),
        n("Unsqueeze", ["nms/pre_cell", const("axis2c", [2], np.int64)], ["nms/pre_cell_col"]),
        n("GatherND", [boxes, "nms/pre_cell_col"], ["nms/cand_boxes"], batch_dims=1),  # [B, K, 4]
        n("GreaterOrEqual", ["nms/pre_scores", score_thr], ["nms/above"]),
        n("Where", ["nms/above", "nms/pre_scores", minus_one], ["nms/cand_scores"]),  # [B, K]
        # [B, C, K]: each candidate scores for its own class only (-1, never kept, elsewhere).
        n("Unsqueeze", ["nms/pre_class", axis1], ["nms/pre_class_row"]),  # [B, 1, K]
        n("Range", [start, "nms/classes", step], ["nms/class_ids"]),
        n(
            "Unsqueeze", ["nms/class_ids", const("axes01", [0, 2], np.int64)], ["nms/class_col"]
        ),  # [1, C, 1]
        n("Equal", ["nms/pre_class_row", "nms/class_col"], ["nms/own_class"]),  # [B, C, K]
        n("Unsqueeze", ["nms/cand_scores", axis1], ["nms/cand_scores_row"]),
        n("Where", ["nms/own_class", "nms/cand_scores_row", minus_one], ["nms/scores_bck"]),
        n("Reshape", [max_det_in, const("one", [1], np.int64)], ["nms/max_det_1d"]),
        n("Reshape", [iou, "nms/one"], ["nms/iou_1d"]),
        # Score threshold -0.5: the -1 entries go, every candidate above the real threshold stays.
        n(
            "NonMaxSuppression",
            [
                "nms/cand_boxes",
                "nms/scores_bck",
                "nms/max_det_1d",
                "nms/iou_1d",
                const("keep_all", [-0.5], np.float32),
            ],
            ["nms/selected"],
            center_point_box=0,
        ),  # [N, 3] (image, class, candidate); corners in any order per axis
        n("Gather", ["nms/selected", col[0]], ["nms/image"], axis=1),  # [N]
        n("Gather", ["nms/selected", col[1]], ["nms/class"], axis=1),
        n("Gather", ["nms/selected", col[2]], ["nms/cell"], axis=1),
        n("GatherND", ["nms/scores_bck", "nms/selected"], ["nms/sel_scores"]),  # [N]
        n("Unsqueeze", ["nms/image", axis1], ["nms/image_col"]),
        n("Unsqueeze", ["nms/cell", axis1], ["nms/cell_col"]),
        n("Concat", ["nms/image_col", "nms/cell_col"], ["nms/image_cell"], axis=1),  # [N, 2]
        n("GatherND", ["nms/cand_boxes", "nms/image_cell"], ["nms/sel_boxes"]),  # [N, 4]
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
        n(
            "ConstantOfShape",
            ["nms/pad_shape"],
            ["nms/pad"],
            value=numpy_helper.from_array(np.array([-1.0], np.float32)),
        ),
        n("Concat", ["nms/dense", "nms/pad"], ["nms/dense_padded"], axis=1),  # [B, N + max_det]
        n(
            "TopK",
            ["nms/dense_padded", k],
            ["nms/top_scores", "nms/top_index"],
            axis=1,
            largest=1,
            sorted=1,
        ),
        # Rows N.. of the padded tables are zeros: padding columns pick them.
        n("Concat", ["nms/sel_boxes", pad_rows], ["nms/boxes_padded"], axis=0),  # [N + max_det, 4]
        n("Concat", ["nms/sel_labels", pad_labels], ["nms/labels_padded"], axis=0),
        n(
            "Gather", ["nms/boxes_padded", "nms/top_index"], ["nms/top_boxes"], axis=0
        ),  # [B, max_det, 4]
        n(
            "Gather", ["nms/labels_padded", "nms/top_index"], ["nms/top_labels"], axis=0
        ),  # [B, max_det]
        # Valid: a real detection, and among the first `max_det` input rows.
        n("Greater", ["nms/top_scores", const("half_neg", -0.5, np.float32)], ["nms/real"]),
        n("Range", [start, "nms/k_scalar", step], ["nms/ranks"]),
        n("Less", ["nms/ranks", max_det_in], ["nms/within"]),  # [max_det]
        n("And", ["nms/real", "nms/within"], ["nms/valid"]),  # [B, max_det]
        n("Unsqueeze", ["nms/valid", const("axis2v", [2], np.int64)], ["nms/valid_col"]),
        n("Where", ["nms/valid_col", "nms/top_boxes", zero_f], ["nms/out_boxes"]),
        n("Where", ["nms/valid", "nms/top_scores", zero_f], ["nms/out_scores"]),
        n("Where", ["nms/valid", "nms/top_labels", zero_f], ["nms/out_labels"]),
        n("Unsqueeze", ["nms/out_scores", const("axis2", [2], np.int64)], ["nms/out_scores_col"]),
        n("Unsqueeze", ["nms/out_labels", const("axis2b", [2], np.int64)], ["nms/out_labels_col"]),
        n(
            "Concat",
            ["nms/out_boxes", "nms/out_scores_col", "nms/out_labels_col"],
            [NMS_OUTPUTS[0]],
            axis=2,
        ),
        n("Cast", ["nms/valid"], ["nms/valid_i64"], to=TensorProto.INT64),
        n("ReduceSum", ["nms/valid_i64", axis1], [NMS_OUTPUTS[1]], keepdims=0),
    ]
    const("k_scalar", max_det, np.int64)
    graph.node.extend(nodes)
    batch_dim = graph.output[0].type.tensor_type.shape.dim[0]
    batch = (
        batch_dim.dim_value if batch_dim.HasField("dim_value") else (batch_dim.dim_param or "batch")
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(NMS_OUTPUTS[0], TensorProto.FLOAT, [batch, max_det, 6]),
            helper.make_tensor_value_info(NMS_OUTPUTS[1], TensorProto.INT64, [batch]),
        ]
    )
