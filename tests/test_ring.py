"""Ring: capacity, FIFO, enqueue/dequeue ownership, several pools, corruption, fork interop."""
import gc
import os
import queue
import re
import struct
import time

import numpy as np
import pytest

import pyshm
from pyshm import (
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    Ring,
    RingError,
    ShareMem,
    init_shm,
)

from conftest import CHILD_HANG_GUARD, find_bytes_offset, fork_child, raw_region, run_in_child, wait_child


def stamp(buf, value):
    struct.pack_into("=Q", buf, 0, value)


def read_stamp(buf):
    return struct.unpack_from("=Q", buf)[0]


def spin(fn, exc, guard=CHILD_HANG_GUARD):
    """Call fn until it stops raising exc (non-blocking API); hang guard only."""
    deadline = time.monotonic() + guard
    while True:
        try:
            return fn()
        except exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"still {exc.__name__} after the hang guard")
            os.sched_yield()


# --- construction --------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 64, 100])
def test_holds_exactly_count(shm, count):
    pool = Mempool(count + 1, 8, shm=shm)
    ring = Ring(count, shm=shm)
    assert ring.count == count
    assert len(ring) == 0
    assert ring.used_count == 0
    assert ring.free_count == count
    for i in range(count):
        b = pool.get()
        stamp(b, i)
        ring.enqueue(b)
        assert len(ring) == ring.used_count == i + 1
        assert ring.free_count == count - i - 1
    extra = pool.get()
    stamp(extra, 999)
    with pytest.raises(FullError) as info:
        ring.enqueue(extra)
    assert isinstance(info.value, queue.Full)
    # ring and view unchanged
    assert ring.used_count == count
    assert ring.free_count == 0
    assert read_stamp(extra) == 999
    extra[1] = 7  # still writable, still the caller's
    for i in range(count):
        out = ring.dequeue()
        assert read_stamp(out) == i
        pool.put(out)
        assert ring.used_count == count - i - 1
    with pytest.raises(EmptyError):
        ring.dequeue()
    pool.put(extra)
    assert pool.free_count == count + 1


def test_ring_of_one_holds_exactly_one_entry(shm):
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(1, shm=shm)
    a, b = pool.get(), pool.get()
    stamp(a, 1)
    stamp(b, 2)
    ring.enqueue(a)
    try:
        ring.enqueue(b)
        accepted = True
    except FullError:
        accepted = False
    assert not accepted, (
        "LIBRARY BUG: Ring(1) accepted a second entry while holding one (it must raise FullError); "
        "the first entry was overwritten and the ring is now broken"
    )
    assert ring.used_count == 1
    assert read_stamp(b) == 2
    out = ring.dequeue()
    assert read_stamp(out) == 1
    pool.put(out)
    ring.enqueue(b)
    out = ring.dequeue()
    assert read_stamp(out) == 2
    pool.put(out)
    assert pool.free_count == 2


@pytest.mark.parametrize("count", [1, 3, 5, 64])
def test_wraps_around_many_laps(shm, count):
    pool = Mempool(count, 8, shm=shm)
    ring = Ring(count, shm=shm)
    seq = 0
    expected = 0
    for lap in range(7):
        # fill partially or completely, then drain, in varying amounts
        n = min(count, (lap % count) + 1)
        for _ in range(n):
            b = pool.get()
            stamp(b, seq)
            seq += 1
            ring.enqueue(b)
        for _ in range(n):
            out = ring.dequeue()
            assert read_stamp(out) == expected
            expected += 1
            pool.put(out)
    assert ring.used_count == 0
    assert pool.free_count == count


def test_positional_and_keyword_arguments(shm):
    a = Ring(4, 0, shm)
    b = Ring(count=4, flags=RING_F_SP_ENQ, shm=shm)
    assert (a.count, a.flags) == (4, 0)
    assert (b.count, b.flags) == (4, RING_F_SP_ENQ)


