"""Evaluation: COCO format and evaluator, VOC metric, plots, prediction over a dataset."""
