"""Write a file atomically: either the previous file or the new one survives a crash, never half of one.

    from detector.training.atomic_write import write_atomic
    write_atomic("model.onnx", lambda handle: handle.write(data))

The one atomic-write mechanism of the package: checkpoints (`checkpoint.save_checkpoint`)
and exported models. The bytes go to a hidden temporary file beside the target
(`.NAME.<16 hex>.tmp`, same filesystem), are flushed and fsynced, `os.replace`
swaps it in and the folder entry is fsynced; the temp file is removed on any
error, and `remove_stale_temp_files` sweeps those a SIGKILL left behind.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# `.last.pt.<hex>.tmp`: a checkpoint's hidden temporary file (`write_atomic` of a `.pt`) before the rename.
_TEMP_NAME = re.compile(r"^\..+\.pt\.[0-9a-f]{16}\.tmp$")


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temp files a killed writer left (a SIGKILL cannot clean up after itself).

    Only names of our own pattern are touched; one process writes a run's weights/
    (rank 0), so no other writer's file in progress can match.
    """
    for candidate in directory.iterdir():
        if _TEMP_NAME.match(candidate.name):
            candidate.unlink(missing_ok=True)


def _open_temp_file(path: Path) -> tuple[int, Path]:
    """A new hidden file next to `path`, created with the umask's permissions.

    (tempfile.mkstemp would create it 0600, and the rename would keep that.)
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:  # 64 random bits: practically never
            continue


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(handle)` on a temp file beside `path`, fsync, `os.replace` it in, fsync the folder.

    The one atomic-write mechanism of the package (checkpoints, exported models):
    either the previous file or the new one survives a crash, never a half-written
    one; the temp file is removed on any error, KeyboardInterrupt included; the file
    gets the umask's permissions.

    Args:
        path: destination; its folder must exist.
        write: writes the whole content to the binary handle it is given.

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    fd, tmp_name = _open_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave the temp file.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)
    return path
