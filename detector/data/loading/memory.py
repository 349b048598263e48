"""Process memory tuning for DataLoader workers (Linux/glibc; elsewhere these do nothing).

Usage:

    from detector.data.loading.memory import keep_freed_memory, prefault
    keep_freed_memory()   # in a worker's init
    prefault(array)       # map a fresh buffer's pages in one call
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_MADV_POPULATE_WRITE, _PAGE_SIZE = 23, 4096  # linux/mman.h


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None  # musl or another libc: skip the glibc-specific tuning


LIBC = _load_libc()  # glibc with typed mmap/munmap/madvise, or None
if LIBC is not None:
    LIBC.mmap.restype = ctypes.c_void_p
    LIBC.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def prefault(buffer: torch.Tensor | np.ndarray) -> None:
    """Map all pages of a fresh buffer in one call (Linux 5.14+ MADV_POPULATE_WRITE).

    Writing a fresh shared-memory batch otherwise takes one page fault per 4 KiB,
    ~0.2 ms per 448 px image on virtual machines; any failure just skips this.
    """
    if LIBC is None:
        return
    if isinstance(buffer, torch.Tensor):
        address, nbytes = buffer.data_ptr(), buffer.numel() * buffer.element_size()
    else:
        address, nbytes = buffer.ctypes.data, buffer.nbytes
    start = address & ~(_PAGE_SIZE - 1)
    LIBC.madvise(start, address + nbytes - start, _MADV_POPULATE_WRITE)


def keep_freed_memory() -> None:
    """Make glibc keep freed image buffers for reuse instead of returning them to the OS.

    A worker allocates and frees several ~0.5 MB arrays per image; with glibc's
    defaults these are mmapped/trimmed each time and every reuse page-faults afresh,
    which cost ~25% of a worker's time in our benchmark (docs/benchmarks.md). Only
    worker processes are tuned; elsewhere (non-glibc) this does nothing.
    """
    if LIBC is not None and hasattr(LIBC, "mallopt"):
        LIBC.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        LIBC.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
