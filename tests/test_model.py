"""A Hypothesis state machine: the Python API against a pure-Python model.

The model knows, for every pool, the exact order of its free queue (a pool hands out the
block free longest; put() queues at the back), and for every ring the exact entries
in it. Every block handed out is identified by its region offset, and stamped with a
unique id when it enters a ring, so FIFO order is checked on what a dequeue returns.

After every step:

- ``pool.free_count`` equals the model; ``free + held here + queued in rings == count``;
- ``len(ring)``, ``ring.free_count`` and ``ring.is_shutdown`` equal the model.

Misuse must be refused and change nothing: a view put twice (``ValueError``), foreign
buffers (``bytes``/``bytearray``: ``TypeError``; ``memoryview(b"...")``, a slice or
copy of a block view, a block of another pool or region: ``ValueError``), a view that
is still shared (``memoryview(view)``, a slice, a numpy array: ``BufferError``, the
block stays held and usable), ``ShareMem.cleanup()`` while views live (``BufferError``).

``PYSHM_HYPOTHESIS_EXAMPLES`` sets the number of examples (default 1200, about 20 s).
"""
import collections
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pyshm

EXAMPLES = int(os.environ.get("PYSHM_HYPOTHESIS_EXAMPLES", "1200"))
ID = struct.Struct("=Q")


def address_of(buf):
    """Where a buffer's first byte is (read-only buffers too)."""
    arr = np.frombuffer(buf, np.uint8)
    try:
        return arr.__array_interface__["data"][0]
    finally:
        del arr


def is_released(view):
    try:
        len(view)
    except ValueError:
        return True
    return False


class Held:
    """A block view this process holds, as the model sees it."""

    def __init__(self, view, pool, offset):
        self.view = view
        self.pool = pool  # index into machine.pools
        self.offset = offset


class PyshmModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.shm = None
        self.other = None

    # -- setup ---------------------------------------------------------------------------

    @initialize(
        geometry=st.lists(st.tuples(st.integers(1, 5), st.sampled_from([8, 16, 24, 64, 100])), min_size=2, max_size=2),
        capacities=st.lists(st.integers(1, 4), min_size=2, max_size=2),
        pool_flags=st.sampled_from([0, pyshm.MEMPOOL_F_SP_PUT | pyshm.MEMPOOL_F_SC_GET]),
        ring_flags=st.sampled_from([0, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ]),
    )
    def setup(self, geometry, capacities, pool_flags, ring_flags):
        self.shm = pyshm.ShareMem(1 << 18)
        with memoryview(self.shm) as m:
            self.base = address_of(m)
        self.pools = [pyshm.Mempool(c, e, pool_flags, shm=self.shm) for c, e in geometry]
        self.rings = [pyshm.Ring(c, ring_flags, shm=self.shm) for c in capacities]
        # Where each block is, from a get-all pass: the free queue then holds them in order.
        self.free = []
        self.owner = {}  # block offset -> pool index
        for i, p in enumerate(self.pools):
            views = p.get_many(p.count)
            assert len(views) == p.count
            offsets = [address_of(v) - self.base for v in views]
            assert offsets == sorted(offsets) and len(set(offsets)) == p.count
            p.put_many(views)
            assert all(is_released(v) for v in views)
            self.free.append(collections.deque(offsets))
            for off in offsets:
                self.owner[off] = i
        self.queued = [collections.deque() for _ in self.rings]  # (offset, id) per entry
        self.shut = [None for _ in self.rings]  # None, "graceful" or "immediate"
        self.held = []
        self.spent = []  # views already put or enqueued (released)
        self.keepers = []  # (held, extra view/array) sharing a held block's buffer
        self.next_id = 1
        # A block of a pool of another region, held for the foreign-buffer rules.
        self.other = pyshm.ShareMem(1 << 16)
        self.other_pool = pyshm.Mempool(2, 64, shm=self.other)
        self.other_view = self.other_pool.get()

    def teardown(self):
        if self.shm is None:
            return
        while self.keepers:
            keeper = self.keepers.pop()[1]
            if isinstance(keeper, memoryview):
                keeper.release()
            del keeper  # a numpy array lets go of the block when it dies
        for h in self.held:
            self.pools[h.pool].put(h.view)
        self.held.clear()
        if self.other is not None:
            self.other_pool.put(self.other_view)
            self.other.cleanup()
        # Nothing is exported any more: cleanup must succeed.
        self.shm.cleanup()
        assert self.shm.closed

    # -- helpers ------------------------------------------------------------------------

    def stamp(self, view):
        """Write a fresh id into the block (None if the view is too short for one)."""
        if len(view) < ID.size:
            return None
        ident = self.next_id
        self.next_id += 1
        ID.pack_into(view, 0, ident)
        return ident

    def take(self, view, offset):
        assert not view.readonly and view.format == "B" and view.c_contiguous
        off = address_of(view) - self.base
        assert off == offset, f"handed out block {off}, the model expected {offset}"
        h = Held(view, self.owner[off], off)
        self.held.append(h)
        return h

    def give_back(self, h):
        """h's view was put or enqueued: it must now be released."""
        assert is_released(h.view)
        self.held.remove(h)
        self.spent.append(h.view)
        del self.spent[:-8]

    def held_of(self, i):
        return self.held[i % len(self.held)]

    def unshared(self):
        shared = {id(h) for h, _ in self.keepers}
        return [h for h in self.held if id(h) not in shared]

    def snapshot(self):
        return ([p.free_count for p in self.pools], [len(r) for r in self.rings], len(self.held))

    # -- pools --------------------------------------------------------------------------

    @rule(p=st.integers(0, 1))
    def get(self, p):
        pool = self.pools[p]
        if not self.free[p]:
            with pytest.raises(pyshm.EmptyError):
                pool.get()
            return
        h = self.take(pool.get(), self.free[p].popleft())
        assert len(h.view) == pool.elt_size
        self.stamp(h.view)

    @rule(p=st.integers(0, 1))
    def get_blocking_empty(self, p):
        if self.free[p]:
            return
        with pytest.raises(pyshm.EmptyError):
            self.pools[p].get(block=True, timeout=0.001)

    @rule(p=st.integers(0, 1), n=st.integers(1, 7))
    def get_many(self, p, n):
        pool = self.pools[p]
        if not self.free[p]:
            with pytest.raises(pyshm.EmptyError):
                pool.get_many(n)
            return
        views = pool.get_many(n)
        assert len(views) == min(n, len(self.free[p]))
        for v in views:
            self.take(v, self.free[p].popleft())

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100))
    def put(self, i):
        h = self.held_of(i)
        shared = any(k[0] is h for k in self.keepers)
        before = self.snapshot()
        if shared:
            with pytest.raises(BufferError):
                self.pools[h.pool].put(h.view)
            assert self.snapshot() == before and not is_released(h.view)
            h.view[0] = h.view[0]  # still usable
            return
        self.pools[h.pool].put(h.view)
        self.free[h.pool].append(h.offset)
        self.give_back(h)

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100))
    def put_to_wrong_pool(self, i):
        h = self.held_of(i)
        before = self.snapshot()
        with pytest.raises((ValueError, BufferError)):
            self.pools[1 - h.pool].put(h.view)
        assert self.snapshot() == before and not is_released(h.view)

    @precondition(lambda self: self.held)
    @rule(p=st.integers(0, 1), data=st.data())
    def put_many(self, p, data):
        mine = [h for h in self.unshared() if h.pool == p]
        if not mine:
            return
        chosen = data.draw(st.lists(st.sampled_from(mine), min_size=1, max_size=len(mine), unique_by=id))
        as_tuple = data.draw(st.booleans())
        views = [h.view for h in chosen]
        self.pools[p].put_many(tuple(views) if as_tuple else views)
        for h in chosen:
            self.free[p].append(h.offset)
            self.give_back(h)

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100))
    def put_many_duplicate(self, i):
        h = self.held_of(i)
        before = self.snapshot()
        with pytest.raises((ValueError, BufferError)):
            self.pools[h.pool].put_many([h.view, h.view])
        assert self.snapshot() == before and not is_released(h.view)

    @precondition(lambda self: self.spent)
    @rule(i=st.integers(0, 100), p=st.integers(0, 1), many=st.booleans())
    def put_twice(self, i, p, many):
        view = self.spent[i % len(self.spent)]
        before = self.snapshot()
        with pytest.raises(ValueError):
            if many:
                self.pools[p].put_many([view])
            else:
                self.pools[p].put(view)
        assert self.snapshot() == before

    @precondition(lambda self: self.spent)
    @rule(i=st.integers(0, 100), r=st.integers(0, 1))
    def enqueue_spent(self, i, r):
        view = self.spent[i % len(self.spent)]
        before = self.snapshot()
        with pytest.raises(ValueError):
            self.rings[r].enqueue(view)
        assert self.snapshot() == before

    # -- foreign buffers ----------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["bytes", "bytearray", "memoryview", "slice", "copy", "other_region", "numpy", "int"]),
        call=st.sampled_from(["put", "put_many", "enqueue", "enqueue_many"]),
        p=st.integers(0, 1),
        i=st.integers(0, 100),
    )
    def foreign(self, kind, call, p, i):
        h = self.held_of(i) if self.held else None
        extra = None
        if kind == "bytes":
            buf, exc = b"x" * 64, TypeError
        elif kind == "bytearray":
            buf, exc = bytearray(64), TypeError
        elif kind == "memoryview":
            buf, exc = memoryview(bytearray(64)), ValueError
        elif kind == "numpy":
            buf, exc = np.zeros(64, np.uint8), TypeError
        elif kind == "int":
            buf, exc = 7, TypeError
        elif kind == "other_region":
            buf, exc = self.other_view, ValueError
        elif h is None:
            return
        elif kind == "slice":
            buf, exc = h.view[1:], ValueError
            extra = buf
        else:
            buf, exc = memoryview(h.view), ValueError
            extra = buf
        before = self.snapshot()
        try:
            with pytest.raises(exc):
                if call == "put":
                    self.pools[p].put(buf)
                elif call == "put_many":
                    self.pools[p].put_many([buf])
                elif call == "enqueue":
                    self.rings[p].enqueue(buf)
                else:
                    self.rings[p].enqueue_many([buf])
        finally:
            if extra is not None:
                extra.release()
        assert self.snapshot() == before
        if h is not None:
            assert not is_released(h.view)
        assert not is_released(self.other_view)

    @rule()
    def bulk_calls_take_lists(self):
        before = self.snapshot()
        with pytest.raises(TypeError):
            self.pools[0].put_many(iter([]))
        with pytest.raises(TypeError):
            self.rings[0].enqueue_many(x for x in [])
        assert self.snapshot() == before

    # -- views shared with something else -------------------------------------------------

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100), how=st.sampled_from(["memoryview", "slice", "numpy", "cast"]))
    def keep_a_second_view(self, i, how):
        h = self.held_of(i)
        if how == "memoryview":
            keeper = memoryview(h.view)
        elif how == "slice":
            keeper = h.view[: max(1, len(h.view) // 2)]
        elif how == "numpy":
            keeper = np.frombuffer(h.view, np.uint8)
        else:
            keeper = h.view.cast("c")
        self.keepers.append((h, keeper))

    @precondition(lambda self: self.keepers)
    @rule(i=st.integers(0, 100))
    def drop_second_view(self, i):
        h, keeper = self.keepers.pop(i % len(self.keepers))
        if isinstance(keeper, memoryview):
            keeper.release()

    @precondition(lambda self: self.keepers)
    @rule(i=st.integers(0, 100), r=st.integers(0, 1), many=st.booleans())
    def enqueue_shared(self, i, r, many):
        h, _ = self.keepers[i % len(self.keepers)]
        before = self.snapshot()
        with pytest.raises(BufferError):
            if many:
                self.rings[r].enqueue_many([h.view])
            else:
                self.rings[r].enqueue(h.view)
        assert self.snapshot() == before and not is_released(h.view)

    @precondition(lambda self: self.held)
    @rule()
    def cleanup_refused(self):
        before = self.snapshot()
        with pytest.raises(BufferError):
            self.shm.cleanup()
        assert not self.shm.closed
        assert self.snapshot() == before
        h = self.held[0]
        h.view[-1] = h.view[-1]

    @precondition(lambda self: not self.held)
    @rule()
    def cleanup_refused_for_raw_view(self):
        with memoryview(self.shm) as raw:
            with pytest.raises(BufferError):
                self.shm.cleanup()
            assert len(raw) == self.shm.size + pyshm.REGION_OVERHEAD
        assert not self.shm.closed

    # -- rings --------------------------------------------------------------------------

    def room(self, r):
        return self.rings[r].count - len(self.queued[r])

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100), r=st.integers(0, 1), block=st.booleans())
    def enqueue(self, i, r, block):
        h = self.held_of(i)
        if any(k[0] is h for k in self.keepers):
            return  # enqueue_shared covers it
        ring = self.rings[r]
        before = self.snapshot()
        kwargs = {"block": True, "timeout": 0.001} if block else {}
        if self.shut[r]:
            with pytest.raises(pyshm.ShutDown):
                ring.enqueue(h.view, **kwargs)
        elif self.room(r) == 0:
            with pytest.raises(pyshm.FullError):
                ring.enqueue(h.view, **kwargs)
        else:
            ident = self.stamp(h.view)
            ring.enqueue(h.view, **kwargs)
            self.queued[r].append((h.offset, ident))
            self.give_back(h)
            return
        assert self.snapshot() == before and not is_released(h.view)

    @precondition(lambda self: self.held)
    @rule(r=st.integers(0, 1), data=st.data())
    def enqueue_many(self, r, data):
        ring = self.rings[r]
        free = self.unshared()
        if not free:
            return
        chosen = data.draw(st.lists(st.sampled_from(free), min_size=1, max_size=len(free), unique_by=id))
        views = [h.view for h in chosen]
        before = self.snapshot()
        if len(chosen) > ring.count:
            with pytest.raises(ValueError):
                ring.enqueue_many(views)
        elif self.shut[r]:
            with pytest.raises(pyshm.ShutDown):
                ring.enqueue_many(views)
        elif self.room(r) < len(chosen):
            with pytest.raises(pyshm.FullError):
                ring.enqueue_many(views)
        else:
            idents = [self.stamp(v) for v in views]
            ring.enqueue_many(views)
            for h, ident in zip(chosen, idents):
                self.queued[r].append((h.offset, ident))
                self.give_back(h)
            return
        assert self.snapshot() == before and not any(is_released(v) for v in views)

    def check_dequeued(self, view, r, size=None):
        offset, ident = self.queued[r].popleft()
        h = self.take(view, offset)
        pool = self.pools[h.pool]
        assert len(view) == (size if size is not None else pool.elt_size)
        if ident is not None and len(view) >= ID.size:
            assert ID.unpack_from(view, 0)[0] == ident, "the ring delivered another block's contents"

    def busy(self, r, prefer):
        """r, or with `prefer` the other ring if only that one has entries."""
        if prefer and not self.queued[r] and self.queued[1 - r]:
            return 1 - r
        return r

    @rule(
        r=st.integers(0, 1),
        prefer=st.booleans(),
        sized=st.booleans(),
        size=st.sampled_from([1, 7, 8, 16, 24, 64, 100, 101, 4096]),
    )
    def dequeue(self, r, prefer, sized, size):
        r = self.busy(r, prefer)
        ring = self.rings[r]
        size = size if sized else None
        before = self.snapshot()
        if self.shut[r] == "immediate" or (self.shut[r] and not self.queued[r]):
            with pytest.raises(pyshm.ShutDown):
                ring.dequeue(size)
        elif not self.queued[r]:
            with pytest.raises(pyshm.EmptyError):
                ring.dequeue(size)
        elif size is not None and size > self.pools[self.owner[self.queued[r][0][0]]].elt_size:
            with pytest.raises(ValueError):
                ring.dequeue(size)  # too big: the block stays first in the ring
        else:
            self.check_dequeued(ring.dequeue(size), r, size)
            return
        assert self.snapshot() == before

    @rule(r=st.integers(0, 1), prefer=st.booleans(), n=st.integers(1, 6), block=st.booleans())
    def dequeue_many(self, r, prefer, n, block):
        r = self.busy(r, prefer)
        ring = self.rings[r]
        kwargs = {"block": True, "timeout": 0.001} if block else {}
        before = self.snapshot()
        if self.shut[r] == "immediate" or (self.shut[r] and not self.queued[r]):
            with pytest.raises(pyshm.ShutDown):
                ring.dequeue_many(n, **kwargs)
        elif not self.queued[r]:
            with pytest.raises(pyshm.EmptyError):
                ring.dequeue_many(n, **kwargs)
        else:
            views = ring.dequeue_many(n, **kwargs)
            assert len(views) == min(n, len(self.queued[r]))
            for v in views:
                self.check_dequeued(v, r)
            return
        assert self.snapshot() == before

    @rule(r=st.integers(0, 1), immediate=st.booleans(), rare=st.integers(0, 7))
    def shutdown(self, r, immediate, rare):
        if rare:
            return  # a shut-down ring stays shut: keep it to about one step in 200
        self.rings[r].shutdown(immediate=immediate)
        if immediate:
            self.shut[r] = "immediate"
            # The queued blocks go back to their pools, oldest first.
            while self.queued[r]:
                offset, _ = self.queued[r].popleft()
                self.free[self.owner[offset]].append(offset)
        elif self.shut[r] is None:
            self.shut[r] = "graceful"

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def counts_match(self):
        if self.shm is None:
            return
        for i, pool in enumerate(self.pools):
            held = sum(1 for h in self.held if h.pool == i)
            queued = sum(1 for q in self.queued for off, _ in q if self.owner[off] == i)
            assert pool.free_count == len(self.free[i])
            assert pool.used_count == pool.count - pool.free_count
            assert pool.free_count + held + queued == pool.count
        for r, ring in enumerate(self.rings):
            assert len(ring) == len(self.queued[r]) == ring.used_count
            assert ring.free_count == ring.count - len(self.queued[r])
            assert ring.is_shutdown == (self.shut[r] is not None)

    @invariant()
    def held_views_live(self):
        if self.shm is None:
            return
        for h in self.held:
            assert not is_released(h.view) and address_of(h.view) - self.base == h.offset
        for v in self.spent:
            assert is_released(v)


PyshmModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_model = PyshmModel.TestCase
