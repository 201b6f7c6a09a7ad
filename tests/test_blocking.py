"""block= and timeout= on every call that can wait, with queue.Queue semantics.

Mempool.get/get_many and Ring.enqueue/enqueue_many/dequeue/dequeue_many take keyword-only
block=False, timeout=None: by default they raise EmptyError/FullError at once; with
block=True and no timeout they wait until they can proceed; with a timeout they wait at
most that long, then raise; a negative timeout is a ValueError. A waiting call is woken
by the process that makes it possible, and lets signal handlers run (Ctrl-C included).

Timing is only ever checked from below (a timed-out call did wait): nothing here asserts
that anything is fast.
"""
import gc
import multiprocessing
import os
import queue
import signal
import sys
import time

import pytest

from pyshm import EmptyError, FullError, Mempool, Ring, ShareMem

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # spawn and forkserver children inherit sys.path
    sys.path.insert(0, _HERE)
import mp_helpers as h  # noqa: E402

OPS = ["get", "get_many", "dequeue", "dequeue_many", "enqueue", "enqueue_many"]


@pytest.fixture
def region():
    shm = ShareMem(1 << 18)
    yield shm
    gc.collect()
    try:
        shm.cleanup()
    except BufferError:
        pass  # a failed test still holds views; the garbage collector unmaps it later


def _live(view):
    try:
        len(view)
    except ValueError:  # released: handed to the ring by the call under test
        return False
    return True


class Starved:
    """One call that cannot proceed yet: nothing to get, nothing to dequeue, or no room
    to enqueue. relieve() makes it possible; finish() gives every block back."""

    def __init__(self, region, op):
        self.op = op
        self.pool = Mempool(4, 64, shm=region)
        self.ring = Ring(2, shm=region)
        self.held = []
        self.extra = None
        if op.startswith("get"):
            self.held = [self.pool.get() for _ in range(self.pool.count)]
            self.exc, self.obj, self.side = EmptyError, self.pool, "not_empty"
        elif op.startswith("dequeue"):
            self.exc, self.obj, self.side = EmptyError, self.ring, "not_empty"
        else:
            for i in range(self.ring.count):
                buf = self.pool.get()
                h.fill(buf, 1, i)
                self.ring.enqueue(buf)
            # The block to enqueue is taken by whichever process makes the call: only the
            # process that took a block may hand it on (a fork child may not use its
            # parent's view).
            self.exc, self.obj, self.side = FullError, self.ring, "not_full"

    def call(self, **kw):
        """The call under test; returns the views it got, if any."""
        op = self.op
        if op == "get":
            return [self.pool.get(**kw)]
        if op == "get_many":
            return self.pool.get_many(2, **kw)
        if op == "dequeue":
            return [self.ring.dequeue(**kw)]
        if op == "dequeue_many":
            return self.ring.dequeue_many(2, **kw)
        if self.extra is None:
            self.extra = self.pool.get()
            h.fill(self.extra, 2, 0)
        if op == "enqueue":
            self.ring.enqueue(self.extra, **kw)
        else:
            self.ring.enqueue_many([self.extra], **kw)
        return []

    def relieve(self):
        """Make the call possible: give back a block, queue one, or take one out."""
        if self.op.startswith("get"):
            self.pool.put(self.held.pop())
        elif self.op.startswith("dequeue"):
            buf = self.pool.get()
            h.fill(buf, 3, 0)
            self.ring.enqueue(buf)
        else:
            buf = self.ring.dequeue()
            h.check(buf, 1, 0)
            self.pool.put(buf)

    def check_result(self, views):
        """What a successful call must have produced."""
        if self.op.startswith("get"):
            assert len(views) == 1 and len(views[0]) == 64
        elif self.op.startswith("dequeue"):
            assert len(views) == 1
            h.check(views[0], 3, 0)
        else:
            assert views == []

    def give_back_extra(self):
        """In a child that tried to enqueue and failed: the block is the child's."""
        if self.extra is not None:
            self.pool.put(self.extra)

    def finish(self, views=(), extra_sent_elsewhere=False):
        for buf in views:
            self.pool.put(buf)
        for buf in self.held:
            self.pool.put(buf)
        self.held = []
        if self.extra is not None:
            if extra_sent_elsewhere:
                self.extra.release()  # our copy is stale: a child enqueued or put it
            elif _live(self.extra):
                self.pool.put(self.extra)  # still ours (the call under test failed)
        while True:
            try:
                self.pool.put(self.ring.dequeue())
            except EmptyError:
                break
        assert self.pool.free_count == self.pool.count


