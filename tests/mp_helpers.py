"""Helpers for the multi-process pyshm tests (test_start_methods, test_names,
test_blocking, test_bulk, test_shutdown, test_threads).

Everything a ``spawn`` or ``forkserver`` child runs must be importable by module name,
so the child targets live here, at top level, and this module imports nothing but the
standard library and pyshm (it must not import pytest or a test module: children import
it). The test modules put this directory on ``sys.path`` before importing it; spawn and
forkserver children get the parent's ``sys.path`` from multiprocessing.

Every child target raises on a failed check (multiprocessing then exits the child with
status 1) or returns normally (status 0); the parent asserts the exit code. Children
started with ``fork_child`` always end with ``os._exit``.
"""
import os
import select
import signal
import struct
import sys
import threading
import time
import traceback

import pyshm

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
PYSHM_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyshm.__file__)))

# Generous limit so that a deadlocked child fails the test instead of hanging the run.
# Never an assertion about speed: healthy children finish in well under a second.
GUARD = 120.0

HEADER = struct.Struct("=QQ")  # tag, sequence number


# --- block contents ---------------------------------------------------------------------


def fill(view, tag, seq):
    """Write (tag, seq) and a pattern that depends on both over the whole block."""
    n = len(view)
    HEADER.pack_into(view, 0, tag, seq)
    if n > HEADER.size:
        byte = (tag * 31 + seq) % 251
        view[HEADER.size :] = bytes([byte]) * (n - HEADER.size)


def read(view):
    """(tag, seq) of a block written by fill()."""
    return HEADER.unpack_from(view, 0)


def check(view, tag, seq):
    """Assert the block holds what fill(view, tag, seq) wrote."""
    got = read(view)
    assert got == (tag, seq), f"block holds {got}, expected {(tag, seq)}"
    n = len(view)
    if n > HEADER.size:
        byte = (tag * 31 + seq) % 251
        assert bytes(view[HEADER.size :]) == bytes([byte]) * (n - HEADER.size), f"payload of {(tag, seq)} damaged"


# --- forked children --------------------------------------------------------------------


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def fork_child(fn, *args):
    """Fork; the child runs fn(*args) and ends with os._exit: the int fn returns, 0 if it
    returns anything else, 1 if it raises (after printing the traceback)."""
    _flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            result = fn(*args)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except BaseException:
            try:
                traceback.print_exc()
            except BaseException:
                pass
        finally:
            _flush()
            os._exit(code)
    return pid


def child_status(pid, guard=GUARD):
    """Reap pid: its exit code, or -signal number. Kills it after the hang guard."""
    deadline = time.monotonic() + guard
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} still running after the {guard:.0f} s hang guard; killed it")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def assert_exit(pid, expected=0, guard=GUARD):
    code = child_status(pid, guard)
    assert code == expected, f"child {pid} ended with {code}, expected {expected} (see its stderr)"


def join_all(procs, guard=GUARD):
    """Join multiprocessing.Process objects; kill stragglers after the hang guard."""
    deadline = time.monotonic() + guard
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    stuck = [p for p in procs if p.is_alive()]
    for p in stuck:
        p.kill()
        p.join()
    assert not stuck, f"{len(stuck)} child process(es) still running after the hang guard; killed them"
    return [p.exitcode for p in procs]


def receive(q, procs, guard=GUARD):
    """q.get(), but fail at once if one of procs (multiprocessing.Process) ends with a
    non-zero status before anything arrives; the hang guard only stops a deadlock."""
    import queue

    deadline = time.monotonic() + guard
    while True:
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            failed = [p for p in procs if p.exitcode not in (None, 0)]
            assert not failed, f"child(ren) failed before sending: exit codes {[p.exitcode for p in failed]}"
            assert time.monotonic() < deadline, "nothing arrived within the hang guard"


