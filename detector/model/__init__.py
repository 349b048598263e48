"""ResNet backbone, grid YOLO head, loss and their builders.

Usage:

    from detector.model import build_model, build_loss
    model = build_model(cfg.model, num_classes)
"""

from detector.model.build import build_loss, build_model
from detector.model.loss import YOLOLoss
from detector.model.yolo import YOLODetector

__all__ = ["YOLODetector", "YOLOLoss", "build_loss", "build_model"]