@pytest.mark.parametrize("flags", [0, RING_F_SP_ENQ, RING_F_SC_DEQ, RING_F_SP_ENQ | RING_F_SC_DEQ])
def test_flags(shm, flags):
    pool = Mempool(3, 8, shm=shm)
    ring = Ring(2, flags, shm=shm)
    assert ring.flags == flags
    a, b, c = pool.get(), pool.get(), pool.get()
    stamp(a, 1)
    stamp(b, 2)
    ring.enqueue(a)
    ring.enqueue(b)
    with pytest.raises(FullError):
        ring.enqueue(c)
    out = ring.dequeue()
    assert read_stamp(out) == 1
    pool.put(out)
    out = ring.dequeue()
    assert read_stamp(out) == 2
    with pytest.raises(EmptyError):
        ring.dequeue()
    pool.put(out)
    pool.put(c)
    assert pool.free_count == 3


def test_bad_flags(shm):
    with pytest.raises(ValueError):
        Ring(4, 0x10, shm=shm)
    with pytest.raises(ValueError):
        Ring(4, -1, shm=shm)
    with pytest.raises(TypeError):
        Ring(4, 1.0, shm=shm)


@pytest.mark.parametrize("count", [0, -1, -64])
def test_bad_count_value_error(shm, count):
    with pytest.raises(ValueError):
        Ring(count, shm=shm)


@pytest.mark.parametrize("count", [4.0, "4", True, None, b"4"])
def test_non_int_count_type_error(shm, count):
    with pytest.raises(TypeError):
        Ring(count, shm=shm)


def test_no_shm_and_no_default_is_value_error():
    with pytest.raises(ValueError):
        Ring(4)
    with pytest.raises(ValueError):
        Ring(4, 0, None)


def test_shm_must_be_sharemem():
    with pytest.raises(TypeError):
        Ring(4, shm=bytearray(4096))


def test_default_region_used_when_initialised():
    def child():
        shm = init_shm(1 << 16)
        ring = Ring(4)
        assert ring.shm is shm
        pool = Mempool(2, 8)
        b = pool.get()
        ring.enqueue(b)
        pool.put(ring.dequeue())

    run_in_child(child)


def test_too_little_room_message_says_bytes_needed():
    shm = ShareMem(4096)
    with pytest.raises(ValueError) as info:
        Ring(1000, shm=shm)
    msg = str(info.value)
    m = re.search(r"needs? (\d+) bytes", msg)
    assert m, msg
    needed = int(m.group(1))
    assert needed >= 1000 * 8
    m2 = re.search(r"has (\d+) of (\d+) bytes", msg)
    assert m2, msg
    overhead = int(m2.group(2)) - int(m2.group(1))
    ok = ShareMem(needed + overhead)
    ring = Ring(1000, shm=ok)
    assert ring.count == 1000
    short = ShareMem(needed + overhead - 1)
    with pytest.raises(ValueError):
        Ring(1000, shm=short)
    for r in (shm, ok, short):
        r.cleanup()


# --- enqueue / dequeue -------------------------------------------------------------------


def test_enqueue_releases_view_dequeue_returns_new_owned_view(shm):
    pool = Mempool(2, 16, shm=shm)
    ring = Ring(4, shm=shm)
    buf = pool.get()
    buf[:] = b"0123456789abcdef"
    assert ring.enqueue(buf) is None
    with pytest.raises(ValueError):
        buf[0]
    assert pool.used_count == 1
    out = ring.dequeue()
    assert isinstance(out, memoryview)
    assert len(out) == 16
    assert out.format == "B"
    assert out.c_contiguous
    assert out.readonly is False
    assert bytes(out) == b"0123456789abcdef"
    out[0:4] = b"WXYZ"
    assert bytes(out[:4]) == b"WXYZ"
    assert pool.used_count == 1
    pool.put(out)
    assert pool.free_count == 2


