"""Misuse and big inputs: no hang, no machine-wide OOM, no silent leak, no crash repair
silently switched off, one way of checking arguments."""
import errno
import gc
import os
import re
import signal
import struct
import sys
import threading
import time
import warnings

import pytest

import pyshm
from pyshm import EmptyError, FullError, Mempool, RawBuffer, Ring, ShareMem, ShareMemError

from conftest import child_status, fork_child, raw_region, wait_child

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- 1. creating big objects makes nothing resident ----------------------------------------


def test_big_ring_and_pool_in_a_sparse_region_stay_unresident():
    """A 64 GiB region, a ring of 2^26 entries (1 GiB of slots) and a pool of 2^25 blocks:
    creation writes headers only, so the resident set hardly moves."""
    before = rss_kib()
    shm = ShareMem(1 << 36)
    ring = Ring(1 << 26, shm=shm)
    pool = Mempool(1 << 25, 8, shm=shm)
    after = rss_kib()
    assert after - before < 8 * 1024, f"creation made {after - before} KiB resident"
    # and they work: the first blocks and slots are touched only when used
    views = pool.get_many(4)
    ring.enqueue_many(views)
    pool.put_many(ring.dequeue_many(4))
    assert pool.free_count == pool.count
    assert rss_kib() - before < 16 * 1024
    ring.close()
    pool.close()
    shm.close()


def test_huge_pool_in_its_own_region_is_sparse():
    """Mempool(10**8, 8) with no region given: a 4 GB region of its own, nothing resident."""
    before = rss_kib()
    pool = Mempool(10**8, 8)
    assert rss_kib() - before < 8 * 1024
    buf = pool.get()
    buf[:8] = b"12345678"
    pool.put(buf)
    assert pool.free_count == 10**8
    pool.close()


def test_ring_of_2_to_the_40_entries_in_the_largest_region():
    """Ring(2**40) in a 2**46-byte region: inside the documented limits, and sparse."""
    before = rss_kib()
    shm = ShareMem(1 << 46)
    pool = Mempool(4, 64, shm=shm)
    ring = Ring(1 << 40, shm=shm)
    assert rss_kib() - before < 8 * 1024
    ring.enqueue(pool.get())
    pool.put(ring.dequeue())
    ring.close()
    pool.close()
    shm.close()


def test_no_address_space_is_memory_error_at_creation():
    """Regions whose mapping cannot be had fail at creation with MemoryError."""
    regions = []
    try:
        with pytest.raises(MemoryError):
            for _ in range(64):  # 64 TiB each: the address space runs out long before
                regions.append(ShareMem(1 << 46))
    finally:
        for r in regions:
            r.close()


# --- 2. cleanup() of a handle another thread waits on --------------------------------------


@pytest.mark.parametrize("timeout", [None, 60])
@pytest.mark.parametrize("kind", ["ring", "pool"])
def test_cleanup_wakes_a_waiter_with_a_clear_error(kind, timeout):
    shm = ShareMem(1 << 16)
    pool = Mempool(1, 64, shm=shm)
    ring = Ring(2, shm=shm)
    held = pool.get() if kind == "pool" else None
    outcome = []

    def wait():
        try:
            if kind == "ring":
                ring.dequeue(block=True, timeout=timeout)
            else:
                pool.get(block=True, timeout=timeout)
            outcome.append("returned")
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            outcome.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    obj = ring if kind == "ring" else pool
    deadline = time.monotonic() + 60
    while obj._waiting() == 0:  # the thread is inside the call
        assert time.monotonic() < deadline
        time.sleep(0.001)
    obj.cleanup()
    t.join(60)
    assert not t.is_alive(), "the waiter stayed asleep after cleanup()"
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    assert "closed" in str(outcome[0]) and "waited" in str(outcome[0])
    obj.cleanup()  # a second time: harmless
    with pytest.raises(ValueError, match="closed"):
        ring.shutdown() if kind == "ring" else pool.get()
    if held is not None:
        # The pool itself goes on: another handle on it still works.
        Mempool._from_offset(shm, pool.offset).put(held)
    shm.close()


