"""Mempool: construction, get/put, ownership checks, cleanup, numpy and fork interop."""
import gc
import os
import queue
import re
import signal
import struct
import time

import pytest

import pyshm
from pyshm import (
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_SP_PUT,
    EmptyError,
    Mempool,
    MempoolError,
    Ring,
    ShareMem,
    ShareMemError,
    get_shm,
    init_shm,
)

from conftest import fork_child, run_in_child, wait_child

import numpy as np


def counts(pool):
    return pool.used_count, pool.free_count


# --- construction ---------------------------------------------------------------------


@pytest.mark.parametrize("count,elt_size", [(1, 1), (1, 4), (3, 7), (4, 64), (5, 65), (16, 1000), (1000, 8)])
def test_geometry(shm, count, elt_size):
    pool = Mempool(count, elt_size, shm=shm)
    assert pool.count == count
    assert pool.max_count == count
    assert pool.elt_size == elt_size
    assert pool.flags == 0
    assert pool.used_count == 0
    assert pool.free_count == count
    assert pool.closed is False
    bufs = [pool.get() for _ in range(count)]
    for b in bufs:
        assert len(b) == elt_size
    # blocks do not overlap: stamp every byte of each, then read all back
    for i, b in enumerate(bufs):
        b[:] = bytes([i % 251]) * elt_size
    for i, b in enumerate(bufs):
        assert bytes(b) == bytes([i % 251]) * elt_size
    assert counts(pool) == (count, 0)
    for b in bufs:
        pool.put(b)
    assert counts(pool) == (0, count)


def test_positional_and_keyword_arguments(shm):
    a = Mempool(2, 8, 0, shm)
    b = Mempool(count=2, elt_size=8, flags=MEMPOOL_F_SP_PUT, shm=shm)
    assert (a.count, a.elt_size, a.flags) == (2, 8, 0)
    assert (b.count, b.elt_size, b.flags) == (2, 8, MEMPOOL_F_SP_PUT)


@pytest.mark.parametrize("flags", [0, MEMPOOL_F_SP_PUT, MEMPOOL_F_SC_GET, MEMPOOL_F_SP_PUT | MEMPOOL_F_SC_GET])
def test_flags(shm, flags):
    pool = Mempool(4, 8, flags, shm=shm)
    assert pool.flags == flags
    bufs = [pool.get() for _ in range(4)]
    with pytest.raises(EmptyError):
        pool.get()
    for b in bufs:
        pool.put(b)
    assert pool.free_count == 4


def test_unknown_flags_value_error(shm):
    with pytest.raises(ValueError):
        Mempool(4, 8, 0x100, shm=shm)
    with pytest.raises(ValueError):
        Mempool(4, 8, -1, shm=shm)
    with pytest.raises(TypeError):
        Mempool(4, 8, 1.0, shm=shm)


@pytest.mark.parametrize("count,elt_size", [(0, 4), (4, 0), (-1, 4), (4, -1), (0, 0)])
def test_bad_geometry_value_error(shm, count, elt_size):
    with pytest.raises(ValueError):
        Mempool(count, elt_size, shm=shm)


@pytest.mark.parametrize("count,elt_size", [(4.0, 4), (4, 4.0), ("4", 4), (4, "4"), (True, 4), (4, True), (None, 4)])
def test_non_int_geometry_type_error(shm, count, elt_size):
    with pytest.raises(TypeError):
        Mempool(count, elt_size, shm=shm)


def test_shm_must_be_sharemem():
    with pytest.raises(TypeError):
        Mempool(4, 4, shm=bytearray(1 << 16))


def test_own_region_when_no_default():
    # (the autouse fixture guarantees the pytest process has no default region)
    pool = Mempool(8, 100)
    assert pool.shm is not None
    assert pool.shm.size >= 8 * 100
    bufs = [pool.get() for _ in range(8)]
    for b in bufs:
        assert len(b) == 100
    with pytest.raises(EmptyError):
        pool.get()
    for b in bufs:
        pool.put(b)
    # still no default region
    with pytest.raises(ShareMemError):
        get_shm()


