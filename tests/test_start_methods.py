"""ShareMem, Mempool and Ring passed to other processes under every start method.

An unnamed region (a memfd) travels as a file descriptor through multiprocessing's own
machinery (reduction.DupFd): as a Process argument, as a Pool initializer argument,
through a Queue or a Pipe, under 'fork', 'spawn' and 'forkserver'. The receiver maps
the very same memory. A region received twice in one process is one ShareMem object.
Plain pickle refuses an unnamed region, and a SIGKILLed user leaves no name behind.
"""
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import time
from multiprocessing import resource_sharer
from multiprocessing.reduction import ForkingPickler

import pytest

import pyshm
from pyshm import Mempool, Ring, ShareMem

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # spawn and forkserver children inherit sys.path
    sys.path.insert(0, _HERE)
import mp_helpers as h  # noqa: E402

METHODS = ["fork", "spawn", "forkserver"]

# pyshm.shm._mapped learns of a region only when the region is pickled (or unpickled).
# A fork child inherits the parent's ShareMem objects without any pickling, so when the
# parent had not pickled the region before forking, the same region received later in
# the child becomes a second ShareMem object, and a block of the inherited pool is then
# refused by the received ring ("this block belongs to another ShareMem"). Fork Pool
# workers that get the pool from the initializer and the ring with each task hit this.


@pytest.fixture(params=METHODS)
def ctx(request):
    return multiprocessing.get_context(request.param)


@pytest.fixture(autouse=True)
def _stop_resource_sharer():
    """Sending a region through a Queue or Pipe starts multiprocessing's resource-sharer
    thread in the sender; stop it so that later fork tests fork a one-thread process."""
    yield
    resource_sharer.stop(timeout=h.GUARD)


@pytest.fixture
def region():
    shm = ShareMem(1 << 20)
    yield shm
    gc.collect()
    try:
        shm.cleanup()
    except BufferError:
        pass  # a failed test still holds views; the garbage collector unmaps it later


def _drain_and_check(pool, ring, tag, n):
    """Dequeue exactly n blocks (tag, 0..n-1) in order, without waiting, and put them back."""
    for i in range(n):
        buf = ring.dequeue()
        h.check(buf, tag, i)
        pool.put(buf)
    with pytest.raises(pyshm.EmptyError):
        ring.dequeue()


def _close_queue(q):
    q.close()
    q.join_thread()


# --- Process arguments ------------------------------------------------------------------


def test_process_args_share_memory(ctx, region):
    pool = Mempool(8, 512, shm=region)
    ring = Ring(8, shm=region)
    back = Ring(8, shm=region)
    n = 5
    for i in range(n):
        buf = pool.get()
        h.fill(buf, 100, i)
        ring.enqueue(buf)
    p = ctx.Process(target=h.verify_then_reply, args=(region, pool, ring, back, n, 100))
    p.start()
    assert h.join_all([p]) == [0]
    # the child read what we wrote, and we read what it wrote
    assert len(ring) == 0
    _drain_and_check(pool, back, 101, n)
    assert pool.free_count == pool.count


# --- Pool initializer -------------------------------------------------------------------


def test_pool_initializer_receives_pool_and_ring(ctx, region):
    pool = Mempool(16, 256, shm=region)
    ring = Ring(16, shm=region)
    n = 12
    workers = ctx.Pool(2, initializer=h.pool_init, initargs=(pool, ring))
    try:
        pids = workers.map_async(h.pool_task, range(n)).get(timeout=h.GUARD)
        workers.close()
        workers.join()
    finally:
        workers.terminate()
    assert os.getpid() not in pids
    got = {}
    for _ in range(n):
        buf = ring.dequeue()
        tag, i = h.read(buf)
        h.check(buf, 7, i)
        got[i] = True
        pool.put(buf)
    assert sorted(got) == list(range(n))
    assert len(ring) == 0 and pool.free_count == pool.count


def test_pool_worker_receives_region_twice(ctx, region):
    """The pool arrives with the initializer, the ring with each task: one ShareMem."""
    pool = Mempool(16, 256, shm=region)
    ring = Ring(16, shm=region)
    n = 10
    workers = ctx.Pool(2, initializer=h.pool_init_region, initargs=(pool,))
    try:
        workers.starmap_async(h.pool_task_with_ring, [(ring, i) for i in range(n)]).get(timeout=h.GUARD)
        workers.close()
        workers.join()
    finally:
        workers.terminate()
    seen = set()
    for _ in range(n):
        buf = ring.dequeue()
        _, i = h.read(buf)
        h.check(buf, 8, i)
        seen.add(i)
        pool.put(buf)
    assert seen == set(range(n))
    assert pool.free_count == pool.count


# --- Queue and Pipe ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["queue", "pipe"])
def test_through_queue_or_pipe(ctx, region, transport):
    pool = Mempool(8, 1024, shm=region)
    ring = Ring(8, shm=region)
    back = Ring(8, shm=region)
    n = 6
    for i in range(n):
        buf = pool.get()
        h.fill(buf, 200, i)
        ring.enqueue(buf)
    done = ctx.Queue()
    if transport == "queue":
        channel = ctx.Queue()
        mine = channel
    else:
        mine, channel = ctx.Pipe()
    p = ctx.Process(target=h.from_channel, args=(channel, done))
    p.start()
    if transport == "queue":
        mine.put((pool, ring, back, n, 200))
    else:
        mine.send((pool, ring, back, n, 200))
    status, pid = h.receive(done, [p])
    assert (status, pid) == ("ok", p.pid)
    assert h.join_all([p]) == [0]
    _drain_and_check(pool, back, 201, n)
    assert len(ring) == 0 and pool.free_count == pool.count
    if transport == "queue":
        _close_queue(channel)
    else:
        mine.close()
        channel.close()
    _close_queue(done)