def _hold_repair_lock(shm):
    """Take the region's repair lock (an OFD lock on the member table's first byte, just
    after the 64-byte region header) through a description of our own: to reclaim(), it
    looks as if another process were repairing."""
    import fcntl
    import struct

    fd = os.open(f"/proc/self/fd/{shm.fileno()}", os.O_RDWR)
    F_OFD_SETLK = 37
    fcntl.fcntl(fd, F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 64, 1, 0))
    return fd


def test_cleanup_refused_while_reclaim_waits_for_another_repairer():
    """reclaim() waits without the GIL while another process repairs: the region must not
    be unmapped under it (it used to be, and the repair then ran on a closed region)."""
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 8, shm=shm)
    pool.put(pool.get())  # this process is a member
    fd = _hold_repair_lock(shm)
    result = []
    t = threading.Thread(target=lambda: result.append(pool.reclaim()))
    t.start()
    try:
        deadline = time.monotonic() + 60
        while pool._waiting() == 0:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.001)
        with pytest.raises(BufferError, match="waiting"):
            shm.cleanup()
        assert not shm.closed
    finally:
        os.close(fd)  # the other "repairer" is done
        t.join(60)
    assert not t.is_alive()
    assert result == [0]
    assert pool._waiting() == 0
    shm.cleanup()
    assert shm.closed


def test_cleanup_of_the_pool_while_reclaim_waits():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 8, shm=shm)
    pool.put(pool.get())
    fd = _hold_repair_lock(shm)
    outcome = []

    def run():
        try:
            outcome.append(pool.reclaim())
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while pool._waiting() == 0:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.001)
        pool.cleanup()
        t.join(60)
    finally:
        os.close(fd)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    shm.cleanup()


