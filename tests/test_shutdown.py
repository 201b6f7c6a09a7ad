"""Ring.shutdown(immediate=False), with queue.Queue.shutdown semantics, across processes.

After shutdown() enqueue raises pyshm.ShutDown; dequeue drains what is left, then raises
ShutDown. shutdown(immediate=True) also puts every queued block back into its pool, and
dequeue raises at once. Either wakes every caller blocked on the ring, in every process.
"""
import gc
import multiprocessing
import os
import queue
import sys
import threading

import pytest

import pyshm
import pyshm.ring
from pyshm import EmptyError, FullError, Mempool, Ring, ShareMem, ShutDown

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
    h.check(view, tag, seq)
    view[-1] = view[-1]
    return True


def queue_blocks(pool, ring, tag, n):
    for i in range(n):
        buf = pool.get()
        h.fill(buf, tag, i)
        ring.enqueue(buf)


# --- the exception -------------------------------------------------------------------------


def test_shutdown_exception_hierarchy():
    assert issubclass(ShutDown, pyshm.PyshmError)
    assert issubclass(ShutDown, pyshm.RingError)
    assert pyshm.ring.ShutDown is ShutDown
    if hasattr(queue, "ShutDown"):  # Python 3.13+
        assert issubclass(ShutDown, queue.ShutDown)
    # a loop that retries on Empty or Full must not swallow it
    assert not issubclass(ShutDown, (queue.Empty, queue.Full, EmptyError, FullError))


# --- in one process ---------------------------------------------------------------------


def test_graceful_shutdown_drains_then_raises(region):
    pool = Mempool(8, 64, shm=region)
    ring = Ring(8, shm=region)
    assert ring.is_shutdown is False
    queue_blocks(pool, ring, 1, 4)
    ring.shutdown()
    assert ring.is_shutdown is True
    # nothing new goes in; the views stay the caller's
    late = pool.get()
    h.fill(late, 2, 0)
    with pytest.raises(ShutDown):
        ring.enqueue(late)
    with pytest.raises(ShutDown):
        ring.enqueue(late, block=True)
    with pytest.raises(ShutDown):
        ring.enqueue_many([late], block=True, timeout=h.GUARD)
    assert usable(late, 2, 0)
    # what is queued still comes out, in order
    assert len(ring) == 4
    first = ring.dequeue()
    h.check(first, 1, 0)
    rest = ring.dequeue_many(2)
    assert [h.read(v) for v in rest] == [(1, 1), (1, 2)]
    last = ring.dequeue(block=True)
    h.check(last, 1, 3)
    # then ShutDown, blocking or not, without waiting
    with pytest.raises(ShutDown):
        ring.dequeue()
    with pytest.raises(ShutDown):
        ring.dequeue(block=True)
    with pytest.raises(ShutDown):
        ring.dequeue(block=True, timeout=h.GUARD)
    with pytest.raises(ShutDown):
        ring.dequeue_many(3, block=True)
    # the pool is not shut down
    pool.put_many([first, *rest, last, late])
    assert pool.free_count == pool.count
    buf = pool.get(block=True)
    pool.put(buf)


def test_immediate_shutdown_returns_blocks_to_their_pools(region):
    small = Mempool(6, 32, shm=region)
    large = Mempool(3, 1024, shm=region)
    ring = Ring(8, shm=region)
    queue_blocks(small, ring, 3, 4)
    queue_blocks(large, ring, 4, 2)
    kept = small.get()
    assert (small.free_count, large.free_count, len(ring)) == (1, 1, 6)
    ring.shutdown(immediate=True)
    assert ring.is_shutdown
    assert len(ring) == 0
    assert small.free_count == 5 and large.free_count == 3
    with pytest.raises(ShutDown):
        ring.dequeue()
    with pytest.raises(ShutDown):
        ring.dequeue_many(4, block=True)
    with pytest.raises(ShutDown):
        ring.enqueue(kept)
    small.put(kept)
    assert small.free_count == small.count