def test_empty_raises_empty_error(shm):
    ring = Ring(4, shm=shm)
    with pytest.raises(EmptyError) as info:
        ring.dequeue()
    assert isinstance(info.value, queue.Empty)
    assert isinstance(info.value, RingError)
    assert isinstance(info.value, pyshm.PyshmError)
    with pytest.raises(queue.Empty):
        ring.dequeue(8)
    assert ring.used_count == 0


def test_fifo_order(shm):
    pool = Mempool(10, 8, shm=shm)
    ring = Ring(10, shm=shm)
    bufs = [pool.get() for _ in range(10)]
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    for i in order:
        stamp(bufs[i], i)
        ring.enqueue(bufs[i])
    got = []
    for _ in range(10):
        out = ring.dequeue()
        got.append(read_stamp(out))
        pool.put(out)
    assert got == order


def test_dequeue_size(shm):
    pool = Mempool(2, 16, shm=shm)
    ring = Ring(4, shm=shm)
    for i in range(2):
        b = pool.get()
        stamp(b, i)
        ring.enqueue(b)
    out = ring.dequeue(16)
    assert len(out) == 16
    assert read_stamp(out) == 0
    pool.put(out)
    out = ring.dequeue(size=8)
    assert len(out) == 8
    assert read_stamp(out) == 1
    pool.put(out)
    assert pool.free_count == 2


def test_dequeue_size_none_gives_full_block(shm):
    pool = Mempool(1, 24, shm=shm)
    ring = Ring(1, shm=shm)
    ring.enqueue(pool.get())
    out = ring.dequeue(None)
    assert len(out) == 24
    pool.put(out)


def test_dequeue_size_too_big_leaves_block_in_ring(shm):
    pool = Mempool(2, 16, shm=shm)
    ring = Ring(4, shm=shm)
    b = pool.get()
    stamp(b, 77)
    ring.enqueue(b)
    with pytest.raises(ValueError):
        ring.dequeue(17)
    with pytest.raises(ValueError):
        ring.dequeue(size=1 << 20)
    assert ring.used_count == 1
    out = ring.dequeue()
    assert read_stamp(out) == 77
    pool.put(out)


@pytest.mark.parametrize("size", [0, -1, -100])
def test_dequeue_size_not_positive_is_value_error(shm, size):
    pool = Mempool(1, 16, shm=shm)
    ring = Ring(2, shm=shm)
    ring.enqueue(pool.get())
    with pytest.raises(ValueError):
        ring.dequeue(size)
    assert ring.used_count == 1
    pool.put(ring.dequeue())


def test_dequeue_bad_arguments(shm):
    ring = Ring(2, shm=shm)
    with pytest.raises(TypeError):
        ring.dequeue(4.0)
    with pytest.raises(TypeError):
        ring.dequeue(1, 2)
    with pytest.raises(TypeError):
        ring.dequeue(length=4)


def test_dequeued_view_can_be_enqueued_elsewhere(shm):
    pool = Mempool(1, 8, shm=shm)
    r1, r2, r3 = Ring(1, shm=shm), Ring(3, shm=shm), Ring(5, shm=shm)
    b = pool.get()
    stamp(b, 42)
    r1.enqueue(b)
    v = r1.dequeue()
    r2.enqueue(v)
    with pytest.raises(ValueError):
        r3.enqueue(v)  # released by the enqueue into r2
    v = r2.dequeue()
    stamp(v, 43)
    r3.enqueue(v)
    v = r3.dequeue()
    assert read_stamp(v) == 43
    pool.put(v)
    assert pool.free_count == 1
    assert (r1.used_count, r2.used_count, r3.used_count) == (0, 0, 0)