@pytest.fixture(params=OPS)
def starved(request, region):
    s = Starved(region, request.param)
    yield s


# --- in one process ---------------------------------------------------------------------


def test_exceptions_are_queue_exceptions():
    assert issubclass(EmptyError, queue.Empty)
    assert issubclass(FullError, queue.Full)


def test_non_blocking_by_default(starved):
    with pytest.raises(starved.exc):
        starved.call()
    with pytest.raises(starved.exc):
        starved.call(block=False)
    # as queue.Queue: the timeout is ignored when not blocking, even a negative one
    with pytest.raises(starved.exc):
        starved.call(block=False, timeout=30)
    with pytest.raises(starved.exc):
        starved.call(block=False, timeout=-1)
    starved.finish()


@pytest.mark.parametrize("timeout", [0.2])
def test_timeout_expires(starved, timeout):
    start = time.monotonic()
    with pytest.raises(starved.exc) as info:
        starved.call(block=True, timeout=timeout)
    elapsed = time.monotonic() - start
    assert elapsed >= timeout * 0.9, f"raised after {elapsed:.3f} s, before the {timeout} s timeout"
    assert isinstance(info.value, queue.Empty if starved.exc is EmptyError else queue.Full)
    # nothing changed, and nobody is left asleep
    assert h.sleepers(starved.obj, starved.side) == 0
    with pytest.raises(starved.exc):
        starved.call()
    starved.finish()


def test_zero_timeout_raises(starved):
    with pytest.raises(starved.exc):
        starved.call(block=True, timeout=0)
    with pytest.raises(starved.exc):
        starved.call(block=True, timeout=0.0)
    starved.finish()


def test_int_timeout(region):
    ring = Ring(1, shm=region)
    start = time.monotonic()
    with pytest.raises(EmptyError):
        ring.dequeue(block=True, timeout=1)
    assert time.monotonic() - start >= 0.9


@pytest.mark.parametrize("timeout", [-1, -0.001, float("-inf"), float("nan")])
def test_negative_timeout_is_value_error(starved, timeout):
    with pytest.raises(ValueError, match="non-negative"):
        starved.call(block=True, timeout=timeout)
    # and the call did nothing: the situation is unchanged
    with pytest.raises(starved.exc):
        starved.call()
    starved.relieve()
    with pytest.raises(ValueError):
        starved.call(block=True, timeout=timeout)
    starved.finish()


@pytest.mark.parametrize("timeout", ["1", b"1", [1]])
def test_non_number_timeout_is_type_error(starved, timeout):
    with pytest.raises(TypeError):
        starved.call(block=True, timeout=timeout)
    starved.finish()


def test_blocking_call_that_can_proceed_returns_at_once(starved):
    starved.relieve()
    views = starved.call(block=True)
    starved.check_result(views)
    starved.finish(views)


def test_blocking_call_with_timeout_that_can_proceed(starved):
    starved.relieve()
    views = starved.call(block=True, timeout=h.GUARD)
    starved.check_result(views)
    starved.finish(views)


def test_block_is_truth_tested(starved):
    starved.relieve()
    views = starved.call(block=1, timeout=None)
    starved.check_result(views)
    starved.finish(views)


def test_block_and_timeout_are_keyword_only(region):
    pool = Mempool(2, 64, shm=region)
    ring = Ring(2, shm=region)
    with pytest.raises(TypeError):
        pool.get(True)
    with pytest.raises(TypeError):
        pool.get_many(1, True)
    with pytest.raises(TypeError):
        ring.dequeue(None, True)
    with pytest.raises(TypeError):
        ring.dequeue_many(1, True)
    buf = pool.get()
    with pytest.raises(TypeError):
        ring.enqueue(buf, True)
    with pytest.raises(TypeError):
        ring.enqueue_many([buf], True)
    with pytest.raises(TypeError):
        ring.enqueue(buf, block=True, bogus=1)
    # nothing happened to the block
    assert len(ring) == 0
    pool.put(buf)
    assert pool.free_count == 2


# --- woken by another process ----------------------------------------------------------


def test_blocked_call_woken_by_another_process(starved):
    """The child blocks with no timeout; this process makes the call possible."""
    notice = h.Notice()

    def child():
        notice.send()
        views = starved.call(block=True)
        starved.check_result(views)
        for buf in views:
            starved.pool.put(buf)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(starved.obj, starved.side, pids=[pid])
        starved.relieve()
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    starved.finish(extra_sent_elsewhere=starved.op.startswith("enqueue"))


