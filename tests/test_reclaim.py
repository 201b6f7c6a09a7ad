"""Mempool.reclaim(): blocks held by processes that no longer exist go back to the pool."""
import os
import signal
import struct

import pytest

from conftest import fork_child, raw_region, wait_child
from pyshm import Mempool, Ring, ShareMem

# struct pyshm_pool_shared: 128-byte object header, then count, elt_size, stride, flags,
# slots_offset, states_offset, holders_offset, data_offset (u64 each). A block's state
# and holder words are side by side: 16 bytes a block.
HOLDERS_OFFSET_AT = 128 + 6 * 8
# The member table (src/core/member.h): at region offset 64, a 64-byte header, then
# 128-byte entries: owner word (incarnation << 3 | flags) at +0, pid at +64.
MEMBERS_AT = 64 + 64
ENTRY = 128


def pool_offset(pool):
    return pool.offset


def holder_words(shm, pool):
    raw = memoryview(shm)
    try:
        at = struct.unpack_from("=Q", raw, pool_offset(pool) + HOLDERS_OFFSET_AT)[0]
        return [struct.unpack_from("=Q", raw, at + 16 * i)[0] for i in range(pool.count)]
    finally:
        raw.release()


def member_of(shm, holder):
    """(owner word, pid) of the member entry a holder word names."""
    index = holder & 0xFF
    with memoryview(shm) as raw:
        owner = struct.unpack_from("=Q", raw, MEMBERS_AT + ENTRY * index)[0]
        pid = struct.unpack_from("=Q", raw, MEMBERS_AT + ENTRY * index + 64)[0]
    return owner, pid


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
    """A held block records the holder word of this process's member entry: the entry's
    index and incarnation, and the entry says which pid owns it."""
    shm, pool, ring = setup
    views = [pool.get() for _ in range(3)]
    words = holder_words(shm, pool)[:3]
    assert len(set(words)) == 1 and words[0] != 0
    owner, pid = member_of(shm, words[0])
    assert owner & 1, "the entry is owned"
    assert owner >> 3 == words[0] >> 8, "the holder word names the entry's current incarnation"
    assert pid == os.getpid()
    pool.put_many(views)


def test_liveness_is_not_read_from_the_pid(setup):
    """A process is alive while it holds the lock of its entry, whatever its entry says
    of its pid: a live holder whose recorded pid names no process keeps its blocks."""
    shm, pool, ring = setup
    to_parent, to_child = os.pipe(), os.pipe()

    def child():
        held = pool.get()
        held[:4] = b"mine"
        os.write(to_parent[1], b"h")
        assert os.read(to_child[0], 1) == b"g"
        assert bytes(held[:4]) == b"mine"
        pool.put(held)  # still the child's

    pid = fork_child(child)
    try:
        assert os.read(to_parent[0], 1) == b"h"
        word = next(w for w in holder_words(shm, pool) if w and member_of(shm, w)[1] == pid)
        at = MEMBERS_AT + ENTRY * (word & 0xFF) + 64
        dead = os.fork()
        if dead == 0:
            os._exit(0)
        os.waitpid(dead, 0)  # a pid that no process has now
        with raw_region(shm) as raw:
            struct.pack_into("=Q", raw, at, dead)
        assert pool.reclaim() == 0
        assert pool.free_count == pool.count - 1
        os.write(to_child[1], b"g")
    finally:
        wait_child(pid)
        for fd in to_parent + to_child:
            os.close(fd)
    assert pool.free_count == pool.count


def test_reclaim_after_cleanup_is_refused(setup):
    shm, pool, ring = setup
    pool.cleanup()
    with pytest.raises(ValueError):
        pool.reclaim()