def test_blocks_of_several_pools_in_one_ring(shm):
    small = Mempool(4, 8, shm=shm)
    big = Mempool(4, 100, shm=shm)
    odd = Mempool(4, 3, shm=shm)
    ring = Ring(12, shm=shm)
    pools = [small, big, odd]
    seq = []
    for i in range(12):
        p = pools[i % 3]
        b = p.get()
        b[0] = i
        ring.enqueue(b)
        seq.append(p)
    # dequeue(size) bigger than the next block: stays put
    with pytest.raises(ValueError):
        ring.dequeue(9)
    for i in range(12):
        p = seq[i]
        out = ring.dequeue()
        assert len(out) == p.elt_size
        assert out[0] == i
        # it belongs to its own pool only
        for other in pools:
            if other is not p:
                with pytest.raises(ValueError):
                    other.put(out)
        p.put(out)
    for p in pools:
        assert p.free_count == p.count


# --- enqueue: foreign or unusable views ---------------------------------------------------


@pytest.mark.parametrize("obj", [b"abcdefgh", bytearray(8), "x", 8, None])
def test_enqueue_non_view_is_type_error(shm, obj):
    ring = Ring(2, shm=shm)
    with pytest.raises(TypeError):
        ring.enqueue(obj)
    assert ring.used_count == 0


def test_enqueue_foreign_memory_is_value_error(shm):
    ring = Ring(2, shm=shm)
    for mv in (memoryview(bytearray(8)), memoryview(b"12345678"), memoryview(np.zeros(8, np.uint8))):
        with pytest.raises(ValueError):
            ring.enqueue(mv)
    with memoryview(shm) as whole:
        with pytest.raises(ValueError):
            ring.enqueue(whole[2048:2056])
    assert ring.used_count == 0


def test_enqueue_block_of_other_region_is_value_error(shm):
    other = ShareMem(1 << 16)
    foreign_pool = Mempool(2, 8, shm=other)
    ring = Ring(2, shm=shm)
    b = foreign_pool.get()
    b[0] = 5
    with pytest.raises(ValueError):
        ring.enqueue(b)
    assert ring.used_count == 0
    assert b[0] == 5
    foreign_pool.put(b)
    assert foreign_pool.free_count == 2
    other.cleanup()


def test_enqueue_released_or_put_view_is_value_error(shm):
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(4, shm=shm)
    b = pool.get()
    pool.put(b)
    with pytest.raises(ValueError):
        ring.enqueue(b)
    b = pool.get()
    ring.enqueue(b)
    with pytest.raises(ValueError):
        ring.enqueue(b)  # already enqueued
    assert ring.used_count == 1
    pool.put(ring.dequeue())
    with pytest.raises(EmptyError):
        ring.dequeue()


def test_enqueue_slice_or_copy_is_value_error(shm):
    pool = Mempool(1, 8, shm=shm)
    ring = Ring(2, shm=shm)
    b = pool.get()
    with pytest.raises(ValueError):
        ring.enqueue(b[0:4])
    with pytest.raises(ValueError):
        ring.enqueue(memoryview(b))
    assert ring.used_count == 0
    ring.enqueue(b)
    pool.put(ring.dequeue())


def test_enqueue_while_exported_is_buffer_error(shm):
    pool = Mempool(1, 16, shm=shm)
    ring = Ring(2, shm=shm)
    b = pool.get()
    arr = np.frombuffer(b, dtype=np.uint8)
    arr[:] = 3
    with pytest.raises(BufferError):
        ring.enqueue(b)
    assert ring.used_count == 0
    assert bytes(b) == b"\x03" * 16
    copy = memoryview(b)
    del arr
    with pytest.raises(BufferError):
        ring.enqueue(b)
    copy.release()
    ring.enqueue(b)
    out = ring.dequeue()
    assert bytes(out) == b"\x03" * 16
    pool.put(out)


