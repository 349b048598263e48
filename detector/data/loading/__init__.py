"""Dataset, seeded sampling, collation and the worker-to-main batch hand-over."""


# Here, not in dataset.py: training/failures.py recognises it without importing the
# dataset's albumentations and cv2 (tools/benchmark.py gpu runs on machines without them).
class UndecodableImagesError(RuntimeError):
    """Too many images in a row failed to decode: the dataset (or its disk) is broken."""