def ended(pid):
    """True once our child pid has exited (a zombie not yet reaped) or is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


class Notice:
    """A pipe for one-byte notices between a parent and its forked children."""

    def __init__(self):
        self.r, self.w = os.pipe()

    def send(self, byte=b"x"):
        os.write(self.w, byte)

    def recv(self, guard=GUARD, pid=None):
        """Wait for a notice; fail at once if child pid (if given) ends first."""
        deadline = time.monotonic() + guard
        while True:
            ready, _, _ = select.select([self.r], [], [], 0.05)
            if ready:
                break
            assert pid is None or not ended(pid), f"child {pid} ended without sending its notice"
            assert time.monotonic() < deadline, f"no notice from the other process within the {guard:.0f} s hang guard"
        data = os.read(self.r, 1)
        assert data, "the other end of the notice pipe was closed"
        return data

    def close(self):
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


# --- observing sleepers -----------------------------------------------------------------
#
# A blocked call sleeps in the kernel, in a futex wait on the epoch word of a waitpoint
# (src/core/wait.h: u32 epoch, u32 spare, u64 marker) in shared memory. A thread asleep
# there shows in /proc/PID/task/TID/syscall as the futex system call (202 on x86-64,
# 98 on arm64) whose first argument is the address of that word in its process's mapping
# of the region (found in /proc/PID/maps by the region file's inode). That tells a test
# that another process or thread really is asleep in the call, so it can wake it, signal
# it or clean up under it without a sleep of its own.
# Layout version 3 (src/core/block_ring.h, mempool.h, queue.h): a Ring's and a Mempool's
# queue counters start 256 bytes into the object; not_empty is at +8, not_full at +64+8.

_QUEUE = 256
_WAITPOINT = {"not_empty": _QUEUE + 8, "not_full": _QUEUE + 64 + 8}
_FUTEX = {"x86_64": 202, "aarch64": 98}[os.uname().machine]


def _object_offset(obj):
    return obj.offset


def _region_base(pid, inode):
    """Where process pid maps the region file with this inode (offset 0), or None."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 5 and int(fields[4]) == inode and int(fields[2], 16) == 0:
                    return int(fields[0].split("-")[0], 16)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def sleepers(obj, side="not_empty", pids=()):
    """How many callers sleep on obj's waitpoint right now (Ring: "not_empty" for
    dequeue, "not_full" for enqueue; Mempool: "not_empty" for get), among the other
    threads of this process and the processes pids."""
    assert pyshm.LAYOUT_VERSION == 4, "update the waitpoint offsets in mp_helpers for the new layout"
    inode = os.fstat(obj.shm.fileno()).st_ino
    me = threading.get_native_id()
    count = 0
    for pid in [os.getpid(), *[p for p in pids if p != os.getpid()]]:
        base = _region_base(pid, inode)
        if base is None:
            continue
        word = base + _object_offset(obj) + _WAITPOINT[side]
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            if pid == os.getpid() and int(tid) == me:
                continue
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    call = f.read().split()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            count += len(call) > 1 and call[0] == str(_FUTEX) and int(call[1], 16) == word
    return count


def wait_for_sleepers(obj, side="not_empty", n=1, guard=GUARD, pids=()):
    """Return once at least n callers sleep on obj's waitpoint. Fails at once if one of
    our children pids ends meanwhile; the hang guard only stops a deadlock."""
    deadline = time.monotonic() + guard
    while sleepers(obj, side, pids) < n:
        gone = [pid for pid in pids if ended(pid)]
        assert not gone, f"child(ren) {gone} ended instead of waiting"
        assert time.monotonic() < deadline, f"fewer than {n} sleeper(s) on {side} within the hang guard"
        time.sleep(0.001)


# --- multiprocessing targets ------------------------------------------------------------


def verify_then_reply(shm, pool, ring, back, n, tag):
    """Check the n blocks the parent queued on ring (tag, 0..n-1), put them back, then
    queue n blocks of our own (tag + 1, 0..n-1) on back."""
    assert pool.shm is shm and ring.shm is shm and back.shm is shm, "one region, one ShareMem object"
    for i in range(n):
        buf = ring.dequeue(block=True, timeout=GUARD)
        check(buf, tag, i)
        pool.put(buf)
    for i in range(n):
        buf = pool.get(block=True, timeout=GUARD)
        fill(buf, tag + 1, i)
        back.enqueue(buf, block=True, timeout=GUARD)


def region_twice(shm, q, done, n, tag):
    """Receive the region as an argument and again, with its pool and ring, through a
    Queue: the same object both times, so the pool's blocks go into the ring."""
    pool, ring, shm_again = q.get(timeout=GUARD)
    assert shm_again is shm, "the region received twice must be one ShareMem object"
    assert pool.shm is shm and ring.shm is shm
    for i in range(n):
        buf = pool.get()
        fill(buf, tag, i)
        ring.enqueue(buf)
    done.put(os.getpid())


def _receive(channel):
    if hasattr(channel, "recv"):  # a multiprocessing Connection (Pipe)
        assert channel.poll(GUARD), "nothing arrived through the pipe"
        return channel.recv()
    return channel.get(timeout=GUARD)


def inherited_then_received(shm, pool, q):
    """(fork only) shm and pool are inherited; the ring arrives through a Queue."""
    ring = q.get(timeout=GUARD)
    assert ring.shm is shm, "the inherited region and the received one must be one ShareMem object"
    buf = pool.get()
    fill(buf, 600, 0)
    ring.enqueue(buf)


