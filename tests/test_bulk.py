"""Bulk calls: Mempool.get_many/put_many and Ring.enqueue_many/dequeue_many.

get_many(n) and dequeue_many(n) hand out 1 to n blocks (EmptyError when there are none);
put_many(views) and enqueue_many(views) take every block or none: on any error nothing
moved and every view is still the caller's, untouched and usable. dequeue_many keeps
FIFO order; enqueue_many of more blocks than the ring holds is a ValueError; a block
listed twice is a ValueError.
"""
import gc
import multiprocessing
import os
import sys

import pytest

from pyshm import EmptyError, FullError, Mempool, Ring, ShareMem

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # spawn and forkserver children inherit sys.path
    sys.path.insert(0, _HERE)
import mp_helpers as h  # noqa: E402


@pytest.fixture
def region():
    shm = ShareMem(1 << 20)
    yield shm
    gc.collect()
    try:
        shm.cleanup()
    except BufferError:
        pass  # a failed test still holds views; the garbage collector unmaps it later


def usable(view, tag, seq):
    """The view is still the caller's: readable, writable, its content intact."""
    h.check(view, tag, seq)
    view[-1] = view[-1]
    return True


def released(view):
    try:
        len(view)
    except ValueError:
        return True
    return False


# --- get_many -----------------------------------------------------------------------------


def test_get_many_returns_up_to_n_distinct_blocks(region):
    pool = Mempool(8, 128, shm=region)
    views = pool.get_many(3)
    assert isinstance(views, list) and len(views) == 3
    assert all(isinstance(v, memoryview) and len(v) == 128 and not v.readonly for v in views)
    for i, v in enumerate(views):
        h.fill(v, 1, i)
    for i, v in enumerate(views):
        h.check(v, 1, i)  # no two views share memory
    assert pool.free_count == 5
    rest = pool.get_many(100)  # more than there are: what there is
    assert len(rest) == 5
    assert pool.free_count == 0
    with pytest.raises(EmptyError):
        pool.get_many(1)
    pool.put_many(views + rest)
    assert pool.free_count == 8


def test_get_many_fewer_free_than_asked(region):
    pool = Mempool(4, 64, shm=region)
    held = [pool.get() for _ in range(3)]
    views = pool.get_many(4)
    assert len(views) == 1
    pool.put_many(held + views)


def test_get_many_hands_out_in_free_order(region):
    """Blocks come back out of the free queue oldest first, as get() does."""
    pool = Mempool(4, 64, shm=region)
    views = pool.get_many(4)
    for i, v in enumerate(views):
        h.fill(v, 2, i)
    pool.put_many(views)
    again = pool.get_many(4)
    assert [h.read(v) for v in again] == [(2, i) for i in range(4)]
    pool.put_many(again)


@pytest.mark.parametrize("n", [0, -1])
def test_get_many_n_below_one_is_value_error(region, n):
    pool = Mempool(2, 64, shm=region)
    with pytest.raises(ValueError):
        pool.get_many(n)
    assert pool.free_count == 2


def test_get_many_needs_an_int(region):
    pool = Mempool(2, 64, shm=region)
    with pytest.raises(TypeError):
        pool.get_many(1.5)
    with pytest.raises(TypeError):
        pool.get_many()


# --- put_many -----------------------------------------------------------------------------


def _bad_items(region, pool):
    """(label, maker) pairs: each maker returns (bad item, expected exception, cleanup)."""
    other_pool = Mempool(2, 64, shm=region)

    def foreign():
        return memoryview(bytearray(64)), ValueError, lambda: None

    def not_a_view():
        return b"x" * 64, TypeError, lambda: None

    def released_view():
        v = pool.get()
        pool.put(v)
        return v, ValueError, lambda: None

    def of_other_pool():
        v = other_pool.get()
        return v, ValueError, lambda: other_pool.put(v)

    def with_a_slice_alive():
        v = pool.get()
        piece = v[:8]
        cleanup_state = {"piece": piece}

        def cleanup():
            cleanup_state.pop("piece").release()
            pool.put(v)

        return v, BufferError, cleanup

    def a_slice():
        v = pool.get()
        piece = v[:8]

        def cleanup():
            piece.release()
            pool.put(v)

        return piece, ValueError, cleanup

    return {
        "foreign": foreign,
        "not_a_view": not_a_view,
        "released": released_view,
        "other_pool": of_other_pool,
        "slice_alive": with_a_slice_alive,
        "slice": a_slice,
    }