def test_own_region_is_sized_to_fit():
    pool = Mempool(100, 48)
    region = pool.shm
    # big enough for the pool (all blocks usable) ...
    bufs = [pool.get() for _ in range(100)]
    for i, b in enumerate(bufs):
        b[:] = bytes([i]) * 48
    for i, b in enumerate(bufs):
        assert bytes(b) == bytes([i]) * 48
    for b in bufs:
        pool.put(b)
    # ... and no bigger: it is not a default-sized region, and a second pool does not fit
    assert region.size < 100 * 48 + 64 * 1024
    with pytest.raises(ValueError):
        Mempool(10, 48, shm=region)


def test_own_regions_are_distinct():
    a = Mempool(2, 8)
    b = Mempool(2, 8)
    assert a.shm is not b.shm
    buf = a.get()
    with pytest.raises(ValueError):
        b.put(buf)
    a.put(buf)


def test_default_region_used_when_initialised():
    def child():
        shm = init_shm(1 << 20)
        pool = Mempool(4, 16)
        assert pool.shm is shm
        other = Mempool(4, 16, shm=None)
        assert other.shm is shm

    run_in_child(child)


def needed_from(message):
    m = re.search(r"(\d+) bytes", message)
    assert m, f"message does not say how many bytes are needed: {message!r}"
    assert "need" in message, f"message does not say how many bytes are needed: {message!r}"
    return int(m.group(1))


def free_from(message):
    m = re.search(r"has (\d+) of (\d+) bytes", message)
    assert m, f"message does not say how much room is left: {message!r}"
    return int(m.group(1)), int(m.group(2))


def test_too_little_room_message_says_bytes_needed():
    shm = ShareMem(4096)
    with pytest.raises(ValueError) as info:
        Mempool(1000, 64, shm=shm)
    needed = needed_from(str(info.value))
    assert needed >= 1000 * 64
    free, total = free_from(str(info.value))
    assert total == 4096
    overhead = total - free
    # the number is truthful: a region with exactly `needed` bytes free fits, one byte less does not
    exact = ShareMem(needed + overhead)
    pool = Mempool(1000, 64, shm=exact)
    assert pool.free_count == 1000
    short = ShareMem(needed + overhead - 1)
    with pytest.raises(ValueError) as info2:
        Mempool(1000, 64, shm=short)
    assert needed_from(str(info2.value)) == needed
    for r in (shm, short):
        r.cleanup()
    pool.cleanup()
    exact.cleanup()


def test_too_little_room_in_partly_used_region():
    shm = ShareMem(1 << 13)
    first = Mempool(8, 512, shm=shm)
    with pytest.raises(ValueError) as info:
        Mempool(8, 512, shm=shm)
    needed = needed_from(str(info.value))
    assert needed >= 8 * 512
    free, total = free_from(str(info.value))
    assert free < needed
    # the failed carve took nothing: a pool that fits in `free` still fits
    small = Mempool(1, 1, shm=shm)
    assert small.free_count == 1
    assert first.free_count == 8
    shm.cleanup()


def test_too_little_room_tiny_region():
    with pytest.raises(ValueError, match="4096"):
        ShareMem(1)  # could hold nothing
    shm = ShareMem(4096)
    with pytest.raises(ValueError) as info:
        Mempool(200, 64, shm=shm)
    assert needed_from(str(info.value)) > 4096
    shm.cleanup()


# --- get -----------------------------------------------------------------------------


def test_get_returns_writable_byte_view(shm):
    pool = Mempool(2, 24, shm=shm)
    buf = pool.get()
    assert isinstance(buf, memoryview)
    assert len(buf) == 24
    assert buf.nbytes == 24
    assert buf.format == "B"
    assert buf.itemsize == 1
    assert buf.ndim == 1
    assert buf.shape == (24,)
    assert buf.c_contiguous
    assert buf.contiguous
    assert buf.readonly is False
    buf[0] = 255
    buf[-1] = 1
    struct.pack_into("=q", buf, 8, -12345)
    assert buf[0] == 255 and buf[23] == 1
    assert struct.unpack_from("=q", buf, 8) == (-12345,)
    with pytest.raises(IndexError):
        buf[24]
    pool.put(buf)