def test_full_ring_leaves_view_with_caller(shm):
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(1, shm=shm)
    other = Ring(1, shm=shm)
    a, b = pool.get(), pool.get()
    ring.enqueue(a)
    stamp(b, 5)
    with pytest.raises(FullError):
        ring.enqueue(b)
    with pytest.raises(FullError):
        ring.enqueue(b)
    assert read_stamp(b) == 5
    # the block can go elsewhere, or back to its pool
    other.enqueue(b)
    pool.put(other.dequeue())
    pool.put(ring.dequeue())
    assert pool.free_count == 2


# --- cleanup -------------------------------------------------------------------------


def test_cleanup_close_context_manager(shm):
    for method in ("cleanup", "close"):
        ring = Ring(2, shm=shm)
        assert ring.closed is False
        getattr(ring, method)()
        assert ring.closed is True
        ring.cleanup()
        for op in (lambda: ring.dequeue(), lambda: ring.used_count, lambda: ring.free_count, lambda: len(ring)):
            with pytest.raises(ValueError):
                op()
    with Ring(2, shm=shm) as ring:
        assert isinstance(ring, Ring)
        assert ring.closed is False
    assert ring.closed is True
    with pytest.raises(ValueError):
        ring.dequeue()


def test_enqueue_after_cleanup_is_value_error(shm):
    pool = Mempool(1, 8, shm=shm)
    ring = Ring(2, shm=shm)
    b = pool.get()
    ring.cleanup()
    with pytest.raises(ValueError):
        ring.enqueue(b)
    # the block is still the caller's
    pool.put(b)
    assert pool.free_count == 1


def test_cleanup_with_dequeued_views_alive(shm):
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(2, shm=shm)
    for i in range(2):
        b = pool.get()
        stamp(b, i)
        ring.enqueue(b)
    x = ring.dequeue()
    y = ring.dequeue()
    ring.cleanup()
    pool.cleanup()
    assert read_stamp(x) == 0 and read_stamp(y) == 1
    stamp(x, 10)
    assert read_stamp(x) == 10
    del x, y
    gc.collect()


def test_dequeued_views_survive_deleting_everything():
    shm = ShareMem(1 << 16)
    pool = Mempool(1, 32, shm=shm)
    ring = Ring(1, shm=shm)
    b = pool.get()
    b[:] = b"q" * 32
    ring.enqueue(b)
    out = ring.dequeue()
    del ring, pool, shm, b
    gc.collect()
    assert bytes(out) == b"q" * 32
    out[:] = b"r" * 32
    assert bytes(out) == b"r" * 32


def test_ring_count_and_flags_after_cleanup(shm):
    ring = Ring(5, RING_F_SC_DEQ, shm=shm)
    ring.cleanup()
    assert ring.count == 5
    assert ring.flags == RING_F_SC_DEQ


def test_repr(shm):
    ring = Ring(2, shm=shm)
    assert "Ring" in repr(ring)
    ring.cleanup()
    assert "Ring" in repr(ring)


# --- corruption ------------------------------------------------------------------------


def region_bytes(shm):
    with memoryview(shm) as whole:
        return bytes(whole)


def locate_slot(shm, pool, ring):
    """Enqueue a fresh, marked block and find where the ring stored its offset.

    Returns (region offset of the block, region offset of the ring entry's value word).
    The entry is found without relying on the ring's layout: of the 8-byte words the
    enqueue changed, it is the one that now holds the block's offset.
    """
    b = pool.get()
    marker = os.urandom(16)
    b[:16] = marker
    block_off = find_bytes_offset(shm, marker)
    before = region_bytes(shm)
    ring.enqueue(b)
    after = region_bytes(shm)
    n = len(after) // 8
    old_words = np.frombuffer(before, dtype="<u8", count=n)
    new_words = np.frombuffer(after, dtype="<u8", count=n)
    hits = (np.flatnonzero((new_words == block_off) & (old_words != block_off)) * 8).tolist()
    assert len(hits) == 1, f"expected exactly one ring entry holding offset {block_off}, found {hits}"
    return block_off, hits[0]


