"""Files of exported models: atomic writes (the checkpoints' own mechanism) and hashes.

    write_atomic("model.onnx", lambda handle: handle.write(data))

A crash, an exception or Ctrl-C at any point leaves either the previous file or
the new one, never a half-written one, and no temp file behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from detector.checkpoint import write_atomic

__all__ = ["file_sha256", "write_atomic"]


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the source checkpoint's hash in export metadata)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