def test_fresh_blocks_are_zeroed(shm):
    pool = Mempool(4, 40, shm=shm)
    bufs = [pool.get() for _ in range(4)]
    for b in bufs:
        assert bytes(b) == bytes(40)
    for b in bufs:
        pool.put(b)


def test_empty_raises_empty_error(shm):
    pool = Mempool(2, 4, shm=shm)
    a, b = pool.get(), pool.get()
    with pytest.raises(EmptyError) as info:
        pool.get()
    assert isinstance(info.value, queue.Empty)
    assert isinstance(info.value, MempoolError)
    assert isinstance(info.value, pyshm.PyshmError)
    with pytest.raises(queue.Empty):
        pool.get()
    assert counts(pool) == (2, 0)
    pool.put(a)
    c = pool.get()
    pool.put(b)
    pool.put(c)
    assert counts(pool) == (0, 2)


def test_fifo_order(shm):
    pool = Mempool(4, 8, shm=shm)
    a, b, c, d = (pool.get() for _ in range(4))
    for mark, v in zip(b"ABCD", (a, b, c, d)):
        v[0] = mark
    pool.put(c)
    pool.put(a)
    pool.put(d)
    pool.put(b)
    order = []
    got = []
    for _ in range(4):
        v = pool.get()
        order.append(chr(v[0]))
        got.append(v)
    assert order == ["C", "A", "D", "B"]
    # a put block goes to the back of the queue
    pool.put(got[1])  # "A"
    pool.put(got[0])  # "C"
    x = pool.get()
    assert chr(x[0]) == "A"
    pool.put(x)
    for v in got[2:]:
        pool.put(v)
    order = []
    for _ in range(4):
        v = pool.get()
        order.append(chr(v[0]))
        pool.put(v)
    assert order == ["C", "A", "D", "B"]


def test_initial_fifo_cycles_through_all_blocks(shm):
    # get/put one at a time: each put goes to the back, so all blocks come round in turn
    pool = Mempool(3, 4, shm=shm)
    for i in range(3):
        v = pool.get()
        assert bytes(v) == bytes(4)
        v[0] = i + 1
        pool.put(v)
    for i in range(6):
        v = pool.get()
        assert v[0] == i % 3 + 1
        pool.put(v)


# --- put: accepted views ---------------------------------------------------------------


def test_put_releases_view(shm):
    pool = Mempool(2, 8, shm=shm)
    buf = pool.get()
    pool.put(buf)
    with pytest.raises(ValueError):
        buf[0]
    with pytest.raises(ValueError):
        bytes(buf)
    with pytest.raises(ValueError):
        buf[0] = 1
    with pytest.raises(ValueError):
        len(buf)
    assert counts(pool) == (0, 2)


def test_put_returns_none(shm):
    pool = Mempool(1, 8, shm=shm)
    assert pool.put(pool.get()) is None


def test_used_and_free_counts_track_get_put(shm):
    pool = Mempool(5, 8, shm=shm)
    held = []
    for i in range(5):
        assert counts(pool) == (i, 5 - i)
        held.append(pool.get())
    assert counts(pool) == (5, 0)
    for i in range(5):
        pool.put(held.pop())
        assert counts(pool) == (4 - i, i + 1)


def test_put_view_from_ring_dequeue(shm):
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(2, shm=shm)
    buf = pool.get()
    buf[:] = b"ringring"
    ring.enqueue(buf)
    assert pool.used_count == 2 - pool.free_count == 1
    out = ring.dequeue()
    assert bytes(out) == b"ringring"
    pool.put(out)
    assert counts(pool) == (0, 2)
    with pytest.raises(ValueError):
        out[0]


# --- put: foreign objects ---------------------------------------------------------------


@pytest.mark.parametrize("obj", [b"abcd", bytearray(4), "abcd", 4, None, [0, 0, 0, 0]])
def test_put_non_view_is_type_error(shm, obj):
    pool = Mempool(2, 4, shm=shm)
    held = pool.get()
    with pytest.raises(TypeError):
        pool.put(obj)
    assert counts(pool) == (1, 1)
    pool.put(held)


