"""Mempool.reclaim(): blocks held by processes that no longer exist go back to the pool."""
import os
import signal
import struct

import pytest

from conftest import fork_child, wait_child
from pyshm import Mempool, Ring, ShareMem

HOLDER_PID_SHIFT = 42
# struct pyshm_pool_shared: 128-byte object header, then count, elt_size, stride, flags,
# slots_offset, states_offset, data_offset, holders_offset (u64 each).
STATES_OFFSET_AT = 128 + 5 * 8
HOLDERS_OFFSET_AT = 128 + 7 * 8


def pool_offset(pool):
    return pool.__reduce__()[1][1]


def holder_words(shm, pool):
    raw = memoryview(shm)
    try:
        at = struct.unpack_from("=Q", raw, pool_offset(pool) + HOLDERS_OFFSET_AT)[0]
        return [struct.unpack_from("=Q", raw, at + 8 * i)[0] for i in range(pool.count)]
    finally:
        raw.release()


def kill_holding(pool, ring, hold, queue):
    """A child that takes `hold` blocks and queues `queue` more, then is SIGKILLed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            held = [pool.get() for _ in range(hold)]
            for _ in range(queue):
                ring.enqueue(pool.get())
            os.write(w, b"k")
            signal.pause()
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"k"
    os.close(r)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.fixture
def setup():
    shm = ShareMem(1 << 20)
    pool = Mempool(16, 64, shm=shm)
    ring = Ring(16, shm=shm)
    yield shm, pool, ring
    pool.cleanup()
    ring.cleanup()


def test_reclaims_blocks_of_a_killed_process_but_not_those_in_a_ring(setup):
    shm, pool, ring = setup
    kill_holding(pool, ring, hold=5, queue=2)
    assert pool.free_count == 9
    assert pool.reclaim() == 5
    assert pool.free_count == 14
    assert len(ring) == 2  # still deliverable
    views = [ring.dequeue(), ring.dequeue()]
    pool.put_many(views)
    assert pool.free_count == pool.count
    assert pool.reclaim() == 0


def test_blocks_of_live_processes_are_left_alone(setup):
    shm, pool, ring = setup
    mine = pool.get()
    to_parent, to_child = os.pipe(), os.pipe()

    def child():
        held = pool.get()
        os.write(to_parent[1], b"h")
        assert os.read(to_child[0], 1) == b"g"
        pool.put(held)

    pid = fork_child(child)
    try:
        assert os.read(to_parent[0], 1) == b"h"
        assert pool.reclaim() == 0  # the child and this process both still hold theirs
        assert pool.free_count == pool.count - 2
        os.write(to_child[1], b"g")
    finally:
        wait_child(pid)
        for fd in to_parent + to_child:
            os.close(fd)
    pool.put(mine)
    assert pool.free_count == pool.count


def test_holder_word_names_this_process(setup):
    shm, pool, ring = setup
    views = [pool.get() for _ in range(3)]
    words = holder_words(shm, pool)
    assert {w >> HOLDER_PID_SHIFT for w in words[:3]} == {os.getpid()}
    assert len(set(words[:3])) == 1 and words[0] & ((1 << HOLDER_PID_SHIFT) - 1) != 0
    pool.put_many(views)


def test_a_reused_pid_is_not_mistaken_for_the_holder(setup):
    """Same pid, other start time: the holder is gone even though the pid runs."""
    shm, pool, ring = setup
    view = pool.get()
    index = [i for i, w in enumerate(holder_words(shm, pool)) if w >> HOLDER_PID_SHIFT == os.getpid()]
    assert len(index) == 1
    raw = memoryview(shm)
    at = struct.unpack_from("=Q", raw, pool_offset(pool) + HOLDERS_OFFSET_AT)[0] + 8 * index[0]
    word = struct.unpack_from("=Q", raw, at)[0]
    struct.pack_into("=Q", raw, at, word ^ 1)  # an earlier process that had this pid
    raw.release()
    assert pool.reclaim() == 1
    assert pool.free_count == pool.count
    with pytest.raises(ValueError):
        pool.put(view)  # our view is stale now: refused, nothing freed twice


def test_reclaim_after_cleanup_is_refused(setup):
    shm, pool, ring = setup
    pool.cleanup()
    with pytest.raises(ValueError):
        pool.reclaim()