def test_immediate_after_graceful_drains(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    queue_blocks(pool, ring, 5, 3)
    ring.shutdown()
    ring.shutdown()  # again: no change
    buf = ring.dequeue()
    assert len(ring) == 2
    ring.shutdown(immediate=True)
    assert len(ring) == 0 and pool.free_count == 3
    with pytest.raises(ShutDown):
        ring.dequeue()
    pool.put(buf)


def test_graceful_after_immediate_stays_immediate(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    ring.shutdown(immediate=True)
    ring.shutdown()
    assert ring.is_shutdown
    buf = pool.get()
    with pytest.raises(ShutDown):
        ring.enqueue(buf)
    with pytest.raises(ShutDown):
        ring.dequeue()
    pool.put(buf)


def test_shutdown_of_a_closed_ring_is_value_error(region):
    ring = Ring(2, shm=region)
    ring.cleanup()
    with pytest.raises(ValueError):
        ring.shutdown()
    with pytest.raises(ValueError):
        ring.is_shutdown


# --- across processes ---------------------------------------------------------------------


def test_shutdown_in_child_seen_here(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    queue_blocks(pool, ring, 6, 2)

    def child():
        ring.shutdown()
        assert ring.is_shutdown

    h.assert_exit(h.fork_child(child))
    assert ring.is_shutdown
    buf = pool.get()
    with pytest.raises(ShutDown):
        ring.enqueue(buf)
    out = ring.dequeue_many(4)
    assert [h.read(v) for v in out] == [(6, 0), (6, 1)]
    with pytest.raises(ShutDown):
        ring.dequeue()
    pool.put_many(out + [buf])


def test_immediate_shutdown_returns_blocks_of_a_pool_made_elsewhere(region):
    """The blocks' pool was made by a child after this process last looked: the drain
    still finds it and puts every block back."""
    ring = Ring(8, shm=region)

    def child():
        pool = Mempool(5, 64, shm=region, name="late")
        queue_blocks(pool, ring, 7, 5)

    h.assert_exit(h.fork_child(child))
    assert len(ring) == 5
    ring.shutdown(immediate=True)
    assert len(ring) == 0
    assert Mempool.attach(region, "late").free_count == 5


def test_graceful_shutdown_lets_a_consumer_elsewhere_drain(region):
    pool = Mempool(8, 64, shm=region)
    ring = Ring(8, shm=region)
    queue_blocks(pool, ring, 8, 5)
    ring.shutdown()

    def child():
        for i in range(5):
            buf = ring.dequeue(block=True)
            h.check(buf, 8, i)
            pool.put(buf)
        try:
            ring.dequeue(block=True)
        except ShutDown:
            return 0
        return 3

    h.assert_exit(h.fork_child(child))
    assert len(ring) == 0 and pool.free_count == pool.count


def _blocked_consumer(ring, notice, many):
    notice.send()
    try:
        if many:
            ring.dequeue_many(4, block=True)
        else:
            ring.dequeue(block=True)
    except ShutDown:
        os._exit(0)
    except BaseException:
        os._exit(2)
    os._exit(1)


def _blocked_producer(pool, ring, notice, many, tag):
    mine = pool.get_many(2) if many else [pool.get()]
    for i, buf in enumerate(mine):
        h.fill(buf, tag, i)
    notice.send()
    try:
        if many:
            ring.enqueue_many(mine, block=True)
        else:
            ring.enqueue(mine[0], block=True)
    except ShutDown:
        # still ours, untouched: give them back
        for i, buf in enumerate(mine):
            h.check(buf, tag, i)
        pool.put_many(mine)
        os._exit(0)
    except BaseException:
        os._exit(2)
    os._exit(1)


@pytest.mark.parametrize("immediate", [False, True], ids=["graceful", "immediate"])
def test_shutdown_wakes_every_waiter_in_every_process(region, immediate):
    """Consumers blocked on an empty ring and producers blocked on a full one, in forked
    children, a spawned child and a thread here, all with no timeout. Another child
    shuts both rings down; every waiter wakes with ShutDown."""
    pool = Mempool(32, 64, shm=region)
    empty = Ring(4, shm=region)
    full = Ring(2, shm=region)
    queue_blocks(pool, full, 9, 2)
    notice, go = h.Notice(), h.Notice()

    def shut_down():
        go.recv()
        empty.shutdown(immediate=immediate)
        full.shutdown(immediate=immediate)

    shutter = h.fork_child(shut_down)  # forked now, while this process has one thread
    pids = []
    pids += [h.fork_child(_blocked_consumer, empty, notice, many) for many in (False, False, True)]
    pids += [h.fork_child(_blocked_producer, pool, full, notice, many, 10 + k) for k, many in enumerate((False, True))]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    spawned = ctx.Process(target=h.wait_shutdown_dequeue, args=(empty, ready))
    spawned.start()
    outcome = []

    def thread_waiter():
        try:
            empty.dequeue(block=True)
        except ShutDown:
            outcome.append("ShutDown")
        except BaseException as exc:
            outcome.append(repr(exc))

    thread = threading.Thread(target=thread_waiter)
    thread.start()
    try:
        for _ in range(5):
            notice.recv()
        assert h.receive(ready, [spawned]) == spawned.pid
        h.wait_for_sleepers(empty, "not_empty", n=5, pids=pids[:3] + [spawned.pid])
        h.wait_for_sleepers(full, "not_full", n=2, pids=pids[3:])
        go.send()
        h.assert_exit(shutter, 0)
    finally:
        if not empty.is_shutdown:  # a failure above: do not leave anyone blocked
            empty.shutdown()
            full.shutdown()
            go.send()
            h.child_status(shutter)
        thread.join(h.GUARD)
        codes = [h.child_status(pid) for pid in pids]
        spawned_code = h.join_all([spawned])
        ready.close()
        ready.join_thread()
        notice.close()
        go.close()
    assert codes == [0] * 5
    assert spawned_code == [0]
    assert not thread.is_alive() and outcome == ["ShutDown"]
    assert h.sleepers(empty, "not_empty") == 0 and h.sleepers(full, "not_full") == 0
    # immediate: the two queued blocks went back; graceful: they are still to drain
    if not immediate:
        out = full.dequeue_many(2)
        assert [h.read(v) for v in out] == [(9, 0), (9, 1)]
        pool.put_many(out)
    assert len(full) == 0
    assert pool.free_count == pool.count
