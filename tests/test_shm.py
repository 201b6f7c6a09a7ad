"""ShareMem: construction, buffer protocol, cleanup, and the process-wide default region."""
import gc
import os

import pytest

import pyshm
from pyshm import Mempool, Ring, ShareMem, ShareMemError, get_shm, init_shm

from conftest import fork_child, run_in_child, wait_child


# --- construction ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [4096, 4097, 1 << 20, 10_000_019])
def test_size_is_room_for_objects(size):
    """ShareMem(size) has size bytes for pools, rings and raw buffers; pyshm's own header
    and member table come on top (REGION_OVERHEAD), not out of them."""
    shm = ShareMem(size)
    try:
        assert shm.size == size
        assert shm.free == size
        assert shm.closed is False
        with memoryview(shm) as mv:
            assert len(mv) == size + pyshm.REGION_OVERHEAD
            assert mv.readonly
        buf = pyshm.RawBuffer(size // 64 * 64 - 192, shm=shm)  # header 192 bytes, 64-byte units
        assert shm.free < 64
        with memoryview(buf) as mv:
            mv[-1] = 1
    finally:
        shm.cleanup()


@pytest.mark.parametrize("size", [1, 3, 63, 64, 65, 4095])
def test_size_that_can_hold_nothing_is_refused(size):
    with pytest.raises(ValueError, match="between 4096 and"):
        ShareMem(size)


def test_size_keyword():
    shm = ShareMem(size=8192)
    assert shm.size == 8192
    shm.cleanup()


def test_large_sparse_size():
    # A large region is fine as long as its pages are not touched.
    shm = ShareMem(1 << 34)
    try:
        assert shm.size == 1 << 34
        buf = pyshm.RawBuffer((1 << 34) - 256, shm=shm)
        with memoryview(buf) as mv:
            mv[len(mv) - 1] = 7
            assert mv[len(mv) - 1] == 7
    finally:
        shm.cleanup()


@pytest.mark.parametrize("bad", [1.0, 4096.0, "4096", b"4096", True, False, None, [4096], 1 + 0j])
def test_non_int_size_is_type_error(bad):
    with pytest.raises(TypeError):
        ShareMem(bad)


@pytest.mark.parametrize("bad", [0, -1, -4096, -(1 << 70), 1 << 47, 1 << 70])
def test_out_of_range_size_is_value_error(bad):
    with pytest.raises(ValueError):
        ShareMem(bad)


def test_index_like_int_accepted():
    class Idx:
        def __index__(self):
            return 8192

    shm = ShareMem(Idx())
    assert shm.size == 8192
    shm.cleanup()


# --- buffer protocol -----------------------------------------------------------------


def test_memoryview_of_region_is_read_only():
    """pyshm's own structures are in the region: the whole view of it is for reading."""
    shm = ShareMem(10_001)
    with memoryview(shm) as mv:
        assert mv.readonly
        assert len(mv) == 10_001 + pyshm.REGION_OVERHEAD
        assert mv.format == "B" and mv.c_contiguous
        assert bytes(mv[:8]) == b"SREGION1"  # the region header comes first
        with pytest.raises(TypeError):
            mv[0] = 1
    shm.cleanup()


def test_raw_buffer_is_shared_with_fork_child():
    shm = ShareMem(8192)
    buf = pyshm.RawBuffer(6000, shm=shm)

    def child():
        with memoryview(buf) as mv:
            assert bytes(mv[4000:4005]) == b"hello"
            mv[5000:5005] = b"world"

    with memoryview(buf) as mv:
        assert bytes(mv) == bytes(6000)  # zero-filled
        mv[4000:4005] = b"hello"
    run_in_child(child)
    with memoryview(buf) as mv:
        assert bytes(mv[5000:5005]) == b"world"
    shm.cleanup()


def test_numpy_over_a_raw_buffer():
    import numpy as np
    shm = ShareMem(8192)
    buf = pyshm.RawBuffer(4096, shm=shm)
    arr = np.frombuffer(buf, dtype=np.uint32)
    assert arr.flags.writeable
    arr[-1] = 0xDEADBEEF
    with pytest.raises(BufferError):
        shm.cleanup()
    del arr
    with memoryview(buf) as mv:
        assert bytes(mv[4092:4096]) == (0xDEADBEEF).to_bytes(4, "little")
    assert not np.frombuffer(shm, dtype=np.uint8).flags.writeable
    shm.cleanup()


# --- cleanup -------------------------------------------------------------------------


def test_cleanup_and_double_cleanup():
    shm = ShareMem(4096)
    assert shm.closed is False
    shm.cleanup()
    assert shm.closed is True
    shm.cleanup()  # harmless
    shm.close()  # alias, harmless too
    assert shm.closed is True


def test_close_is_alias_of_cleanup():
    shm = ShareMem(4096)
    shm.close()
    assert shm.closed is True
    with pytest.raises(ValueError):
        shm.size


def test_context_manager():
    with ShareMem(4096) as shm:
        assert isinstance(shm, ShareMem)
        assert shm.closed is False
        assert shm.size == 4096
    assert shm.closed is True
    with pytest.raises(ValueError):
        shm.size


def test_context_manager_on_exception():
    with pytest.raises(KeyError):
        with ShareMem(4096) as shm:
            raise KeyError("x")
    assert shm.closed is True


def test_use_after_cleanup_is_value_error():
    shm = ShareMem(1 << 16)
    pool = Mempool(4, 16, shm=shm)
    ring = Ring(4, shm=shm)
    shm.cleanup()
    with pytest.raises(ValueError):
        shm.size
    with pytest.raises(ValueError):
        memoryview(shm)
    with pytest.raises(ValueError):
        pool.get()
    with pytest.raises(ValueError):
        pool.free_count
    with pytest.raises(ValueError):
        pool.used_count
    with pytest.raises(ValueError):
        ring.dequeue()
    with pytest.raises(ValueError):
        ring.used_count
    with pytest.raises(ValueError):
        len(ring)
    with pytest.raises(ValueError):
        Mempool(1, 4, shm=shm)
    with pytest.raises(ValueError):
        Ring(4, shm=shm)
    assert pool.closed is True
    assert ring.closed is True


def test_cleanup_refused_while_memoryview_alive():
    shm = ShareMem(4096)
    buf = pyshm.RawBuffer(100, shm=shm)
    mv = memoryview(buf)
    mv[10] = 42
    with pytest.raises(BufferError, match="view"):
        shm.cleanup()
    # nothing changed
    assert shm.closed is False
    assert shm.size == 4096
    assert mv[10] == 42
    mv[11] = 43
    with memoryview(buf) as other:
        assert other[11] == 43
    mv.release()
    whole = memoryview(shm)  # the read-only view of the region counts too
    with pytest.raises(BufferError):
        shm.cleanup()
    whole.release()
    shm.cleanup()
    assert shm.closed is True


def test_cleanup_refused_while_block_view_alive():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 32, shm=shm)
    buf = pool.get()
    buf[:4] = b"abcd"
    with pytest.raises(BufferError):
        shm.cleanup()
    with pytest.raises(BufferError):
        shm.close()
    assert shm.closed is False
    assert pool.closed is False
    assert bytes(buf[:4]) == b"abcd"
    assert pool.used_count == 1
    pool.put(buf)
    assert pool.free_count == 2
    shm.cleanup()
    assert shm.closed is True