def test_region_received_twice_is_one_object(ctx, region):
    """As a Process argument, then again (with a pool and a ring) through a Queue."""
    pool = Mempool(4, 128, shm=region)
    ring = Ring(4, shm=region)
    q, done = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=h.region_twice, args=(region, q, done, 4, 300))
    p.start()
    q.put((pool, ring, region))
    assert h.receive(done, [p]) == p.pid
    assert h.join_all([p]) == [0]
    _drain_and_check(pool, ring, 300, 4)
    _close_queue(q)
    _close_queue(done)


def test_inherited_region_then_received_is_one_object(region):
    """A fork child has the parent's region already; receiving it must give that object."""
    ctx = multiprocessing.get_context("fork")
    pool = Mempool(2, 64, shm=region)
    ring = Ring(2, shm=region)
    q = ctx.Queue()
    p = ctx.Process(target=h.inherited_then_received, args=(region, pool, q))
    p.start()
    q.put(ring)
    codes = h.join_all([p])
    _close_queue(q)
    assert codes == [0]
    buf = ring.dequeue()
    h.check(buf, 600, 0)
    pool.put(buf)


def test_region_made_in_child_reaches_parent(ctx):
    q, ack = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=h.create_and_send, args=(q, ack, 4, 400))
    p.start()
    try:
        pool, ring = h.receive(q, [p])
    finally:
        ack.set()
    assert h.join_all([p]) == [0]
    shm = pool.shm
    assert ring.shm is shm
    assert shm.name is None
    # the child is gone; its region lives on here
    _drain_and_check(pool, ring, 400, 4)
    assert pool.free_count == 4
    pool.cleanup()
    ring.cleanup()
    shm.cleanup()
    _close_queue(q)


def test_round_trip_in_one_process_is_the_same_object(region):
    pool = Mempool(2, 64, shm=region)
    ring = Ring(2, shm=region)
    assert ForkingPickler.loads(ForkingPickler.dumps(region)) is region
    pool2, ring2 = ForkingPickler.loads(ForkingPickler.dumps((pool, ring)))
    assert pool2.shm is region and ring2.shm is region
    assert pool2 is not pool
    buf = pool2.get()
    h.fill(buf, 1, 2)
    ring.enqueue(buf)  # a block of the received pool goes into the original ring
    buf = ring2.dequeue()
    h.check(buf, 1, 2)
    pool.put(buf)
    assert pool.free_count == 2


def test_unnamed_region_is_a_memfd(region):
    assert region.name is None
    target = os.readlink(f"/proc/self/fd/{region.fileno()}")
    assert target.startswith("/memfd:"), target


# --- plain pickle -----------------------------------------------------------------------


@pytest.mark.parametrize("what", ["shm", "pool", "ring", "both"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_plain_pickle_of_unnamed_region_is_type_error(region, what, protocol):
    pool = Mempool(2, 64, shm=region)
    ring = Ring(2, shm=region)
    obj = {"shm": region, "pool": pool, "ring": ring, "both": [pool, ring]}[what]
    with pytest.raises(TypeError) as info:
        pickle.dumps(obj, protocol=protocol)
    message = str(info.value)
    assert "multiprocessing" in message and "name=" in message
    # nothing was disturbed
    assert not region.closed
    buf = pool.get()
    pool.put(buf)


# --- a producer and a consumer in two children ------------------------------------------


def test_producer_consumer_pair(ctx, region):
    pool = Mempool(8, 256, shm=region)
    ring = Ring(4, shm=region)  # small: both sides will have to wait
    n = 3000
    consumer = ctx.Process(target=h.consumer, args=(pool, ring, n, 500))
    producer = ctx.Process(target=h.producer, args=(pool, ring, n, 500))
    consumer.start()
    producer.start()
    assert h.join_all([consumer, producer]) == [0, 0]
    assert len(ring) == 0
    assert pool.free_count == pool.count


# --- a SIGKILLed user leaves no name ------------------------------------------------------


def _shm_names():
    return set(os.listdir("/dev/shm"))


def test_sigkilled_child_leaves_nothing_in_dev_shm(ctx):
    before = _shm_names()
    mine, theirs = ctx.Pipe()
    p = ctx.Process(target=h.sigkill_victim, args=(theirs,))
    p.start()
    try:
        assert mine.poll(h.GUARD), "the child did not report"
        what, maps = mine.recv()
        assert what == "ready"
        assert "/memfd:pyshm" in maps  # the region is an anonymous file
        os.kill(p.pid, signal.SIGKILL)
    finally:
        h.join_all([p])
    assert p.exitcode == -signal.SIGKILL
    leaked = _shm_names() - before
    # Other programs may come and go in /dev/shm meanwhile; a leak would stay.
    deadline = time.monotonic() + 2.0
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        leaked &= _shm_names()
    assert not leaked, f"left behind in /dev/shm: {sorted(leaked)}"
    mine.close()
    theirs.close()
