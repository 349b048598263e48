"""Hand training batches from DataLoader workers to the main process through reused shared memory.

    from detector.data.loading.shared_batch import worker_batch
    batch = worker_batch((3, S, S), samples, metas)  # inside a worker's collate_fn
    batch["images"][:] = ...   # fill; pickling sends the images by file descriptor

Why: torch gives every batch a fresh shared-memory segment. On the virtual machines
we train on, allocating and page-faulting a fresh 16 x 448 px batch (9.6 MB) costs
~6 ms of the worker's time (~0.4 ms per image, a third of decoding a VOC JPEG), and
every small target tensor costs its own segment and file descriptor on top.

How: each worker keeps a small pool of memfd segments whose pages stay mapped, so
refilling one costs no page faults. A segment's first byte is its busy flag: the
worker sets it when it fills the segment, and the main process clears it when the
last tensor viewing the images has been freed (a finalizer on the main side's
mapping), so a batch the user still holds is never overwritten. When every pooled
segment is busy (a user keeping many batches), a one-off segment is used and freed
with its batch, so the pool never waits and never grows past `POOL_SIZE`.
Targets, being small, travel by value as three numpy arrays.

memfd memory counts against the container's memory limit only, not against the
size of /dev/shm (64 MB by default in Docker, where torch's own segments run out).
Without memfd (non-Linux, or a sandbox that refuses it), `worker_batch` returns None
and the caller falls back to torch's own sharing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from multiprocessing.reduction import DupFd
from typing import Any

import numpy as np
import torch

from detector.data.loading.memory import LIBC as _LIBC
from detector.data.loading.memory import prefault

HEADER_BYTES = 64  # busy flag in byte 0; image data starts 64-byte aligned after it
POOL_SIZE = 4  # per worker: the prefetched batches (2) + the one in use + one spare
_BUSY, _FREE = 1, 0
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Segment:
    """One memfd shared-memory segment, mapped in this process, with a busy flag."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.fd = os.memfd_create("detector-batch", os.MFD_CLOEXEC)
        weakref.finalize(self, os.close, self.fd)
        os.ftruncate(self.fd, HEADER_BYTES + capacity)
        self.map = mmap.mmap(self.fd, HEADER_BYTES + capacity)
        self.flag = np.frombuffer(self.map, np.uint8, count=1)
        self.data = np.frombuffer(self.map, np.uint8, count=capacity, offset=HEADER_BYTES)
        prefault(self.data)  # once per segment; reuse then costs no page faults

    @property
    def free(self) -> bool:
        return int(self.flag[0]) == _FREE