def test_put_memoryview_of_other_memory(shm):
    pool = Mempool(2, 4, shm=shm)
    held = pool.get()
    for mv in (memoryview(bytearray(4)), memoryview(b"abcd"), memoryview(np.zeros(4, np.uint8))):
        with pytest.raises(ValueError):
            pool.put(mv)
        assert counts(pool) == (1, 1)
    with memoryview(shm) as whole:
        with pytest.raises(ValueError):
            pool.put(whole)
        with pytest.raises(ValueError):
            pool.put(whole[1000:1004])
    assert counts(pool) == (1, 1)
    pool.put(held)
    assert counts(pool) == (0, 2)


def test_put_block_of_another_pool_same_region(shm):
    a = Mempool(2, 4, shm=shm)
    b = Mempool(2, 4, shm=shm)
    buf = a.get()
    buf[:] = b"AAAA"
    with pytest.raises(ValueError):
        b.put(buf)
    assert counts(a) == (1, 1)
    assert counts(b) == (0, 2)
    # the view is still live and still the caller's
    assert bytes(buf) == b"AAAA"
    a.put(buf)
    assert counts(a) == (0, 2)


def test_put_block_of_pool_in_another_region(shm):
    other_shm = ShareMem(1 << 16)
    a = Mempool(2, 4, shm=shm)
    b = Mempool(2, 4, shm=other_shm)
    buf = b.get()
    with pytest.raises(ValueError):
        a.put(buf)
    assert counts(a) == (0, 2)
    assert counts(b) == (1, 1)
    b.put(buf)
    other_shm.cleanup()


def test_double_put_is_value_error(shm):
    pool = Mempool(2, 4, shm=shm)
    buf = pool.get()
    pool.put(buf)
    with pytest.raises(ValueError):
        pool.put(buf)
    assert counts(pool) == (0, 2)
    # the block was not queued twice
    x, y = pool.get(), pool.get()
    with pytest.raises(EmptyError):
        pool.get()
    pool.put(x)
    pool.put(y)


def test_put_after_enqueue_is_value_error(shm):
    pool = Mempool(2, 4, shm=shm)
    ring = Ring(2, shm=shm)
    buf = pool.get()
    ring.enqueue(buf)
    with pytest.raises(ValueError):
        pool.put(buf)
    assert pool.free_count == 1
    assert ring.used_count == 1
    pool.put(ring.dequeue())
    assert counts(pool) == (0, 2)


def test_put_slice_or_copy_is_value_error(shm):
    pool = Mempool(2, 8, shm=shm)
    buf = pool.get()
    with pytest.raises(ValueError):
        pool.put(buf[0:4])
    with pytest.raises(ValueError):
        pool.put(buf[:])
    with pytest.raises(ValueError):
        pool.put(memoryview(buf))
    with pytest.raises(ValueError):
        pool.put(buf.cast("B"))
    with pytest.raises(ValueError):
        pool.put(buf.toreadonly())
    assert counts(pool) == (1, 1)
    gc.collect()
    pool.put(buf)
    assert counts(pool) == (0, 2)


def test_put_while_memoryview_copy_alive_is_buffer_error(shm):
    pool = Mempool(2, 8, shm=shm)
    buf = pool.get()
    copy = memoryview(buf)
    copy[0] = 9
    with pytest.raises(BufferError):
        pool.put(buf)
    # the block stays with the caller
    assert counts(pool) == (1, 1)
    assert buf[0] == 9
    buf[1] = 8
    assert copy[1] == 8
    copy.release()
    pool.put(buf)
    assert counts(pool) == (0, 2)


def test_put_while_slice_alive_is_buffer_error(shm):
    pool = Mempool(2, 8, shm=shm)
    buf = pool.get()
    part = buf[2:4]
    with pytest.raises(BufferError):
        pool.put(buf)
    assert counts(pool) == (1, 1)
    del part
    pool.put(buf)
    assert counts(pool) == (0, 2)


