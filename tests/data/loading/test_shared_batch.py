"""Pooled shared-memory batches: correct after the trip,
reused only once freed, never overwritten while held."""

from __future__ import annotations

import gc
import os
import pickle
import time
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from detector.data.loading import shared_batch
from detector.data.loading.collate import collate_batch
from detector.data.loading.dataset import init_worker

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("os"), "memfd_create"), reason="needs memfd (Linux)"
)

SIZE = 24


def _sample(index: int) -> dict[str, Any]:
    """An image whose every pixel encodes its index (per channel), and index-dependent targets."""
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = index % 256, (3 * index) % 256, (7 * index) % 256
    count = index % 3
    boxes = np.arange(count * 4, dtype=np.float32).reshape(count, 4) + index
    return {
        "image": image,
        "boxes": boxes,
        "labels": np.full(count, index, np.int64),
        "ignore": np.arange(count) % 2 == 1,
        "meta": {"image_id": index},
    }


def _expected(indices: list[int]) -> dict[str, Any]:
    return collate_batch([_sample(i) for i in indices])  # in-process: plain tensors


def _assert_batch_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert type(got) is dict
    assert torch.equal(got["images"], want["images"])
    assert len(got["targets"]) == len(want["targets"])
    for got_target, want_target in zip(got["targets"], want["targets"], strict=True):
        for key in ("boxes", "labels", "ignore"):
            assert got_target[key].dtype == want_target[key].dtype
            assert torch.equal(got_target[key], want_target[key])
    assert got["metas"] == want["metas"]


def _send(batch: dict[str, Any]) -> dict[str, Any]:
    """What a DataLoader queue does: pickle with ForkingPickler (fds by DupFd), unpickle."""
    return pickle.loads(ForkingPickler.dumps(batch))


def _worker_batch(indices: list[int]) -> shared_batch.WorkerBatch:
    samples = [_sample(i) for i in indices]
    batch = shared_batch.worker_batch((3, SIZE, SIZE), samples, [s["meta"] for s in samples])
    assert batch is not None
    batch["images"].copy_(_expected(indices)["images"])
    return batch


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_batch, "_pools", {})


def test_round_trip_gives_a_plain_batch_with_the_same_values() -> None:
    indices = [0, 1, 2, 5]
    _assert_batch_equal(_send(_worker_batch(indices)), _expected(indices))


def test_segment_is_reused_only_after_the_receiver_frees_every_view() -> None:
    first = _worker_batch([1, 2])
    segment = first._segment
    received = _send(first)
    view = received["images"][1]  # a view keeps the mapping alive on its own
    del first, received
    gc.collect()
    assert not segment.free
    second = _worker_batch([3, 4])
    assert second._segment is not segment  # busy: another segment is used
    assert torch.equal(view, _expected([1, 2])["images"][1])  # and nothing overwrote it
    del view
    gc.collect()
    assert segment.free
    third = _worker_batch([5, 6])
    assert third._segment is segment  # freed: reused, no new allocation
    _assert_batch_equal(_send(third), _expected([5, 6]))


def test_held_batches_are_never_overwritten_and_the_pool_stays_bounded() -> None:
    received = [_send(_worker_batch([i, i + 1])) for i in range(0, 3 * shared_batch.POOL_SIZE, 2)]
    assert len(shared_batch._pool().segments) == shared_batch.POOL_SIZE  # extra ones were one-off
    for start, batch in zip(range(0, 3 * shared_batch.POOL_SIZE, 2), received, strict=True):
        _assert_batch_equal(batch, _expected([start, start + 1]))
    del received, batch
    gc.collect()
    assert all(segment.free for segment in shared_batch._pool().segments)


def test_a_larger_batch_gets_a_large_enough_segment() -> None:
    _send(_worker_batch([0]))
    gc.collect()
    indices = list(range(9))
    _assert_batch_equal(_send(_worker_batch(indices)), _expected(indices))


def test_batches_of_changing_sides_multi_scale_stay_correct_and_bounded() -> None:
    """Multi-scale: every batch may have another S;
    a too-small free segment is replaced, never overrun."""
    received = []
    for step, side in enumerate([16, 48, 32, 48, 16, 64, 32, 64]):
        samples = [
            dict(_sample(step * 2 + k), image=np.full((side, side, 3), step * 2 + k, np.uint8))
            for k in range(2)
        ]
        batch = shared_batch.worker_batch((3, side, side), samples, [s["meta"] for s in samples])
        assert batch is not None
        want = collate_batch(samples)
        batch["images"].copy_(want["images"])
        got = _send(batch)
        del batch
        _assert_batch_equal(got, want)
        if step % 2:
            received.append((got, want))  # hold every other batch, as a user might
        del got
        gc.collect()
        assert len(shared_batch._pool().segments) <= shared_batch.POOL_SIZE
    for got, want in received:  # held batches were never overwritten by later, larger ones
        _assert_batch_equal(got, want)