GARBAGE = {
    "misaligned_in_pool": lambda block_off, pool_info: block_off + 1,
    "unaligned_small": lambda block_off, pool_info: 12345,
    "zero": lambda block_off, pool_info: 0,
    "pool_header": lambda block_off, pool_info: 64,
    "past_end": lambda block_off, pool_info: (1 << 20) + 64,
    "huge": lambda block_off, pool_info: (1 << 64) - 8,
    "top_bit": lambda block_off, pool_info: 1 << 63,
    "past_last_block": lambda block_off, pool_info: pool_info["last"] + pool_info["stride"],
    "free_block": lambda block_off, pool_info: pool_info["free"],
    "held_block": lambda block_off, pool_info: pool_info["held"],
}


def block_offset(shm, buf):
    marker = os.urandom(16)
    saved = bytes(buf[:16])
    buf[:16] = marker
    off = find_bytes_offset(shm, marker)
    buf[:16] = saved
    return off


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_offset_is_corruption_error(shm, kind):
    pool = Mempool(4, 64, shm=shm)
    ring = Ring(4, shm=shm)
    held = pool.get()  # block 0: held by us
    held_off = block_offset(shm, held)
    block_off, value_off = locate_slot(shm, pool, ring)  # block 1: in the ring
    free = pool.get()  # block 2, measured then put back: FREE
    free_off = block_offset(shm, free)
    pool.put(free)
    stride = free_off - block_off
    info = {"free": free_off, "held": held_off, "stride": stride, "last": held_off + 3 * stride}
    garbage = GARBAGE[kind](block_off, info)
    with raw_region(shm) as mv:
        struct.pack_into("<Q", mv, value_off, garbage)
    with pytest.raises(CorruptionError) as excinfo:
        ring.dequeue()
    assert isinstance(excinfo.value, pyshm.PyshmError)
    # the bad entry was dropped; the ring keeps working
    assert ring.used_count == 0
    with pytest.raises(EmptyError):
        ring.dequeue()
    # one block (the one whose entry was overwritten) is lost; blocks 2 and 3 are free
    assert pool.free_count == 2
    for i in range(2):
        b = pool.get()
        stamp(b, 100 + i)
        ring.enqueue(b)
    assert ring.used_count == 2
    for i in range(2):
        out = ring.dequeue()
        assert read_stamp(out) == 100 + i
        pool.put(out)
    assert ring.used_count == 0
    assert pool.free_count == 2
    # our held block was not affected
    stamp(held, 7)
    assert read_stamp(held) == 7
    pool.put(held)


def test_garbage_offset_between_good_entries(shm):
    pool = Mempool(8, 16, shm=shm)
    ring = Ring(8, shm=shm)
    block_off, value_off = locate_slot(shm, pool, ring)  # position 0
    for i in range(1, 4):
        b = pool.get()
        stamp(b, i)
        ring.enqueue(b)
    with raw_region(shm) as mv:
        struct.pack_into("<Q", mv, value_off, block_off + 3)
    with pytest.raises(CorruptionError):
        ring.dequeue()
    assert ring.used_count == 3
    for i in range(1, 4):
        out = ring.dequeue()
        assert read_stamp(out) == i
        pool.put(out)
    assert ring.used_count == 0
    # one block was lost with the corrupted entry, every other one is back
    assert pool.free_count == pool.count - 1


def test_corruption_seen_by_other_process(shm):
    pool = Mempool(4, 16, shm=shm)
    ring = Ring(4, shm=shm)
    block_off, value_off = locate_slot(shm, pool, ring)
    b = pool.get()
    stamp(b, 9)
    ring.enqueue(b)
    with raw_region(shm) as mv:
        struct.pack_into("<Q", mv, value_off, 0xDEADBEEF)

    def child():
        with pytest.raises(CorruptionError):
            ring.dequeue()
        out = ring.dequeue()
        assert read_stamp(out) == 9
        pool.put(out)

    run_in_child(child)
    assert ring.used_count == 0
    assert pool.free_count == 3