def test_view_made_while_enqueue_waits_stops_the_hand_over():
    """A blocking enqueue() pins its view while it sleeps; a signal handler (or another
    thread) that makes a new view of the block meanwhile must not see the block leave with
    that view: BufferError, and the block stays the caller's."""
    shm = ShareMem(1 << 16)
    pool = Mempool(4, 8, shm=shm)
    ring = Ring(1, shm=shm)
    ring.enqueue(pool.get())  # the ring is full
    v = pool.get()
    alias = []

    def handler(signum, frame):
        alias.append(v[:])              # a new view of the block...
        pool.put(ring.dequeue())        # ...and room in the ring

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(BufferError, match="other view"):
            ring.enqueue(v, block=True, timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(alias) == 1 and len(ring) == 0
    alias.clear()
    ring.enqueue(v)  # alone again: it goes, and is released
    with pytest.raises(ValueError):
        v[0]
    pool.put(ring.dequeue())
    assert pool.free_count == pool.count


# --- 3, 4. crash repair is never silently off --------------------------------------------


def test_repair_works_in_a_pool_region_sized_to_fit():
    """A pool's own region has the member table from its creation, whatever is carved."""
    pool = Mempool(100, 64)
    assert pool.shm.free == 0
    with pytest.raises(ValueError, match="needs"):
        Ring(4, shm=pool.shm)  # no room: refused, not carved into the table's place

    def child():
        held = pool.get_many(3)  # noqa: F841 - held when the process dies
        os.kill(os.getpid(), signal.SIGKILL)

    pid = fork_child(child)
    assert child_status(pid) == -signal.SIGKILL
    assert pool.free_count == 97
    assert pool.reclaim() == 3
    assert pool.free_count == 100


def test_entries_of_exited_processes_are_reused():
    """More short-lived processes than member entries, each ending with os._exit: the
    table never runs out, and repair still works afterwards."""
    shm = ShareMem(1 << 16)
    pool = Mempool(4, 64, shm=shm)

    def short():
        pool.put(pool.get())  # non-blocking calls only
        return 0

    for _ in range(pyshm.MAX_MEMBERS + 44):
        pid = fork_child(short)
        wait_child(pid)

    def holder():
        held = pool.get()  # noqa: F841 - held when the process dies
        os.kill(os.getpid(), signal.SIGKILL)

    pid = fork_child(holder)
    assert child_status(pid) == -signal.SIGKILL
    assert pool.free_count == 3
    assert pool.reclaim() == 1
    pool.put(pool.get())
    assert pool.free_count == 4
    shm.close()


# --- 5. waits counted apart from views, and not inherited ----------------------------------


def test_cleanup_refusal_names_the_waiting_call_and_a_fork_child_has_none():
    shm = ShareMem(1 << 16)
    ring = Ring(2, shm=shm)
    done = threading.Event()

    def wait():
        while not done.is_set():
            try:
                ring.dequeue(block=True, timeout=0.05)
            except EmptyError:
                pass

    t = threading.Thread(target=wait)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while ring._waiting() == 0:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        with pytest.raises(BufferError, match="waiting") as info:
            shm.cleanup()
        assert "view" not in str(info.value)

        def child():
            shm.cleanup()  # the waiting thread is not in the child: nothing in use
            assert shm.closed
            return 0

        wait_child(fork_child(child))
    finally:
        done.set()
        t.join(60)
    shm.cleanup()


# --- 6. only the process that took a block gives it back -----------------------------------


def test_fork_child_cannot_enqueue_its_parents_block():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 64, shm=shm)
    ring = Ring(2, shm=shm)
    buf = pool.get()
    buf[:2] = b"pa"

    def child():
        with pytest.raises(ValueError, match="another process"):
            ring.enqueue(buf)
        assert len(ring) == 0
        return 0

    wait_child(fork_child(child))
    ring.enqueue(buf)  # the parent's own: fine
    out = ring.dequeue()
    assert bytes(out[:2]) == b"pa"
    pool.put(out)
    shm.close()


# --- 7. a dropped view gives its block back, with a ResourceWarning -------------------------


def test_enqueue_of_a_fresh_block_into_a_full_ring_does_not_leak():
    shm = ShareMem(1 << 16)
    pool = Mempool(4, 64, shm=shm)
    ring = Ring(1, shm=shm)
    ring.enqueue(pool.get())
    with pytest.warns(ResourceWarning, match="dropped without put"):
        with pytest.raises(FullError):
            ring.enqueue(pool.get())  # the natural one-liner: its view dies with the error
        gc.collect()
    assert pool.free_count == 3
    pool.put(ring.dequeue())
    assert pool.free_count == 4
    shm.close()


def test_deleted_view_goes_back_but_an_inherited_one_does_not():
    shm = ShareMem(1 << 16)
    pool = Mempool(2, 64, shm=shm)
    kept = pool.get()

    def child():
        nonlocal kept
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            del kept  # the parent's block: never given back from here
            gc.collect()
        assert pool.free_count == 1
        return 0

    wait_child(fork_child(child))
    assert pool.free_count == 1
    with pytest.warns(ResourceWarning):
        del kept
        gc.collect()
    assert pool.free_count == 2
    shm.close()