class _SegmentPool:
    """A worker's segments; `acquire` marks one busy, making a new one when needed."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        self.size = size
        self.segments: list[_Segment] = []

    def acquire(self, nbytes: int) -> _Segment:
        for segment in self.segments:
            if segment.free and segment.capacity >= nbytes:
                segment.flag[0] = _BUSY
                return segment
        segment = _Segment(nbytes)
        segment.flag[0] = _BUSY
        if len(self.segments) < self.size:
            self.segments.append(segment)
        else:
            # All pooled segments are held or too small: replace a free too-small
            # one (a larger batch size), else send a one-off segment.
            for index, pooled in enumerate(self.segments):
                if pooled.free:
                    self.segments[index] = segment
                    break
        return segment


_pools: dict[int, _SegmentPool] = {}  # by pid: a forked child never reuses its parent's


def _pool() -> _SegmentPool:
    return _pools.setdefault(os.getpid(), _SegmentPool())


class WorkerBatch(dict):
    """A collated batch built inside a worker; a normal dict there, a plain dict after pickling.

    Pickling sends `images` as a file descriptor of its segment (no copy) and the
    targets as three flat numpy arrays; see the module docstring.
    """

    def __init__(self, data: dict[str, Any], segment: _Segment, packed_targets: tuple) -> None:
        super().__init__(data)
        self._segment = segment
        self._images = data["images"]
        self._packed_targets = packed_targets
        self._sent = False

    def __del__(self) -> None:
        if not self._sent:  # never pickled (dropped inside the worker): nobody else can free it
            self._segment.flag[0] = _FREE

    def __reduce__(self) -> tuple:
        if self.get("images") is not self._images:  # replaced by a user's collate wrapper
            return (dict, (dict(self),))  # the segment is freed with this object
        self._sent = True
        rest = {key: value for key, value in self.items() if key not in ("images", "targets")}
        return (
            _rebuild_batch,
            (
                DupFd(self._segment.fd),
                HEADER_BYTES + self._segment.capacity,
                tuple(self._images.shape),
                self._packed_targets,
                rest,
            ),
        )


class _ReceivedImages:
    """Main side: the images of one batch, mapped from a worker's segment (no copy).

    numpy views it through `__array_interface__` and keeps it alive as their base,
    so it is freed with the last tensor that views the images; freeing clears the
    segment's busy flag and unmaps it. It maps with libc directly because Python's
    mmap keeps a duplicate file descriptor open per mapping, which would run a user
    holding a thousand batches out of descriptors.
    """

    def __init__(self, fd: int, length: int, shape: tuple[int, ...]) -> None:
        address = _LIBC.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"cannot map a worker's batch ({length} bytes)")
        self._address, self._length = address, length
        self._pid = os.getpid()  # a forked child inherits the mapping but must not free the segment
        # Held here: __del__ may run during interpreter shutdown, after module globals are gone.
        self._getpid, self._memset, self._munmap = os.getpid, ctypes.memset, _LIBC.munmap
        self.__array_interface__ = {
            "shape": shape,
            "typestr": "|u1",
            "version": 3,
            "data": (address + HEADER_BYTES, False),
        }

    def __del__(self) -> None:
        if self._getpid() == self._pid:
            self._memset(self._address, 0, 1)  # _FREE: hand the segment back to its worker
        self._munmap(self._address, self._length)


def _rebuild_batch(
    df: Any, length: int, shape: tuple[int, ...], packed_targets: tuple, rest: dict[str, Any]
) -> dict[str, Any]:
    """Main side of `WorkerBatch.__reduce__`: map the images, unpack the targets."""
    fd = df.detach()
    try:
        received = _ReceivedImages(fd, length, shape)
    finally:
        os.close(fd)  # the mapping stays valid without it
    return {
        "images": torch.from_numpy(np.asarray(received)),
        "targets": unpack_targets(*packed_targets),
        **rest,
    }


def pack_targets(
    samples: list[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Concatenate the samples' boxes/labels/ignore into three arrays, with per-sample counts."""
    counts = [len(sample["labels"]) for sample in samples]
    boxes = np.concatenate([np.asarray(s["boxes"], np.float32).reshape(-1, 4) for s in samples])
    labels = np.concatenate([np.asarray(s["labels"], np.int64).reshape(-1) for s in samples])
    ignore = np.concatenate([np.asarray(s["ignore"], bool).reshape(-1) for s in samples])
    return boxes, labels, ignore, counts


def unpack_targets(
    boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray, counts: list[int]
) -> list[dict[str, torch.Tensor]]:
    """Per-sample target dicts whose tensors are views of the three arrays."""
    return [
        {"boxes": b, "labels": lab, "ignore": ign}
        for b, lab, ign in zip(
            torch.from_numpy(boxes).split(counts),
            torch.from_numpy(labels).split(counts),
            torch.from_numpy(ignore).split(counts),
            strict=True,
        )
    ]


def worker_batch(
    image_shape: tuple[int, int, int], samples: list[dict[str, Any]], metas: list[Any]
) -> WorkerBatch | None:
    """A batch for `samples` whose uninitialised uint8 images [B, *image_shape]
    live in a pooled segment.

    The caller fills `batch["images"]`. Returns None where memfd is unavailable (the
    caller then uses torch's own sharing).
    """
    if _LIBC is None or not hasattr(os, "memfd_create"):
        return None
    shape = (len(samples), *image_shape)
    numel = int(np.prod(shape))
    try:
        segment = _pool().acquire(numel)
    except OSError:  # memfd_create refused (seccomp) or out of descriptors: torch's path
        return None
    images = torch.from_numpy(segment.data[:numel].reshape(shape))
    packed = pack_targets(samples)
    return WorkerBatch(
        {"images": images, "targets": unpack_targets(*packed), "metas": metas}, segment, packed
    )
