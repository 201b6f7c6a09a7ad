"""Every object used from several threads of one process.

Blocking calls release the GIL while they sleep, so producer and consumer threads can
share one ring; every block must be delivered exactly once. A thread asleep in a call
counts as a use of its region: cleanup() from another thread raises BufferError instead
of unmapping the memory under it.
"""
import gc
import os
import subprocess
import sys
import threading
import time

import pytest

from pyshm import EmptyError, Mempool, Ring, ShareMem, ShutDown

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


class Threads:
    """Start threads that record their exceptions; join them all (hang guard only)."""

    def __init__(self):
        self.threads = []
        self.errors = []

    def start(self, fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as exc:  # reported by join()
                self.errors.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def join(self, threads=None):
        deadline = time.monotonic() + h.GUARD
        for t in threads if threads is not None else self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()] if threads is None else [t for t in threads if t.is_alive()]
        assert not alive, f"{len(alive)} thread(s) still running after the hang guard"
        if self.errors:
            raise self.errors[0]


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_producer_and_consumer_threads_exactly_once(region, bulk):
    pool = Mempool(16, 64, shm=region)
    ring = Ring(8, shm=region)
    producers, per_producer, consumers = 4, 1500, 4
    received = [[] for _ in range(consumers)]

    def produce(tag):
        seq = 0
        while seq < per_producer:
            if bulk:
                views = pool.get_many(min(3, per_producer - seq), block=True)
                for buf in views:
                    h.fill(buf, tag, seq)
                    seq += 1
                ring.enqueue_many(views, block=True)
            else:
                buf = pool.get(block=True)
                h.fill(buf, tag, seq)
                seq += 1
                ring.enqueue(buf, block=True)

    def consume(k):
        mine = received[k]
        while True:
            try:
                views = ring.dequeue_many(4, block=True) if bulk else [ring.dequeue(block=True)]
            except ShutDown:
                return
            for buf in views:
                tag, seq = h.read(buf)
                h.check(buf, tag, seq)
                mine.append((tag, seq))
            pool.put_many(views)

    threads = Threads()
    consumer_threads = [threads.start(consume, k) for k in range(consumers)]
    producer_threads = [threads.start(produce, tag) for tag in range(producers)]
    try:
        threads.join(producer_threads)
    finally:
        ring.shutdown()  # consumers drain what is left, then see ShutDown
        threads.join(consumer_threads)
    everything = sorted(item for mine in received for item in mine)
    assert everything == sorted((tag, seq) for tag in range(producers) for seq in range(per_producer))
    # each consumer saw each producer's blocks in the order they were sent
    for mine in received:
        for tag in range(producers):
            seqs = [seq for t, seq in mine if t == tag]
            assert seqs == sorted(seqs)
    assert len(ring) == 0 and pool.free_count == pool.count


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_a_block_belongs_to_one_thread_at_a_time(region, bulk):
    pool = Mempool(4, 256, shm=region)
    rounds = 400

    def worker(tag):
        for seq in range(rounds):
            views = pool.get_many(2, block=True) if bulk else [pool.get(block=True)]
            for buf in views:
                h.fill(buf, tag, seq)
            time.sleep(0)  # let the other threads run while we hold the blocks
            for buf in views:
                h.check(buf, tag, seq)
            pool.put_many(views)

    threads = Threads()
    for tag in range(8):
        threads.start(worker, tag)
    threads.join()
    assert pool.free_count == pool.count


def test_timeouts_in_several_threads(region):
    ring = Ring(2, shm=region)
    elapsed = []

    def wait():
        start = time.monotonic()
        try:
            ring.dequeue(block=True, timeout=0.2)
        except EmptyError:
            elapsed.append(time.monotonic() - start)

    threads = Threads()
    for _ in range(4):
        threads.start(wait)
    threads.join()
    assert len(elapsed) == 4 and min(elapsed) >= 0.18


# --- cleanup while another thread waits ---------------------------------------------------