def test_cleanup_refused_while_dequeued_view_alive():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 32, shm=shm)
    ring = Ring(2, shm=shm)
    ring.enqueue(pool.get())
    buf = ring.dequeue()
    with pytest.raises(BufferError):
        shm.cleanup()
    assert shm.closed is False
    pool.put(buf)
    shm.cleanup()
    assert shm.closed is True


def test_views_outlive_deleted_region_object():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 64, shm=shm)
    buf = pool.get()
    buf[:] = b"\x5a" * 64
    del pool, shm
    gc.collect()
    # The memory must still be mapped under the view.
    assert bytes(buf) == b"\x5a" * 64
    buf[:] = b"\xa5" * 64
    assert bytes(buf) == b"\xa5" * 64
    buf.release()
    gc.collect()


def test_cleanup_in_child_does_not_affect_parent(signal_pair):
    to_child, to_parent = signal_pair
    shm = ShareMem(1 << 16)
    pool = Mempool(4, 16, shm=shm)
    ring = Ring(4, shm=shm)

    def child():
        ring.cleanup()
        pool.cleanup()
        shm.cleanup()
        assert shm.closed
        with pytest.raises(ValueError):
            pool.get()
        to_parent.send()

    pid = fork_child(child)
    to_parent.recv()
    wait_child(pid)
    # the parent's handles are untouched
    assert shm.closed is False
    buf = pool.get()
    buf[:5] = b"still"
    ring.enqueue(buf)
    out = ring.dequeue()
    assert bytes(out[:5]) == b"still"
    pool.put(out)
    assert pool.free_count == 4
    shm.cleanup()


