"""ResNet backbone, grid YOLO head, loss and their builders."""
