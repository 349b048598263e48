"""Dataset readers: VOC XML, COCO JSON and YOLO txt -> `SampleRecord`s, with one box policy."""
