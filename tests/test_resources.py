"""Thousands of create/use/cleanup cycles leave nothing behind.

After warm-up, 10,000 cycles of unnamed regions, pools and rings (and a few hundred
named ones, unlinked) must bring the number of open file descriptors back exactly to
its baseline, leave no pyshm mapping in /proc/self/maps, and grow the resident set by
less than a generous absolute margin; a named region, once unlinked, leaves nothing in
/dev/shm. Error paths (a pool too big, a file that is not a region, a refused cleanup,
a wait that times out) are part of the cycles: they must not leak either.

``PYSHM_RESOURCE_CYCLES`` scales the number of unnamed cycles (default 10000).
"""
import gc
import os
import pickle

import pytest

import pyshm

CYCLES = int(os.environ.get("PYSHM_RESOURCE_CYCLES", "10000"))
NAMED_CYCLES = max(50, CYCLES // 25)
WARMUP = 300
RSS_MARGIN = 8 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def rss():
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def pyshm_mappings():
    """Lines of /proc/self/maps backed by a pyshm memfd or by /dev/shm."""
    with open("/proc/self/maps") as f:
        return [line for line in f if "memfd:pyshm" in line or "/dev/shm/" in line]


def registry_size():
    mapped = getattr(pyshm.shm, "_mapped", None)
    return None if mapped is None else len(mapped)


def unnamed_cycle(i):
    kind = i % 4
    if kind == 0:
        # A region with a pool and a ring, blocks passed around, everything cleaned up.
        shm = pyshm.ShareMem(64 * 1024)
        pool = pyshm.Mempool(4, 64, shm=shm)
        ring = pyshm.Ring(4, shm=shm)
        views = pool.get_many(3)
        ring.enqueue_many(views[:2])
        ring.enqueue(views[2])
        pool.put_many(ring.dequeue_many(3))
        raw = pyshm.RawBuffer(100, shm=shm)
        with memoryview(raw) as mv:
            mv[99] = 1
        with memoryview(shm) as whole:
            assert whole[0] == ord("S")
        ring.cleanup()
        pool.cleanup()
        shm.cleanup()
    elif kind == 1:
        # A pool with a region of its own, used as a context manager, then dropped.
        with pyshm.Mempool(2, 128) as pool:
            v = pool.get()
            v[:4] = b"abcd"
            pool.put(v)
        del pool
    elif kind == 2:
        # The same file mapped twice: the second mapping has its own descriptor.
        with pyshm.ShareMem(32 * 1024) as shm:
            pool = pyshm.Mempool(2, 64, shm=shm)
            ring = pyshm.Ring(2, shm=shm)
            offset = ring.__reduce__()[1][1]
            again = pyshm.ShareMem._from_fd(os.dup(shm.fileno()))
            ring2 = pyshm.Ring._from_offset(again, offset)
            ring2.enqueue(pyshm.Mempool._from_offset(again, pool.__reduce__()[1][1]).get())
            view = ring.dequeue()  # dequeued in the first mapping
            pool.put(view)
            del ring2
            again.cleanup()
    else:
        # Error paths.
        with pyshm.ShareMem(16 * 1024) as shm:
            with pytest.raises(ValueError):
                pyshm.Mempool(1000, 4096, shm=shm)
            pool = pyshm.Mempool(1, 64, shm=shm)
            held = pool.get()
            with pytest.raises(pyshm.EmptyError):
                pool.get(block=True, timeout=0)
            with pytest.raises(BufferError):
                shm.cleanup()
            with pytest.raises(TypeError):
                pickle.dumps(shm)
            pool.put(held)
        fd = os.memfd_create("not-a-region")
        os.ftruncate(fd, 4096)
        with pytest.raises(pyshm.ShareMemError):
            pyshm.ShareMem._from_fd(fd)  # takes the descriptor, also on failure


def our_names(prefix):
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]


def named_cycle(prefix, i):
    name = f"{prefix}{i}"
    shm = pyshm.ShareMem(32 * 1024, name=name)
    try:
        assert our_names(prefix) == [name]
        pool = pyshm.Mempool(2, 64, shm=shm, name="pool")
        ring = pyshm.Ring(2, shm=shm, name="ring")
        same = pyshm.ShareMem.attach(name)  # this process already maps it: the same object
        assert same is shm
        pyshm.Ring.attach(same, "ring").enqueue(pyshm.Mempool.attach(same, "pool").get())
        pool.put(ring.dequeue())
        assert pickle.loads(pickle.dumps(shm)) is shm
    finally:
        shm.unlink()
    assert our_names(prefix) == []
    with pytest.raises(FileNotFoundError):
        pyshm.ShareMem.attach(name)
    with pytest.raises(FileNotFoundError):
        shm.unlink()
    shm.cleanup()


def measure():
    gc.collect()
    return fd_count(), rss(), len(pyshm_mappings()), registry_size()


def check_flat(before, after, what):
    fds0, rss0, maps0, reg0 = before
    fds1, rss1, maps1, reg1 = after
    assert fds1 == fds0, f"{what}: {fds1 - fds0} file descriptors leaked ({fds0} -> {fds1})"
    assert maps1 == maps0, f"{what}: {maps1 - maps0} pyshm mappings left in /proc/self/maps"
    assert rss1 - rss0 < RSS_MARGIN, f"{what}: resident set grew by {(rss1 - rss0) >> 10} KiB"
    assert reg1 == reg0, f"{what}: the region registry grew from {reg0} to {reg1} entries"


def test_unnamed_cycles_leave_nothing():
    for i in range(WARMUP):
        unnamed_cycle(i)
    before = measure()
    for i in range(CYCLES):
        unnamed_cycle(i)
    after = measure()
    print(f"{CYCLES} unnamed cycles: fds {before[0]} -> {after[0]}, rss {before[1] >> 10} -> {after[1] >> 10} KiB")
    check_flat(before, after, f"{CYCLES} cycles of unnamed regions, pools and rings")


def test_named_cycles_leave_nothing():
    prefix = f"pyshm-resources-{os.getpid()}-"
    try:
        for i in range(WARMUP // 10):
            named_cycle(prefix, i)
        before = measure()
        for i in range(NAMED_CYCLES):
            named_cycle(prefix, WARMUP + i)
        after = measure()
        check_flat(before, after, f"{NAMED_CYCLES} cycles of named regions")
        assert our_names(prefix) == []
    finally:
        for leftover in our_names(prefix):
            os.unlink(os.path.join("/dev/shm", leftover))


def test_fork_children_leave_nothing():
    """Regions created and cleaned up in fork children, blocks passed by children: the
    parent's descriptors and mappings stay as they were."""
    shm = pyshm.ShareMem(64 * 1024)
    pool = pyshm.Mempool(8, 64, shm=shm)
    ring = pyshm.Ring(8, shm=shm)
    before = measure()
    for i in range(100):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with pyshm.ShareMem(16 * 1024) as own:
                    own_pool = pyshm.Mempool(1, 8, shm=own)
                    own_pool.put(own_pool.get())
                v = pool.get()
                v[0] = i % 256
                ring.enqueue(v)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child {i}: status {status:#x}"
        v = ring.dequeue()
        assert v[0] == i % 256
        pool.put(v)
    after = measure()
    check_flat(before, after, "fork children")
    ring.cleanup()
    pool.cleanup()
    shm.cleanup()