def test_put_while_numpy_array_alive_is_buffer_error(shm):
    pool = Mempool(2, 16, shm=shm)
    buf = pool.get()
    arr = np.frombuffer(buf, dtype=np.uint32)
    arr[:] = [1, 2, 3, 4]
    with pytest.raises(BufferError):
        pool.put(buf)
    assert counts(pool) == (1, 1)
    assert struct.unpack("=4I", buf) == (1, 2, 3, 4)
    del arr
    pool.put(buf)
    assert counts(pool) == (0, 2)


# --- numpy interop -----------------------------------------------------------------


def test_numpy_on_block_shares_memory(shm):
    pool = Mempool(2, 64, shm=shm)
    buf = pool.get()
    arr = np.frombuffer(buf, dtype=np.float64)
    assert arr.shape == (8,)
    assert arr.flags.writeable
    arr[:] = np.arange(8) * 1.5
    assert struct.unpack("=8d", buf) == tuple(np.arange(8) * 1.5)
    buf[0:8] = struct.pack("=d", -2.0)
    assert arr[0] == -2.0
    del arr
    pool.put(buf)


def test_numpy_write_in_child_read_in_parent(shm):
    pool = Mempool(2, 8 * 16, shm=shm)
    ring = Ring(2, shm=shm)

    def child():
        buf = pool.get()
        arr = np.frombuffer(buf, dtype=np.int64)
        arr[:] = np.arange(16, dtype=np.int64) ** 2
        del arr
        ring.enqueue(buf)

    run_in_child(child)
    out = ring.dequeue()
    arr = np.frombuffer(out, dtype=np.int64)
    assert arr.tolist() == [i * i for i in range(16)]
    del arr
    pool.put(out)
    assert counts(pool) == (0, 2)


def test_numpy_write_in_parent_read_in_child(shm):
    pool = Mempool(1, 32, shm=shm)
    ring = Ring(1, shm=shm)
    buf = pool.get()
    arr = np.frombuffer(buf, dtype=np.uint16)
    arr[:] = np.arange(16, dtype=np.uint16) + 1000
    del arr
    ring.enqueue(buf)

    def child():
        out = ring.dequeue()
        arr = np.frombuffer(out, dtype=np.uint16)
        assert arr.tolist() == list(range(1000, 1016))
        arr *= 2
        del arr
        pool.put(out)

    run_in_child(child)
    assert counts(pool) == (0, 1)
    back = pool.get()
    assert np.frombuffer(back, dtype=np.uint16).tolist() == [2 * v for v in range(1000, 1016)]
    pool.put(back)


# --- cross-process ---------------------------------------------------------------------


def test_get_in_child_put_in_child_seen_by_parent(shm):
    pool = Mempool(4, 4, shm=shm)

    def child():
        for i in range(4):
            buf = pool.get()
            struct.pack_into("=i", buf, 0, i)
            pool.put(buf)

    run_in_child(child)
    assert counts(pool) == (0, 4)
    got = [pool.get() for _ in range(4)]
    assert [struct.unpack_from("=i", b)[0] for b in got] == [0, 1, 2, 3]
    for b in got:
        pool.put(b)


def test_held_in_parent_counted_in_child(shm):
    pool = Mempool(4, 4, shm=shm)
    held = [pool.get(), pool.get()]

    def child():
        assert counts(pool) == (2, 2)
        x, y = pool.get(), pool.get()
        with pytest.raises(EmptyError):
            pool.get()
        pool.put(x)
        pool.put(y)

    run_in_child(child)
    assert counts(pool) == (2, 2)
    for b in held:
        pool.put(b)


def test_double_put_across_processes_parent_first(shm, signal_pair):
    to_child, to_parent = signal_pair
    pool = Mempool(2, 4, shm=shm)
    buf = pool.get()
    buf[:] = b"orig"

    def child():
        to_child.recv()  # the parent has put the block already
        with pytest.raises(ValueError):
            pool.put(buf)  # this process's copy of the view is stale
        assert counts(pool) == (0, 2)
        # nothing was queued twice
        a, b = pool.get(), pool.get()
        with pytest.raises(EmptyError):
            pool.get()
        pool.put(a)
        pool.put(b)

    pid = fork_child(child)
    pool.put(buf)
    to_child.send()
    wait_child(pid)
    assert counts(pool) == (0, 2)


