"""Dataset readers (VOC, COCO, YOLO txt), robust image loading, augmentation, synthetic data."""