def test_replaced_images_are_pickled_as_a_plain_dict() -> None:
    batch = _worker_batch([0, 1])
    segment = batch._segment
    batch["images"] = batch["images"].float()
    received = _send(batch)
    assert type(received) is dict and received["images"].dtype == torch.float32
    del batch
    gc.collect()
    assert segment.free


class _Samples(Dataset):
    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _sample(index)


@pytest.mark.parametrize("persistent", [False, True])
def test_dataloader_worker_batches_held_by_the_user_stay_intact(persistent: bool) -> None:
    """list(loader) holds 10 batches at once, more than a worker's pool: all must stay correct."""
    loader = DataLoader(
        _Samples(),
        batch_size=4,
        num_workers=1,
        collate_fn=collate_batch,
        worker_init_fn=init_worker,
        persistent_workers=persistent,
    )
    for _ in range(2):  # a second epoch reuses the persistent worker's pool
        batches = list(loader)
        assert len(batches) == 10
        for start, batch in zip(range(0, 40, 4), batches, strict=True):
            _assert_batch_equal(batch, _expected(list(range(start, start + 4))))


@pytest.fixture
def lagging_resource_sharer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fd-passing thread closes its duplicate of each sent fd late, as on a loaded machine.

    `_send` passes the segment's fd through multiprocessing's resource sharer: a
    thread that dups the fd, hands it over a socket, then closes its dup and the
    socket. The receiver returns as soon as it has the fd, so on a busy 2-core
    machine the thread's closes can lag: the full suite once counted 11 new fds
    (8 pooled + the sharer's listener + one in-flight dup and its socket).
    """
    from multiprocessing import resource_sharer

    sharer = resource_sharer._resource_sharer
    register = sharer.register

    def register_slow_close(send: Any, close: Any) -> Any:
        def slow_close() -> None:
            time.sleep(0.05)
            close()

        return register(send, slow_close)

    monkeypatch.setattr(sharer, "register", register_slow_close)


@pytest.mark.parametrize("lagging", [False, True])
def test_held_batches_hold_no_file_descriptors(
    lagging: bool, request: pytest.FixtureRequest
) -> None:
    """Users may keep thousands of batches; each must not pin an fd (ulimit is often 1024)."""
    if lagging:
        request.getfixturevalue("lagging_resource_sharer")
    from multiprocessing import resource_sharer

    before = _batch_fds()
    held = [_send(_worker_batch([i])) for i in range(50)]
    # Join the sharer's thread: every dup it made is closed once it has stopped.
    resource_sharer.stop(timeout=30)
    # Only the sending side's pool holds descriptors (its fd and Python mmap's duplicate).
    assert _batch_fds() - before <= 2 * shared_batch.POOL_SIZE
    del held


def _batch_fds() -> int:
    """How many batch-segment descriptors this process holds (other tests' threads open others)."""
    found = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:detector-batch"):
                found += 1
        except OSError:  # closed between listdir and readlink
            pass
    return found


def test_a_batch_dropped_without_sending_frees_its_segment() -> None:
    batch = _worker_batch([0, 1])
    segment = batch._segment
    assert not segment.free
    del batch
    gc.collect()
    assert segment.free


def test_a_forked_child_freeing_its_copy_does_not_free_the_parents_batch() -> None:
    import os

    batch = _worker_batch([2, 3])
    segment = batch._segment
    received = _send(batch)
    del batch
    pid = os.fork()
    if pid == 0:  # child: drop the inherited batch and collect it
        del received
        gc.collect()
        os._exit(0)
    os.waitpid(pid, 0)
    assert not segment.free
    _assert_batch_equal(received, _expected([2, 3]))
    del received
    gc.collect()
    assert segment.free


def test_collate_in_a_worker_falls_back_to_torch_sharing_when_memfd_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from detector.data.loading import collate

    def refuse(capacity: int) -> None:
        raise PermissionError(1, "memfd_create blocked by seccomp")

    monkeypatch.setattr(shared_batch, "_Segment", refuse)
    monkeypatch.setattr(collate, "get_worker_info", lambda: object())  # as inside a worker
    batch = collate.collate_batch([_sample(i) for i in (0, 1, 2)])
    assert type(batch) is dict and batch["images"].is_shared()
    _assert_batch_equal(_send(batch), _expected([0, 1, 2]))