def test_double_put_across_processes_block_reused(shm, signal_pair):
    """The parent puts its block and gets it again; a child's stale copy must not free it."""
    to_child, to_parent = signal_pair
    pool = Mempool(1, 4, shm=shm)
    buf = pool.get()

    def child():
        to_child.recv()
        with pytest.raises(ValueError):
            pool.put(buf)
        assert counts(pool) == (1, 0)
        with pytest.raises(EmptyError):
            pool.get()

    pid = fork_child(child)
    pool.put(buf)
    again = pool.get()  # the same block, held by the parent at a newer generation
    again[:] = b"mine"
    to_child.send()
    wait_child(pid)
    assert counts(pool) == (1, 0)
    assert bytes(again) == b"mine"
    pool.put(again)
    assert counts(pool) == (0, 1)


def test_put_of_a_parents_block_in_a_fork_child_is_refused(shm):
    """The child inherited a copy of the view, not the block: only the process that took
    a block gives it back, so the child's put changes nothing and the parent's works."""
    pool = Mempool(2, 4, shm=shm)
    buf = pool.get()

    def child():
        with pytest.raises(ValueError, match="another process"):
            pool.put(buf)
        assert counts(pool) == (1, 1)

    run_in_child(child)
    assert counts(pool) == (1, 1)
    pool.put(buf)
    assert counts(pool) == (0, 2)


# --- cleanup -----------------------------------------------------------------------------


def test_cleanup_and_close(shm):
    for method in ("cleanup", "close"):
        pool = Mempool(2, 4, shm=shm)
        assert pool.closed is False
        getattr(pool, method)()
        assert pool.closed is True
        pool.cleanup()  # harmless twice
        with pytest.raises(ValueError):
            pool.get()
        with pytest.raises(ValueError):
            pool.used_count
        with pytest.raises(ValueError):
            pool.free_count


def test_context_manager(shm):
    with Mempool(2, 4, shm=shm) as pool:
        assert isinstance(pool, Mempool)
        buf = pool.get()
        pool.put(buf)
    assert pool.closed is True
    with pytest.raises(ValueError):
        pool.get()


def test_put_after_pool_cleanup_is_value_error(shm):
    pool = Mempool(2, 4, shm=shm)
    buf = pool.get()
    pool.cleanup()
    with pytest.raises(ValueError):
        pool.put(buf)
    del buf


def test_cleanup_while_blocks_held_keeps_views_valid(shm):
    pool = Mempool(3, 16, shm=shm)
    a, b = pool.get(), pool.get()
    a[:] = b"a" * 16
    pool.cleanup()
    assert pool.closed is True
    assert bytes(a) == b"a" * 16
    a[:] = b"A" * 16
    b[:] = b"B" * 16
    assert bytes(a) == b"A" * 16
    assert bytes(b) == b"B" * 16
    del a, b
    gc.collect()


def test_own_region_pool_cleanup_with_views_alive():
    pool = Mempool(2, 32)
    buf = pool.get()
    pool.cleanup()
    buf[:] = b"x" * 32
    assert bytes(buf) == b"x" * 32
    del pool
    gc.collect()
    buf[:] = b"y" * 32
    assert bytes(buf) == b"y" * 32
    buf.release()


def test_views_survive_deleting_pool_and_region():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 64, shm=shm)
    a = pool.get()
    b = pool.get()
    a[:] = bytes(range(64))
    del pool, shm
    gc.collect()
    assert bytes(a) == bytes(range(64))
    b[:] = bytes(range(64, 128))
    a[:] = b[:]
    assert bytes(a) == bytes(range(64, 128))
    del a
    gc.collect()
    assert bytes(b) == bytes(range(64, 128))
    del b
    gc.collect()


def test_views_survive_deleting_own_region_pool():
    pool = Mempool(2, 64)
    a = pool.get()
    del pool
    gc.collect()
    a[:] = b"z" * 64
    assert bytes(a) == b"z" * 64