@pytest.mark.parametrize("kind", ["foreign", "not_a_view", "released", "other_pool", "slice_alive", "slice"])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_put_many_with_one_bad_item_returns_nothing(region, kind, where):
    pool = Mempool(6, 64, shm=region)
    good = pool.get_many(2)
    for i, v in enumerate(good):
        h.fill(v, 3, i)
    bad, exc, cleanup = _bad_items(region, pool)[kind]()
    free = pool.free_count
    items = list(good)
    items.insert(where, bad)
    with pytest.raises(exc):
        pool.put_many(items)
    assert pool.free_count == free
    assert all(usable(v, 3, i) for i, v in enumerate(good))
    cleanup()
    pool.put_many(good)  # the good ones can still go back
    assert all(released(v) for v in good)
    assert pool.free_count == pool.count


def test_put_many_duplicate_is_value_error(region):
    pool = Mempool(4, 64, shm=region)
    a, b = pool.get_many(2)
    h.fill(a, 4, 0)
    h.fill(b, 4, 1)
    with pytest.raises(ValueError, match="twice"):
        pool.put_many([a, b, a])
    assert pool.free_count == 2
    assert usable(a, 4, 0) and usable(b, 4, 1)
    pool.put_many((a, b))  # a tuple works too
    assert pool.free_count == 4


def test_put_many_empty_is_a_no_op(region):
    pool = Mempool(2, 64, shm=region)
    pool.put_many([])
    pool.put_many(())
    assert pool.free_count == 2