def from_channel(channel, done):
    """Get (pool, ring, back, n, tag) from a Queue or Pipe; verify and reply as
    verify_then_reply."""
    pool, ring, back, n, tag = _receive(channel)
    assert pool.shm is ring.shm is back.shm
    verify_then_reply(pool.shm, pool, ring, back, n, tag)
    done.put(("ok", os.getpid()))


def create_and_send(q, ack, n, tag):
    """Make a region, pool and ring here, queue n blocks and send pool and ring to the
    parent; stay alive until the parent says it has them (the fd travels from us)."""
    shm = pyshm.ShareMem(1 << 16)
    pool = pyshm.Mempool(n, 256, shm=shm)
    ring = pyshm.Ring(n, shm=shm)
    for i in range(n):
        buf = pool.get()
        fill(buf, tag, i)
        ring.enqueue(buf)
    q.put((pool, ring))
    assert ack.wait(GUARD), "the parent never acknowledged"


# Pool initializer state
_shared = {}


def pool_init(pool, ring):
    _shared["pool"] = pool
    _shared["ring"] = ring


def pool_task(i):
    """Write block i in a worker of a multiprocessing.Pool and queue it."""
    pool, ring = _shared["pool"], _shared["ring"]
    buf = pool.get(block=True, timeout=GUARD)
    fill(buf, 7, i)
    ring.enqueue(buf, block=True, timeout=GUARD)
    return os.getpid()


def pool_init_region(pool):
    _shared["pool"] = pool
    _shared["shm"] = pool.shm


def pool_task_with_ring(ring, i):
    """The ring arrives with every task, after the pool arrived in the initializer: both
    must land on the one ShareMem of this worker, or enqueue would refuse the block."""
    assert ring.shm is _shared["shm"], "the region received twice must be one ShareMem object"
    buf = _shared["pool"].get(block=True, timeout=GUARD)
    fill(buf, 8, i)
    ring.enqueue(buf, block=True, timeout=GUARD)
    return os.getpid()


def producer(pool, ring, n, tag):
    """Blocking producer: n blocks (tag, 0..n-1), in order."""
    for i in range(n):
        buf = pool.get(block=True, timeout=GUARD)
        fill(buf, tag, i)
        ring.enqueue(buf, block=True, timeout=GUARD)


def consumer(pool, ring, n, tag):
    """Blocking consumer: expects (tag, 0..n-1) in order; puts every block back."""
    for i in range(n):
        buf = ring.dequeue(block=True, timeout=GUARD)
        check(buf, tag, i)
        pool.put(buf)


def bulk_producer(pool, ring, n, tag, batch):
    """Bulk producer: get_many + enqueue_many, n blocks in order."""
    sent = 0
    while sent < n:
        views = pool.get_many(min(batch, n - sent), block=True, timeout=GUARD)
        for buf in views:
            fill(buf, tag, sent)
            sent += 1
        ring.enqueue_many(views, block=True, timeout=GUARD)
        assert all(_released(v) for v in views), "enqueue_many releases every view"


def _released(view):
    try:
        len(view)
    except ValueError:
        return True
    return False


def bulk_consumer(pool, ring, n, tag, batch):
    """Bulk consumer: dequeue_many + put_many, expects (tag, 0..n-1) in order."""
    got = 0
    while got < n:
        views = ring.dequeue_many(batch, block=True, timeout=GUARD)
        assert 1 <= len(views) <= batch
        for buf in views:
            check(buf, tag, got)
            got += 1
        pool.put_many(views)
    assert got == n


def sigkill_victim(conn):
    """Make an unnamed region with a pool and a ring, hold and queue blocks, report, then
    block in dequeue until killed."""
    shm = pyshm.ShareMem(1 << 20)
    pool = pyshm.Mempool(16, 4096, shm=shm)
    ring = pyshm.Ring(8, shm=shm)
    idle = pyshm.Ring(4, shm=shm)
    held = [pool.get() for _ in range(4)]
    for i, buf in enumerate(held[:2]):
        fill(buf, 9, i)
        ring.enqueue(buf)
    with open(f"/proc/{os.getpid()}/maps") as f:
        maps = f.read()
    conn.send(("ready", maps))
    idle.dequeue(block=True)  # until SIGKILL
    conn.send(("woke", ""))  # never reached


def blocking_consumer(pool, ring, tag, ready):
    """Report, then wait for one block (tag, 0) with no timeout."""
    ready.put(os.getpid())
    buf = ring.dequeue(block=True)
    check(buf, tag, 0)
    pool.put(buf)


def wait_shutdown_dequeue(ring, ready):
    """Block in dequeue with no timeout; succeed only if shutdown() wakes us."""
    ready.put(os.getpid())
    try:
        ring.dequeue(block=True)
    except pyshm.ShutDown:
        return
    raise AssertionError("dequeue returned a block after shutdown")