# --- a get() or enqueue() that waits gathers -------------------------------------------
#
# A waiting get() on a pool of 32 blocks or more waits for a sixteenth of the pool (at most
# 64) to come back, or 50 us, before it takes one; a waiting enqueue() likewise for room in
# the ring (docs/reference.rst, Waiting). It must never wait for what does not come back:
# these calls get the one block, or the one slot, that does.


@pytest.mark.parametrize("kw", [{}, {"timeout": 60.0}], ids=["no-timeout", "timeout"])
@pytest.mark.parametrize("many", [False, True], ids=["get", "get_many"])
@pytest.mark.parametrize("asleep", [True, False], ids=["asleep", "spinning"])
def test_gathering_get_takes_the_one_block_that_comes_back(region, kw, many, asleep):
    pool = Mempool(256, 64, shm=region)  # gathers 16
    held = [pool.get() for _ in range(pool.count)]
    notice = h.Notice()

    def child():
        notice.send()
        views = pool.get_many(8, block=True, **kw) if many else [pool.get(block=True, **kw)]
        assert len(views) == 1, len(views)
        h.fill(views[0], 7, 0)
        pool.put(views[0])

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        if asleep:
            h.wait_for_sleepers(pool, "not_empty", pids=[pid])
        pool.put(held.pop())
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    assert pool.free_count == 1
    buf = pool.get()
    h.check(buf, 7, 0)
    pool.put(buf)
    for buf in held:
        pool.put(buf)
    assert pool.free_count == pool.count


@pytest.mark.parametrize("kw", [{}, {"timeout": 60.0}], ids=["no-timeout", "timeout"])
@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
@pytest.mark.parametrize("asleep", [True, False], ids=["asleep", "spinning"])
def test_gathering_enqueue_takes_the_one_slot_that_frees(region, kw, many, asleep):
    pool = Mempool(128, 64, shm=region)
    ring = Ring(64, shm=region)  # gathers 4
    for i in range(ring.count):
        buf = pool.get()
        h.fill(buf, 1, i)
        ring.enqueue(buf)
    notice = h.Notice()

    def child():
        buf = pool.get()
        h.fill(buf, 2, 0)
        notice.send()
        if many:
            ring.enqueue_many([buf], block=True, **kw)
        else:
            ring.enqueue(buf, block=True, **kw)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        if asleep:
            h.wait_for_sleepers(ring, "not_full", pids=[pid])
        buf = ring.dequeue()
        h.check(buf, 1, 0)
        pool.put(buf)
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    for i in range(1, ring.count):
        buf = ring.dequeue()
        h.check(buf, 1, i)
        pool.put(buf)
    buf = ring.dequeue()
    h.check(buf, 2, 0)
    pool.put(buf)
    assert len(ring) == 0 and pool.free_count == pool.count


def test_gathering_get_takes_blocks_coming_back_one_by_one(region):
    """Blocks come back one at a time with pauses between them: every waiting get() in the
    child ends with one, the child gets all of them, in the order they were put."""
    pool = Mempool(64, 64, shm=region)  # gathers 4
    held = [pool.get() for _ in range(pool.count)]
    for i, buf in enumerate(held[:8]):
        h.fill(buf, 9, i)
    notice = h.Notice()

    def child():
        notice.send()
        got = [pool.get(block=True, timeout=60.0) for _ in range(8)]
        for i, buf in enumerate(got):
            h.check(buf, 9, i)
        for buf in got:
            pool.put(buf)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        for buf in held[:8]:
            h.wait_for_sleepers(pool, "not_empty", pids=[pid])
            pool.put(buf)
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    for buf in held[8:]:
        pool.put(buf)
    assert pool.free_count == pool.count


def test_consumer_and_producer_in_two_children_wake_each_other(region):
    """A ring of one entry and a pool of one block: every step of either side waits for
    the other process, both with no timeout."""
    pool = Mempool(1, 64, shm=region)
    ring = Ring(1, shm=region)
    n = 200

    def produce():
        for i in range(n):
            buf = pool.get(block=True)
            h.fill(buf, 4, i)
            ring.enqueue(buf, block=True)

    def consume():
        for i in range(n):
            buf = ring.dequeue(block=True)
            h.check(buf, 4, i)
            pool.put(buf)

    consumer = h.fork_child(consume)
    producer = h.fork_child(produce)
    h.assert_exit(consumer, 0)
    h.assert_exit(producer, 0)
    assert pool.free_count == 1 and len(ring) == 0