def test_dropped_views_while_the_free_queue_is_blocked():
    """A free queue blocked by a get() that never finished (forged here: the slot of the
    first position a put claims reads as still taken) refuses the blocks of dropped views:
    they stay this process's, quietly. Only the first drop waits for room (the others try
    once); once the queue flows again, dropped views give their blocks back as before."""
    shm = ShareMem(1 << 16)
    pool = Mempool(8, 64, shm=shm)
    views = [pool.get() for _ in range(8)]
    # struct pyshm_pool_shared: 128-byte object header, count, elt_size, stride, flags,
    # then slots_offset. Slot 0's stored sequence word: 0 is "holds block 0" (never
    # taken); a get() at position 0 that finished left 8 * count - 3 (ring.h).
    with memoryview(shm) as whole:
        slots = struct.unpack_from("=Q", whole, pool.offset + 128 + 4 * 8)[0]
        released = struct.unpack_from("=Q", whole, slots)[0]
    assert released == 8 * 8 - 3
    with raw_region(shm) as raw:
        struct.pack_into("=Q", raw, slots, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a block that is not given back warns nothing
            for _ in range(4):
                views.pop()
            gc.collect()
        assert pool.free_count == 0
        struct.pack_into("=Q", raw, slots, released)
    with pytest.warns(ResourceWarning, match="dropped without put"):
        for _ in range(4):
            views.pop()
        gc.collect()
    assert pool.free_count == 4
    got = [pool.get() for _ in range(4)]
    with pytest.raises(EmptyError):
        pool.get()
    for v in got:
        pool.put(v)
    shm.close()


def test_view_put_back_is_not_given_twice():
    pool = Mempool(2, 64)
    v = pool.get()
    pool.put(v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del v
        gc.collect()
    assert pool.free_count == 2


# --- 8. the region's own structures cannot be clobbered ------------------------------------


def test_raw_buffer_by_name_and_numpy():
    np = pytest.importorskip("numpy")
    shm = ShareMem(1 << 16)
    raw = RawBuffer(4096, shm=shm, name="scratch")
    arr = np.frombuffer(raw, dtype=np.float64)
    arr[:] = 1.5
    again = RawBuffer.attach(shm, "scratch")
    assert again.size == 4096 and again.offset == raw.offset
    assert np.frombuffer(again, dtype=np.float64).sum() == 1.5 * 512
    with pytest.raises(ValueError, match="is a RawBuffer, not a Ring"):
        Ring.attach(shm, "scratch")
    with memoryview(shm) as whole:
        assert whole.readonly
    del arr
    shm.close()


def test_region_of_no_use_is_refused():
    with pytest.raises(ValueError, match="between 4096"):
        ShareMem(1)


# --- 9. one way of checking arguments -------------------------------------------------------


@pytest.fixture
def objs():
    shm = ShareMem(1 << 16)
    yield Mempool(4, 64, shm=shm), Ring(4, shm=shm)
    gc.collect()
    shm.close()


def test_bool_is_not_a_count(objs):
    pool, ring = objs
    for call in (lambda: pool.get_many(True), lambda: ring.dequeue_many(True), lambda: ring.dequeue(True)):
        with pytest.raises(TypeError, match="must be an int"):
            call()


@pytest.mark.parametrize("n", [2**63, 2**64, 2**200])
def test_huge_counts_are_value_errors(objs, n):
    pool, ring = objs
    for call in (lambda: pool.get_many(n), lambda: ring.dequeue_many(n)):
        with pytest.raises(ValueError, match=str(n)):
            call()


def test_timeout_must_be_a_number_not_bool(objs):
    pool, ring = objs
    with pytest.raises(TypeError, match="timeout"):
        ring.dequeue(block=True, timeout=True)
    with pytest.raises(TypeError, match="timeout"):
        pool.get(block=True, timeout="1")
    with pytest.raises(ValueError, match="non-negative"):
        ring.dequeue(block=True, timeout=-1)
    with pytest.raises(EmptyError):
        ring.dequeue(block=True, timeout=0)


@pytest.mark.parametrize("name", [".", "..", "/.", "a/b", ""])
def test_bad_region_names(name):
    with pytest.raises(ValueError, match="name"):
        ShareMem(4096, name=name)
    with pytest.raises(ValueError, match="name"):
        ShareMem.attach(name)


def test_attaching_a_directory_is_not_a_region():
    path = f"/dev/shm/pyshm-dir-{os.getpid()}"
    os.mkdir(path)
    try:
        with pytest.raises(ShareMemError, match="not a pyshm region"):
            ShareMem.attach(os.path.basename(path))
    finally:
        os.rmdir(path)


def test_attaching_a_file_that_is_not_a_region():
    name = f"pyshm-junk-{os.getpid()}"
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"x" * 100)
    try:
        with pytest.raises(ShareMemError, match="not a pyshm region"):
            ShareMem.attach(name)
    finally:
        os.unlink(f"/dev/shm/{name}")


def test_unknown_flags_message_shows_hex():
    with pytest.raises(ValueError) as info:
        Mempool(2, 8, 0x30)
    assert "0x30" in str(info.value) and "%" not in str(info.value)
    with pytest.raises(ValueError) as info:
        Ring(2, 0x104, shm=ShareMem(4096))
    assert "0x104" in str(info.value)


def test_put_many_error_names_the_item(objs):
    pool, ring = objs
    a, b = pool.get_many(2)
    pool.put(b)
    with pytest.raises(ValueError, match=r"item 1"):
        pool.put_many([a, b])
    pool.put(a)


def test_error_messages_name_argument_and_value():
    with pytest.raises(ValueError, match=r"Mempool count must be between 1 and \d+, got 0"):
        Mempool(0, 8)
    with pytest.raises(TypeError, match="Ring count must be an int, not float"):
        Ring(1.5, shm=ShareMem(4096))
    with pytest.raises(ValueError, match="ShareMem size must be between"):
        ShareMem(1 << 47)


# --- 13.4. a named region too big for /dev/shm fails at creation ------------------------------


def test_named_region_reserves_its_memory(tmp_path):
    """A named region takes its memory at creation (so no SIGBUS later); /dev/shm's free
    room is shown when it does not fit."""
    name = f"pyshm-big-{os.getpid()}"
    st = os.statvfs("/dev/shm")
    too_big = st.f_bavail * st.f_frsize + (1 << 30)
    with pytest.raises(OSError) as info:
        ShareMem(too_big, name=name)
    assert info.value.errno == errno.ENOSPC
    assert "bytes free" in str(info.value) and "unnamed" in str(info.value)
    assert not os.path.exists(f"/dev/shm/{name}")


# --- issue 8, defect 8: a sleeper killed while asleep costs at most one wake-up ------------


def test_killed_sleeper_leaves_no_lasting_tax():
    """The waitpoint (src/core/wait.h) holds no count of sleepers that a dead one could
    leave raised: its marker names the epoch it slept on, the first notify after its death
    moves the epoch past it, and from then on notifiers see a stale marker and make no
    system call (checked here on the words themselves)."""
    import struct

    import mp_helpers as h

    shm = ShareMem(1 << 16)
    pool = Mempool(4, 64, shm=shm)
    ring = Ring(4, shm=shm)

    def sleeper():
        ring.dequeue(block=True)
        return 1  # never reached: killed while asleep

    pid = fork_child(sleeper)
    h.wait_for_sleepers(ring, "not_empty", pids=[pid])
    os.kill(pid, signal.SIGKILL)
    assert child_status(pid) == -signal.SIGKILL
    at = ring.offset + h._WAITPOINT["not_empty"]

    def words():
        with memoryview(shm) as m:
            epoch, _, marker = struct.unpack_from("=IIQ", m, at)
        return epoch, marker

    epoch, marker = words()
    assert marker == (1 << 32) | epoch, "the dead sleeper's mark is on the current epoch"
    ring.enqueue(pool.get())  # the one wake-up nobody needed
    epoch2, marker2 = words()
    assert epoch2 == epoch + 1 and marker2 == marker, "the epoch moved past the mark"
    for _ in range(10):
        pool.put(ring.dequeue())
        ring.enqueue(pool.get())
    assert words() == (epoch2, marker2), "stale mark: no more bumps, no more wake-ups"
    pool.put(ring.dequeue())
    shm.close()