def test_cleanup_in_parent_does_not_affect_child(signal_pair):
    to_child, to_parent = signal_pair
    shm = ShareMem(1 << 16)
    pool = Mempool(4, 16, shm=shm)
    ring = Ring(4, shm=shm)
    buf = pool.get()
    buf[:3] = b"abc"
    ring.enqueue(buf)

    def child():
        to_child.recv()  # the parent has cleaned up everything
        assert shm.closed is False
        got = ring.dequeue()
        assert bytes(got[:3]) == b"abc"
        got[:3] = b"xyz"
        ring.enqueue(got)
        again = ring.dequeue()
        assert bytes(again[:3]) == b"xyz"
        pool.put(again)
        assert pool.free_count == 4
        with memoryview(shm) as mv:
            assert len(mv) == (1 << 16) + pyshm.REGION_OVERHEAD

    pid = fork_child(child)
    ring.cleanup()
    pool.cleanup()
    shm.cleanup()
    assert shm.closed
    to_child.send()
    wait_child(pid)


# --- the process-wide default region (only ever touched in forked children) ----------


def test_no_default_region():
    def child():
        with pytest.raises(ShareMemError):
            get_shm()
        with pytest.raises(ShareMemError):
            ShareMem.instance()
        with pytest.raises(ShareMemError):
            ShareMem.instance(None)

    run_in_child(child)


def test_init_shm_and_get_shm():
    def child():
        shm = init_shm(1 << 20)
        assert isinstance(shm, ShareMem)
        assert shm.size == 1 << 20
        assert get_shm() is shm
        assert ShareMem.instance() is shm
        assert pyshm.get_shm() is shm
        assert pyshm.shm.get_shm() is shm

    run_in_child(child)


def test_instance_creates_default():
    def child():
        shm = ShareMem.instance(4096)
        assert shm.size == 4096
        assert get_shm() is shm
        assert ShareMem.instance() is shm

    run_in_child(child)


def test_default_initialised_twice_is_error():
    def child():
        shm = init_shm(4096)
        with pytest.raises(ShareMemError):
            init_shm(4096)
        with pytest.raises(ShareMemError):
            init_shm(8192)
        with pytest.raises(ShareMemError):
            ShareMem.instance(4096)
        # still the same one
        assert get_shm() is shm
        assert shm.size == 4096

    run_in_child(child)


def test_init_shm_bad_sizes():
    def child():
        with pytest.raises(ValueError):
            init_shm(0)
        with pytest.raises(ValueError):
            init_shm(-5)
        with pytest.raises(TypeError):
            init_shm(1.5)
        with pytest.raises(TypeError):
            init_shm("4096")
        # a failed init leaves no default behind
        with pytest.raises(ShareMemError):
            get_shm()

    run_in_child(child)


def test_default_region_used_by_mempool_and_ring():
    def child():
        shm = init_shm(1 << 20)
        pool = Mempool(4, 32)
        assert pool.shm is shm
        ring = Ring(4)
        assert ring.shm is shm
        # same region: the ring accepts the default pool's blocks
        buf = pool.get()
        buf[:2] = b"ok"
        ring.enqueue(buf)
        out = ring.dequeue()
        assert bytes(out[:2]) == b"ok"
        pool.put(out)
        assert pool.free_count == 4
        # pools/rings carved from it are visible through the default region's bytes
        explicit = Mempool(2, 8, shm=get_shm())
        buf = explicit.get()
        ring.enqueue(buf)
        pool_out = ring.dequeue()
        explicit.put(pool_out)

    run_in_child(child)


def test_default_region_shared_with_grandchild():
    def child():
        init_shm(1 << 20)
        pool = Mempool(2, 8)
        ring = Ring(2)

        def grandchild():
            assert get_shm() is pool.shm
            buf = pool.get()
            buf[:] = b"12345678"
            ring.enqueue(buf)

        run_in_child(grandchild)
        got = ring.dequeue()
        assert bytes(got) == b"12345678"
        pool.put(got)

    run_in_child(child)


def test_repr():
    shm = ShareMem(4096)
    assert "ShareMem" in repr(shm)
    shm.cleanup()
    assert "ShareMem" in repr(shm)