def test_count_attributes_after_cleanup(shm):
    pool = Mempool(3, 5, MEMPOOL_F_SP_PUT, shm=shm)
    pool.cleanup()
    # geometry stays readable; live counts need the pool
    assert pool.count == 3
    assert pool.max_count == 3
    assert pool.elt_size == 5
    assert pool.flags == MEMPOOL_F_SP_PUT


def test_shm_cleanup_closes_pool():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 4, shm=shm)
    shm.cleanup()
    assert pool.closed is True
    with pytest.raises(ValueError):
        pool.get()
    with pytest.raises(ValueError):
        pool.free_count


def test_repr(shm):
    pool = Mempool(2, 4, shm=shm)
    assert "Mempool" in repr(pool)
    pool.cleanup()
    assert "Mempool" in repr(pool)


def test_copy_outliving_the_original_view_is_still_refused(shm):
    """A memoryview(buf) copy must be refused even after the original view is gone.

    The binding recognises "the view handed out" by a borrowed pointer it keeps to it;
    once that view is freed, a new copy of the block allocated at the same address is
    taken for the original.
    """
    pool = Mempool(2, 8, shm=shm)
    buf = pool.get()
    copy = memoryview(buf)
    del buf  # the original view is freed; `copy` keeps the block's buffer alive
    copy2 = memoryview(copy)  # CPython typically reuses the freed view's memory here
    del copy
    try:
        pool.put(copy2)
        accepted = True
    except ValueError:
        accepted = False
    assert not accepted, (
        "LIBRARY BUG: put() accepted a memoryview(buf) copy (it matched a dangling pointer to the "
        "freed original view); it must raise ValueError"
    )
    assert counts(pool) == (1, 1)
    del copy2


# --- pacing: a get() that leaves the pool nearly empty ---------------------------------------


def test_gets_down_to_empty_hand_out_every_block_in_order(shm):
    """The last gets of a pool of 64 leave fewer free blocks than 64 / 16, so they are
    paced (they idle a moment before returning: docs/design.md, section 3). Each still
    returns its block: every block comes out once, in the order the puts queued them, and
    the get after the last raises EmptyError, lap after lap."""
    pool = Mempool(64, 64, shm=shm)
    order = list(range(64))
    views = []
    for lap in range(4):
        views = [pool.get() for _ in range(64)]
        if lap == 0:
            for i, v in enumerate(views):
                struct.pack_into("=Q", v, 0, i)
        assert [struct.unpack_from("=Q", v)[0] for v in views] == order
        with pytest.raises(EmptyError):
            pool.get()
        order = order[lap % 2 :: 2] + order[1 - lap % 2 :: 2]  # a new order each lap
        by_value = {struct.unpack_from("=Q", v)[0]: v for v in views}
        views = []
        for value in order:
            pool.put(by_value.pop(value))
    assert counts(pool) == (0, 64)


def test_paced_producer_across_processes(shm):
    """W1's spinning loop in miniature: a child gets blocks without waiting (retrying on
    EmptyError: the pool runs empty, so its gets are paced), numbers them and enqueues
    them; the parent dequeues, checks the numbers and puts each back. Nothing is lost,
    duplicated or reordered."""
    pool = Mempool(64, 64, shm=shm)
    ring = Ring(128, shm=shm)
    total = 20_000

    def producer():
        give_up = time.monotonic() + 60  # a parent that stopped taking: end, do not spin on
        for seq in range(total):
            while True:
                try:
                    v = pool.get()
                    break
                except EmptyError:
                    if time.monotonic() > give_up:
                        return 2
            struct.pack_into("=Q", v, 0, seq)
            ring.enqueue(v, block=True, timeout=10)
        return 0

    pid = fork_child(producer)
    try:
        for expected in range(total):
            v = ring.dequeue(block=True, timeout=10)
            assert struct.unpack_from("=Q", v)[0] == expected
            pool.put(v)
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # not left spinning when this side failed
        os.waitpid(pid, 0)
        raise
    wait_child(pid)
    assert counts(pool) == (0, 64)
    ring.close()