def test_put_many_of_blocks_from_a_ring(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    ring.enqueue_many(pool.get_many(4))
    pool.put_many(ring.dequeue_many(4))
    assert pool.free_count == 4 and len(ring) == 0


def test_put_many_with_an_inherited_view_moves_nothing(region):
    """A fork child holds copies of the parent's views, but the blocks are the parent's:
    the child's put_many of [a block it took itself, an inherited view] must free
    neither, and both views stay good for their owners."""
    pool = Mempool(4, 64, shm=region)
    a, b = pool.get_many(2)
    h.fill(a, 5, 0)
    h.fill(b, 5, 1)
    done = h.Notice()

    def child():
        (c,) = pool.get_many(1)
        h.fill(c, 5, 2)
        try:
            pool.put_many([c, a])
        except ValueError as exc:
            if "another process" not in str(exc):
                return 6
        else:
            return 3
        if pool.free_count != 1:  # a, b are the parent's, c still the child's
            return 4
        if not (usable(a, 5, 0) and usable(c, 5, 2)):
            return 5
        pool.put(c)
        done.send()
        return 0

    pid = h.fork_child(child)
    try:
        done.recv(pid=pid)
    finally:
        h.assert_exit(pid, 0)
        done.close()
    assert pool.free_count == 2
    assert usable(a, 5, 0) and usable(b, 5, 1)
    pool.put_many([a, b])
    assert pool.free_count == 4


# --- enqueue_many -------------------------------------------------------------------------


def test_enqueue_many_and_dequeue_many_keep_fifo_order(region):
    pool = Mempool(8, 64, shm=region)
    ring = Ring(8, shm=region)
    first = pool.get_many(3)
    for i, v in enumerate(first):
        h.fill(v, 6, i)
    ring.enqueue_many(first)
    assert all(released(v) for v in first)
    one = pool.get()
    h.fill(one, 6, 3)
    ring.enqueue(one)
    second = pool.get_many(2)
    for i, v in enumerate(second):
        h.fill(v, 6, 4 + i)
    ring.enqueue_many(tuple(second))
    assert len(ring) == 6
    out = ring.dequeue_many(4)
    assert [h.read(v) for v in out] == [(6, i) for i in range(4)]
    out += ring.dequeue_many(100)
    assert [h.read(v) for v in out] == [(6, i) for i in range(6)]
    for i, v in enumerate(out):
        h.check(v, 6, i)
    with pytest.raises(EmptyError):
        ring.dequeue_many(1)
    pool.put_many(out)
    assert pool.free_count == 8


def test_enqueue_many_all_or_nothing_when_not_all_fit(region):
    pool = Mempool(8, 64, shm=region)
    ring = Ring(4, shm=region)
    queued = pool.get_many(2)
    for i, v in enumerate(queued):
        h.fill(v, 7, i)
    ring.enqueue_many(queued)
    views = pool.get_many(3)
    for i, v in enumerate(views):
        h.fill(v, 8, i)
    with pytest.raises(FullError):
        ring.enqueue_many(views)  # 2 of 3 would fit: none go
    assert len(ring) == 2
    assert all(usable(v, 8, i) for i, v in enumerate(views))
    with pytest.raises(FullError):
        ring.enqueue_many(views, block=True, timeout=0.05)
    assert all(usable(v, 8, i) for i, v in enumerate(views))
    pool.put(ring.dequeue())
    ring.enqueue_many(views)  # now 3 fit
    assert all(released(v) for v in views)
    out = ring.dequeue_many(4)
    assert [h.read(v) for v in out] == [(7, 1)] + [(8, i) for i in range(3)]
    pool.put_many(out)
    assert pool.free_count == 8


def test_enqueue_many_more_than_capacity_is_value_error(region):
    pool = Mempool(8, 64, shm=region)
    ring = Ring(4, shm=region)
    views = pool.get_many(5)
    for i, v in enumerate(views):
        h.fill(v, 9, i)
    with pytest.raises(ValueError, match="never fit"):
        ring.enqueue_many(views)
    with pytest.raises(ValueError, match="never fit"):
        ring.enqueue_many(views, block=True)  # no waiting for what can never happen
    assert len(ring) == 0
    assert all(usable(v, 9, i) for i, v in enumerate(views))
    ring.enqueue_many(views[:4])  # exactly the capacity fits
    assert len(ring) == 4
    pool.put_many(ring.dequeue_many(4) + views[4:])
    assert pool.free_count == 8


def test_enqueue_many_duplicate_is_value_error(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    a, b = pool.get_many(2)
    h.fill(a, 10, 0)
    h.fill(b, 10, 1)
    with pytest.raises(ValueError, match="twice"):
        ring.enqueue_many([a, b, b])
    assert len(ring) == 0
    assert usable(a, 10, 0) and usable(b, 10, 1)
    ring.enqueue_many([a, b])
    pool.put_many(ring.dequeue_many(2))


@pytest.mark.parametrize("kind", ["foreign", "not_a_view", "released", "slice_alive", "slice"])
def test_enqueue_many_with_one_bad_item_queues_nothing(region, kind):
    pool = Mempool(6, 64, shm=region)
    ring = Ring(6, shm=region)
    good = pool.get_many(2)
    for i, v in enumerate(good):
        h.fill(v, 11, i)
    bad, exc, cleanup = _bad_items(region, pool)[kind]()
    with pytest.raises(exc):
        ring.enqueue_many([good[0], bad, good[1]])
    assert len(ring) == 0
    assert all(usable(v, 11, i) for i, v in enumerate(good))
    cleanup()
    ring.enqueue_many(good)
    pool.put_many(ring.dequeue_many(2))
    assert pool.free_count == pool.count


def test_enqueue_many_with_an_inherited_view_moves_nothing(region):
    """As for put_many: a fork child cannot hand on its parent's blocks, and a refused
    enqueue_many leaves every block, the child's own included, where it was."""
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    a, b = pool.get_many(2)
    h.fill(a, 12, 0)
    h.fill(b, 12, 1)
    done = h.Notice()

    def child():
        (c,) = pool.get_many(1)
        h.fill(c, 12, 2)
        try:
            ring.enqueue_many([c, a])
        except ValueError:
            pass
        else:
            return 3
        if len(ring) != 0:
            return 4
        if not usable(c, 12, 2):
            return 5
        ring.enqueue(c)  # the child's own block goes through
        done.send()
        return 0

    pid = h.fork_child(child)
    try:
        done.recv(pid=pid)
    finally:
        h.assert_exit(pid, 0)
        done.close()
    out = ring.dequeue()
    h.check(out, 12, 2)
    pool.put_many([out, a, b])
    assert pool.free_count == 4


def test_enqueue_many_empty_is_a_no_op(region):
    ring = Ring(2, shm=region)
    ring.enqueue_many([])
    assert len(ring) == 0


def test_dequeue_many_blocks_of_several_pools(region):
    small = Mempool(4, 32, shm=region)
    large = Mempool(4, 4096, shm=region)
    ring = Ring(8, shm=region)
    views = [small.get(), large.get(), small.get(), large.get()]
    for i, v in enumerate(views):
        h.fill(v, 13, i)
    ring.enqueue_many(views)
    out = ring.dequeue_many(4)
    assert [len(v) for v in out] == [32, 4096, 32, 4096]
    for i, v in enumerate(out):
        h.check(v, 13, i)
    with pytest.raises(ValueError, match="another Mempool"):
        small.put_many(out)  # two of them are the other pool's: none go back
    assert small.free_count == 2 and large.free_count == 2
    small.put_many([out[0], out[2]])
    large.put_many([out[1], out[3]])
    assert small.free_count == 4 and large.free_count == 4


@pytest.mark.parametrize("n", [0, -3])
def test_dequeue_many_n_below_one_is_value_error(region, n):
    ring = Ring(2, shm=region)
    with pytest.raises(ValueError):
        ring.dequeue_many(n)


# --- across processes ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_bulk_producer_and_consumer_processes(region, method):
    ctx = multiprocessing.get_context(method)
    pool = Mempool(16, 256, shm=region)
    ring = Ring(8, shm=region)
    n = 3000
    consumer = ctx.Process(target=h.bulk_consumer, args=(pool, ring, n, 14, 5))
    producer = ctx.Process(target=h.bulk_producer, args=(pool, ring, n, 14, 7))
    consumer.start()
    producer.start()
    assert h.join_all([consumer, producer]) == [0, 0]
    assert len(ring) == 0 and pool.free_count == pool.count


def test_get_many_woken_by_put_in_another_process(region):
    pool = Mempool(4, 64, shm=region)
    held = pool.get_many(4)
    notice = h.Notice()

    def child():
        notice.send()
        views = pool.get_many(4, block=True)
        assert 1 <= len(views) <= 4
        pool.put_many(views)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(pool, "not_empty", pids=[pid])
        pool.put_many(held)
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    assert pool.free_count == 4


def test_enqueue_many_woken_when_all_fit(region):
    """A blocked enqueue_many waits until there is room for all of its blocks."""
    pool = Mempool(8, 64, shm=region)
    ring = Ring(4, shm=region)
    queued = pool.get_many(4)
    for i, v in enumerate(queued):
        h.fill(v, 15, i)
    ring.enqueue_many(queued)
    notice = h.Notice()

    def child():
        mine = pool.get_many(3)  # the child's own blocks: only they can be handed on
        for i, v in enumerate(mine):
            h.fill(v, 15, 4 + i)
        notice.send()
        ring.enqueue_many(mine, block=True)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(ring, "not_full", pids=[pid])
        out = ring.dequeue_many(2)  # room for two: not enough, the child sleeps on
        h.wait_for_sleepers(ring, "not_full", pids=[pid])
        assert len(ring) == 2
        out += ring.dequeue_many(1)  # room for three
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    out += ring.dequeue_many(8)
    assert [h.read(v) for v in out] == [(15, i) for i in range(7)]
    pool.put_many(out)
    assert pool.free_count == 8