# --- cross-process -------------------------------------------------------------------


def test_child_enqueues_parent_dequeues(shm):
    pool = Mempool(8, 32, shm=shm)
    ring = Ring(8, shm=shm)

    def child():
        for i in range(8):
            b = pool.get()
            b[:] = bytes([i]) * 32
            ring.enqueue(b)

    run_in_child(child)
    assert ring.used_count == 8
    for i in range(8):
        out = ring.dequeue()
        assert bytes(out) == bytes([i]) * 32
        pool.put(out)
    assert pool.free_count == 8


def test_pool_created_in_child_after_fork(shm):
    """Blocks of a pool the parent has never seen arrive through a ring and go back."""
    to_parent = Ring(2, shm=shm)
    to_child = Ring(2, shm=shm)
    parent_pool = Mempool(2, 8, shm=shm)

    def child():
        child_pool = Mempool(3, 48, shm=shm)  # carved after the fork
        b = child_pool.get()
        b[:] = b"c" * 48
        to_parent.enqueue(b)
        back = spin(to_child.dequeue, EmptyError)
        assert len(back) == 48
        assert bytes(back) == b"p" * 48
        child_pool.put(back)
        assert child_pool.free_count == 3

    pid = fork_child(child)
    out = spin(to_parent.dequeue, EmptyError)
    assert len(out) == 48
    assert bytes(out) == b"c" * 48
    with pytest.raises(ValueError):
        parent_pool.put(out)  # not one of this pool's blocks
    out[:] = b"p" * 48
    to_child.enqueue(out)
    wait_child(pid)
    assert parent_pool.free_count == 2


def test_ring_created_in_parent_used_by_two_children(shm):
    pool = Mempool(16, 8, shm=shm)
    ring = Ring(4, shm=shm)
    n = 200

    def producer():
        for i in range(n):
            b = spin(pool.get, EmptyError)
            stamp(b, i)
            while True:
                try:
                    ring.enqueue(b)
                    break
                except FullError:
                    os.sched_yield()

    def consumer():
        for i in range(n):
            out = spin(ring.dequeue, EmptyError)
            assert read_stamp(out) == i
            pool.put(out)

    pids = [fork_child(producer), fork_child(consumer)]
    for pid in pids:
        wait_child(pid)
    assert ring.used_count == 0
    assert pool.free_count == 16


def test_double_enqueue_across_processes(shm, signal_pair):
    to_child, to_parent = signal_pair
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(4, shm=shm)
    buf = pool.get()
    stamp(buf, 11)

    def child():
        to_child.recv()  # the parent has enqueued the block already
        with pytest.raises(ValueError):
            ring.enqueue(buf)  # stale copy of the view
        assert ring.used_count == 1
        with pytest.raises(ValueError):
            pool.put(buf)
        assert pool.free_count == 1

    pid = fork_child(child)
    ring.enqueue(buf)
    to_child.send()
    wait_child(pid)
    assert ring.used_count == 1
    out = ring.dequeue()
    assert read_stamp(out) == 11
    with pytest.raises(EmptyError):
        ring.dequeue()
    pool.put(out)
    assert pool.free_count == 2


def test_stale_copy_of_dequeued_view_cannot_be_put(shm, signal_pair):
    to_child, to_parent = signal_pair
    pool = Mempool(2, 8, shm=shm)
    ring = Ring(4, shm=shm)
    ring.enqueue(pool.get())
    out = ring.dequeue()

    def child():
        to_child.recv()  # the parent has put it back already
        with pytest.raises(ValueError):
            pool.put(out)
        with pytest.raises(ValueError):
            ring.enqueue(out)
        assert pool.free_count == 2
        assert ring.used_count == 0

    pid = fork_child(child)
    pool.put(out)
    to_child.send()
    wait_child(pid)
    assert pool.free_count == 2