def test_cleanup_while_threads_wait_in_dequeue_is_buffer_error(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(4, shm=region)
    got = []

    def consume(many):
        views = ring.dequeue_many(1, block=True) if many else [ring.dequeue(block=True, timeout=h.GUARD)]
        for buf in views:
            got.append(h.read(buf))
            pool.put(buf)

    threads = Threads()
    for many in (False, False, True):
        threads.start(consume, many)
    try:
        h.wait_for_sleepers(ring, "not_empty", n=3)
        with pytest.raises(BufferError):
            region.cleanup()
        assert not region.closed
    finally:
        # still usable: feed the waiters
        for i in range(3):
            buf = pool.get()
            h.fill(buf, 1, i)
            ring.enqueue(buf)
        threads.join()
    assert sorted(got) == [(1, 0), (1, 1), (1, 2)]
    assert pool.free_count == 4
    del got
    gc.collect()
    region.cleanup()  # nobody waits any more
    assert region.closed


def test_cleanup_while_threads_wait_in_get_is_buffer_error(region):
    """The pool's blocks are held by another process, so no view is alive here: only the
    waiting threads keep the region in use."""
    pool = Mempool(2, 64, shm=region)
    go, holding = h.Notice(), h.Notice()

    def holder():
        views = pool.get_many(2)
        holding.send()
        go.recv()
        pool.put_many(views)

    pid = h.fork_child(holder)
    outcome = []

    def wait(many):
        views = pool.get_many(1, block=True) if many else [pool.get(block=True)]
        outcome.append(len(views))
        pool.put_many(views)

    threads = Threads()
    try:
        holding.recv(pid=pid)
        threads.start(wait, False)
        threads.start(wait, True)
        h.wait_for_sleepers(pool, "not_empty", n=2, pids=[pid])
        with pytest.raises(BufferError):
            region.cleanup()
        assert not region.closed
    finally:
        go.send()
        h.assert_exit(pid, 0)
        threads.join()
        go.close()
        holding.close()
    assert outcome == [1, 1]
    assert pool.free_count == 2
    region.cleanup()


def test_ring_handle_closed_while_a_thread_waits_on_it(region):
    """Closing the handle a thread waits on must not crash it; shutting the ring down
    through another handle ends the wait."""
    ring = Ring(2, shm=region, name="q")
    other = Ring.attach(region, "q")
    outcome = []

    def wait():
        try:
            ring.dequeue(block=True)
            outcome.append("block")
        except ShutDown:
            outcome.append("ShutDown")
        except ValueError:
            outcome.append("ValueError")

    threads = Threads()
    threads.start(wait)
    try:
        h.wait_for_sleepers(other, "not_empty")
        ring.cleanup()
        assert ring.closed
    finally:
        other.shutdown()
        threads.join()
    assert outcome in (["ShutDown"], ["ValueError"])


def test_shutdown_from_a_thread_wakes_the_others(region):
    pool = Mempool(4, 64, shm=region)
    ring = Ring(2, shm=region)
    outcome = []
    lock = threading.Lock()

    def wait():
        try:
            ring.dequeue(block=True)
        except ShutDown:
            with lock:
                outcome.append("ShutDown")

    threads = Threads()
    for _ in range(4):
        threads.start(wait)
    try:
        h.wait_for_sleepers(ring, "not_empty", n=4)
        closer = threads.start(ring.shutdown)
        threads.join([closer])
    finally:
        ring.shutdown()
        threads.join()
    assert outcome == ["ShutDown"] * 4
    assert pool.free_count == 4


# --- memory safety while a thread waits ---------------------------------------------------
#
# These run in a separate interpreter, with freed memory overwritten at once (glibc's
# MALLOC_PERTURB_ with its per-thread cache off, and CPython's malloc_debug allocator), so
# that a use of freed memory crashes there instead of passing by luck or crashing pytest.

WAIT_SCRIPT = r"""
import os
import sys
import threading

import pyshm
import mp_helpers as h

mode = sys.argv[1]
shm = pyshm.ShareMem(1 << 22)
pools = [pyshm.Mempool(2, 64, shm=shm) for _ in range(4)]
ring = pyshm.Ring(1, shm=shm)
other = pyshm.Ring(64, shm=shm)
ring.enqueue(pools[0].get())  # full: the next enqueue waits
views = [pools[1].get()]
if mode == "pool_found_by_dequeue":
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(40):  # pools this process has not seen yet
                other.enqueue(pyshm.Mempool(1, 64, shm=shm).get())
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
outcome = []


def blocked():
    try:
        if mode == "drop_list":
            ring.enqueue_many(views, block=True, timeout=h.GUARD)
        else:
            ring.enqueue(views[0], block=True, timeout=h.GUARD)
        outcome.append("enqueued")
    except Exception as exc:
        outcome.append(repr(exc))


t = threading.Thread(target=blocked)
t.start()
h.wait_for_sleepers(ring, "not_full")
if mode == "new_pools":
    more = [pyshm.Mempool(2, 64, shm=shm) for _ in range(60)]  # the table of pools grows
elif mode == "pool_found_by_dequeue":
    got = [other.dequeue() for _ in range(40)]  # each finds a new pool: the table grows
elif mode == "release_view":
    try:
        views[0].release()
    except BufferError:
        pass  # refusing is fine too
elif mode == "drop_list":
    views.clear()
pools[0].put(ring.dequeue())  # room: the sleeper retries
t.join(h.GUARD)
assert outcome and not t.is_alive(), outcome
print(outcome[0])
"""


def _run_wait_script(mode):
    env = dict(os.environ)
    env.update(GLIBC_TUNABLES="glibc.malloc.tcache_count=0", MALLOC_PERTURB_="165", PYTHONMALLOC="malloc_debug")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (h.PYSHM_ROOT, h.TESTS_DIR, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", WAIT_SCRIPT, mode], env=env, capture_output=True, timeout=h.GUARD)


@pytest.mark.parametrize("mode", ["new_pools", "pool_found_by_dequeue"])
def test_pool_table_grows_while_a_thread_waits_in_enqueue(mode):
    done = _run_wait_script(mode)
    assert done.returncode == 0, f"status {done.returncode}: {done.stderr.decode()[-2000:]}"
    assert done.stdout.strip() == b"enqueued"


@pytest.mark.parametrize("mode", ["release_view", "drop_list"])
def test_view_released_while_a_thread_waits_to_enqueue_it(mode):
    done = _run_wait_script(mode)
    assert done.returncode == 0, f"status {done.returncode}: {done.stderr.decode()[-2000:]}"


def test_wait_script_harness_without_interference():
    """The script above, with nothing done under the sleeper: it must pass as it is."""
    done = _run_wait_script("control")
    assert done.returncode == 0, f"status {done.returncode}: {done.stderr.decode()[-2000:]}"
    assert done.stdout.strip() == b"enqueued"