def test_spawned_consumer_woken_by_producer(region):
    ctx = multiprocessing.get_context("spawn")
    pool = Mempool(2, 64, shm=region)
    ring = Ring(2, shm=region)
    ready = ctx.Queue()
    p = ctx.Process(target=h.blocking_consumer, args=(pool, ring, 44, ready))
    p.start()
    try:
        assert h.receive(ready, [p]) == p.pid
        h.wait_for_sleepers(ring, "not_empty", pids=[p.pid])
        buf = pool.get()
        h.fill(buf, 44, 0)
        ring.enqueue(buf)
    finally:
        codes = h.join_all([p])
        ready.close()
        ready.join_thread()
    assert codes == [0]
    assert pool.free_count == 2


# --- signals while blocked --------------------------------------------------------------


@pytest.mark.parametrize("with_timeout", [False, True], ids=["forever", "timeout"])
def test_sigint_raises_keyboard_interrupt(starved, with_timeout):
    notice = h.Notice()
    kw = {"block": True, "timeout": h.GUARD} if with_timeout else {"block": True}

    def child():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        notice.send()
        try:
            starved.call(**kw)
        except KeyboardInterrupt:
            # the interrupted wait left the object as it was
            try:
                starved.call()
            except starved.exc:
                starved.give_back_extra()
                os._exit(0)
            os._exit(3)
        except BaseException:
            os._exit(2)
        os._exit(1)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(starved.obj, starved.side, pids=[pid])
        os.kill(pid, signal.SIGINT)
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    assert h.sleepers(starved.obj, starved.side) == 0
    starved.finish(extra_sent_elsewhere=starved.op.startswith("enqueue"))


class Interrupted(Exception):
    pass


def test_signal_handler_runs_and_its_exception_propagates(starved):
    notice = h.Notice()

    def child():
        seen = []

        def on_usr1(signum, frame):
            seen.append(signum)
            raise Interrupted()

        signal.signal(signal.SIGUSR1, on_usr1)
        notice.send()
        try:
            starved.call(block=True)
        except Interrupted:
            starved.give_back_extra()
            os._exit(0 if seen == [signal.SIGUSR1] else 4)
        except BaseException:
            os._exit(2)
        os._exit(1)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(starved.obj, starved.side, pids=[pid])
        os.kill(pid, signal.SIGUSR1)
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    starved.finish(extra_sent_elsewhere=starved.op.startswith("enqueue"))


def test_signal_handler_that_returns_lets_the_wait_go_on(starved):
    notice, handled = h.Notice(), h.Notice()

    def child():
        seen = []

        def on_usr1(signum, frame):
            seen.append(signum)
            handled.send()

        signal.signal(signal.SIGUSR1, on_usr1)
        notice.send()
        views = starved.call(block=True)
        assert seen == [signal.SIGUSR1]
        starved.check_result(views)
        for buf in views:
            starved.pool.put(buf)

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(starved.obj, starved.side, pids=[pid])
        os.kill(pid, signal.SIGUSR1)
        handled.recv(pid=pid)
        h.wait_for_sleepers(starved.obj, starved.side, pids=[pid])  # asleep again
        starved.relieve()
    finally:
        h.assert_exit(pid, 0)
        notice.close()
        handled.close()
    starved.finish(extra_sent_elsewhere=starved.op.startswith("enqueue"))


def test_timeout_still_ends_the_wait_after_a_signal(region):
    """A handler that returns neither cuts the wait short nor makes it endless."""
    pool = Mempool(1, 64, shm=region)
    ring = Ring(1, shm=region)
    notice = h.Notice()
    timeout = 1.0

    def child():
        seen = []
        signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
        notice.send()
        start = time.monotonic()
        try:
            ring.dequeue(block=True, timeout=timeout)
        except EmptyError:
            if time.monotonic() - start < timeout * 0.9:
                return 5  # the signal ended the wait early
            return 0 if seen else 6  # 6: the signal came too late to test anything
        return 1

    pid = h.fork_child(child)
    try:
        notice.recv(pid=pid)
        h.wait_for_sleepers(ring, "not_empty", pids=[pid])
        os.kill(pid, signal.SIGUSR1)
    finally:
        h.assert_exit(pid, 0)
        notice.close()
    assert pool.free_count == 1
