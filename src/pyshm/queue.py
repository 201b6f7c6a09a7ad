"""Any picklable object, of any size, between processes: ``Queue`` and ``JoinableQueue``.

A drop-in for :class:`multiprocessing.Queue` built on the kill-safe parts underneath
(docs/design.md, "The object queue"):

- every message is **one block** of one size class: pools of 128 B, 256 B, ... up to the
  queue's capacity, all carved up front in one sparse region (a pool costs no memory
  until its blocks are used);
- ``put`` pickles (protocol 5) in the caller's thread, takes a block of the smallest class
  that holds the message, writes the pickle and every large out-of-band buffer (numpy
  arrays, :class:`pickle.PickleBuffer`) into it, and enqueues the block on a ``Ring``;
- ``get`` dequeues a block and unpickles; out-of-band buffers are handed to the unpickler
  as views of the block, so arrays arrive without a copy, and the block goes back to its
  pool when the last of them is gone (in the process that got it);
- blocks of 1 MiB and more give their pages back to the operating system when they go
  back to their pool (``MEMPOOL_F_RETURN_PAGES``).

A process killed at any point holds at most the blocks it took; repair and ``reclaim()``
give those back as for any pool (nothing here adds a shared-memory protocol of its own).
"""
from __future__ import annotations

import asyncio
import io
import operator
import pickle
import struct
import sys
import time
from multiprocessing import reduction
from typing import Any, Iterable

if sys.version_info >= (3, 11):
    from typing import Self

from . import _aio
from .shm import _OnlyThroughMultiprocessing
from ._pyshm import (
    MEMPOOL_F_RETURN_PAGES,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    RawBuffer,
    Ring,
    ShareMem,
    ShutDown,
    _QueueBase,
)

__all__ = ["Queue", "JoinableQueue", "ShutDown"]

# The message layout is src/ext/message.c's.
# Buffers smaller than this stay in the pickle (a copy is cheaper than a table entry).
OOB_MIN = 1024
# The smallest size class; the smallest class whose blocks give their pages back to the
# system when they go back to their pool (smaller ones are reused warm: faulting pages in
# again costs more than the copy).
MIN_CLASS = 128
RETURN_PAGES_MIN = 1 << 28
# An unnamed queue's size class keeps up to capacity / CLASS_SHARE bytes of blocks.
CLASS_SHARE = 8

DEFAULT_CAPACITY = 1 << 30  # unnamed queues: a sparse memfd, nothing resident until used
DEFAULT_NAMED_CAPACITY = 1 << 26  # named queues: /dev/shm space is reserved at creation
DEFAULT_SLOTS = 1 << 16  # messages in flight when maxsize is 0

# The directory of a queue, in a RawBuffer of its region: everything another process
# needs to find the queue's objects.
_META_NAME = "pyshm.Queue"
_META = struct.Struct("<IIQQQQQQQ")  # magic, version, maxsize, capacity, slots, ring, tasks, tokens, nclasses
_META_MAGIC = 0x4D514850
_META_VERSION = 1
_MAX_CLASSES = 48


def _class_sizes(capacity: int) -> list[int]:
    sizes = [MIN_CLASS]
    while sizes[-1] < capacity:
        sizes.append(sizes[-1] * 2)
    return sizes


def _class_counts(capacity: int, sizes: list[int], named: bool, slots: int) -> list[int]:
    """Blocks per size class. A pool hands its free blocks out in FIFO order, so a class
    in steady use ends up touching every one of its blocks: the count is also what the
    class keeps resident. Unnamed: a class holds capacity / 8 bytes of messages (at least
    2 blocks, at most capacity bytes), and the classes no out-of-band buffer fits in hold
    at most the ring's messages (they are freed as soon as they are got). Named (reserved
    at creation): the capacity is shared out between the classes."""
    if named:
        share = max(capacity // len(sizes), MIN_CLASS)
        return [max(1, share // s) for s in sizes]
    counts = []
    for s in sizes:
        n = min(capacity // s, max(2, capacity // CLASS_SHARE // s))
        if s <= OOB_MIN:
            n = min(n, slots + 64)
        counts.append(max(1, n))
    return counts


def _footprint(counts: list[int], sizes: list[int], slots: int, joinable: bool) -> int:
    total = 1 << 20
    for n, s in zip(counts, sizes):
        total += n * (s + 32) + 8192
    rings = 3 if joinable else 1
    total += rings * (slots * 16 + 8192) + (slots * 4) * (64 + 32) + _META.size + 8 * _MAX_CLASSES + 8192
    return total


class Queue(_QueueBase):
    """A process-shared FIFO of Python objects, like :class:`multiprocessing.Queue`.

    ``maxsize`` bounds the number of messages (0: up to 65,536 in flight). ``capacity``
    bounds the bytes: a message (pickle plus out-of-band buffers) may be up to
    ``capacity`` bytes, and each size class (powers of two) holds ``capacity / 8`` bytes
    of messages in flight, at least two (named queues: ``capacity`` shared out between
    the classes). ``name`` makes the region a named one that unrelated processes open
    with :meth:`Queue.attach`.

    ``put``, ``get``, ``put_nowait`` and ``get_nowait`` are the C methods of the base
    class (src/ext/message.c).
    """

    _joinable = False
    _shm: ShareMem
    _meta_offset: int
    _maxsize: int
    _capacity: int
    _ring: Ring
    _pools: tuple[Mempool, ...]

    def __init__(self, maxsize: int = 0, *, capacity: int | None = None, name: str | None = None):
        maxsize = operator.index(maxsize)
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        if capacity is None:
            capacity = DEFAULT_NAMED_CAPACITY if name is not None else DEFAULT_CAPACITY
        capacity = operator.index(capacity)
        if capacity < MIN_CLASS:
            raise ValueError(f"capacity must be at least {MIN_CLASS} bytes")
        sizes = _class_sizes(capacity)
        if len(sizes) > _MAX_CLASSES:
            raise ValueError("capacity is too large")
        slots = maxsize or DEFAULT_SLOTS
        counts = _class_counts(capacity, sizes, name is not None, slots)
        shm = ShareMem(_footprint(counts, sizes, slots, self._joinable), name)
        try:
            ring = Ring(slots, shm=shm)
            pools = [
                Mempool(n, s, MEMPOOL_F_RETURN_PAGES if s >= RETURN_PAGES_MIN else 0, shm=shm)
                for n, s in zip(counts, sizes)
            ]
            tasks = tokens = None
            if self._joinable:
                tasks = Ring(slots * 4, shm=shm)
                tokens = Mempool(slots * 4, 8, shm=shm)
            meta = RawBuffer(_META.size + 8 * len(sizes), shm=shm, name=_META_NAME)
            _META.pack_into(
                meta, 0, 0, _META_VERSION, maxsize, capacity, slots, ring.offset,
                tasks.offset if tasks is not None else 0, tokens.offset if tokens is not None else 0, len(sizes),
            )
            struct.pack_into(f"<{len(sizes)}Q", meta, _META.size, *(p.offset for p in pools))
            struct.pack_into("<I", meta, 0, _META_MAGIC)  # last: the directory is complete
        except BaseException:
            if name is not None:
                shm.unlink()
            shm.cleanup()
            raise
        self._setup(shm, meta.offset)

    # -- finding the objects (creator, children, attachers) ------------------------

    def _setup(self, shm: ShareMem, meta_offset: int) -> None:
        meta = RawBuffer._from_offset(shm, meta_offset)
        deadline = time.monotonic() + 1.0
        while True:
            magic, version, maxsize, capacity, slots, ring_off, tasks_off, tokens_off, n = _META.unpack_from(meta, 0)
            if magic == _META_MAGIC or time.monotonic() > deadline:
                break
            time.sleep(0.001)  # attached while its creator is still writing the directory
        if magic != _META_MAGIC or version != _META_VERSION or not 0 < n <= _MAX_CLASSES:
            raise CorruptionError("this region holds no pyshm.Queue (or one of another version)")
        if len(meta) < _META.size + 8 * n or capacity > MIN_CLASS << (n - 1):
            raise CorruptionError("the queue's directory is damaged")
        self._shm = shm
        self._meta_offset = meta_offset
        self._maxsize = maxsize
        self._capacity = capacity
        self._ring = Ring._from_offset(shm, ring_off)
        self._pools = tuple(Mempool._from_offset(shm, off) for off in struct.unpack_from(f"<{n}Q", meta, _META.size))
        if self._joinable:
            if not (tasks_off and tokens_off):
                raise ValueError("this queue was not made as a JoinableQueue")
            self._tasks = Ring._from_offset(shm, tasks_off)
            self._tokens = Mempool._from_offset(shm, tokens_off)
        # _bind checks every class size.
        self._bind(self._ring, self._pools, capacity, OOB_MIN, _dumps_for_processes, _OnlyThroughMultiprocessing)

    @classmethod
    def attach(cls, name: str) -> Self:
        """Open the named queue ``name`` made by another process (``Queue(name=...)``)."""
        shm = ShareMem.attach(name)
        meta = RawBuffer.attach(shm, _META_NAME)
        self = cls.__new__(cls)
        self._setup(shm, meta.offset)
        return self

    def __reduce__(self) -> tuple[Any, tuple[type[Queue], ShareMem, int]]:
        # The region travels as multiprocessing passes any ShareMem (its descriptor, or
        # its name for a named region); the rest is found through the directory.
        return (_rebuild, (type(self), self._shm, self._meta_offset))

    # -- asyncio -------------------------------------------------------------------

    async def get_async(self, timeout: float | None = None) -> Any:
        """Await the oldest object (``queue.Empty`` after ``timeout`` seconds). Costs no CPU
        while it waits; a task cancelled while it awaits has taken nothing."""
        return await _aio._wait(self._ring, _aio._NOT_EMPTY, self.get_nowait, _aio._check_timeout(timeout),
                                EmptyError)

    async def put_async(self, obj: Any, timeout: float | None = None) -> None:
        """Await room for ``obj`` (pickled once, now) and put it (``queue.Full`` after
        ``timeout`` seconds). A task cancelled while it awaits has put nothing."""
        timeout = _aio._check_timeout(timeout)
        data, oob = self._pickle(obj)
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        full = self._try_send(data, oob)
        while full is not None:
            # Wait on what is full: the ring (messages) or the message's size class (bytes).
            handle, side = (self._ring, _aio._NOT_FULL) if full < 0 else (self._pools[full], _aio._NOT_EMPTY)
            seen = full

            def attempt() -> None:
                nonlocal full
                full = self._try_send(data, oob)
                if full is not None and full == seen:
                    raise FullError("the queue is full")
                # sent, or full somewhere else: back to the loop above

            left = None if end is None else max(0.0, end - loop.time())
            try:
                await _aio._wait(handle, side, attempt, left, FullError)
            except FullError:
                raise FullError(
                    "the queue is full (messages)" if seen < 0 else
                    f"the queue is full: no {self._pools[seen].elt_size}-byte block free"
                ) from None

    # -- more than one, and memory to fill in place ----------------------------------

    def put_many(self, objs: Iterable[Any], block: bool = True, timeout: float | None = None) -> None:
        """Put each object in turn (``timeout`` bounds the whole call). On error, the objects
        before the failing one are in the queue and the rest are not."""
        end = None if timeout is None or not block else time.monotonic() + timeout
        for obj in objs:
            self.put(obj, block, None if end is None else max(0.0, end - time.monotonic()))

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> list[Any]:
        """1 to ``n`` objects: waits (as ``get``) for the first, then takes those already there."""
        if n < 1:
            raise ValueError("n must be at least 1")
        out = [self.get(block, timeout)]
        try:
            while len(out) < n:
                out.append(self.get(False))
        except (EmptyError, ShutDown):
            pass
        return out

    def buffer(self, nbytes: int, block: bool = True, timeout: float | None = None) -> pickle.PickleBuffer:
        """``nbytes`` of writable memory inside the queue, as a :class:`pickle.PickleBuffer`
        (write through ``memoryview(buf)`` or ``numpy.frombuffer(buf, ...)``). ``put()`` of an
        object whose one large buffer is exactly this memory sends it without copying it
        (the receiver gets a writable ``memoryview``): after that ``put()`` the memory
        belongs to the receiver, and this process must not touch it again. Dropped unsent,
        it goes back to the queue."""
        return pickle.PickleBuffer(self._lend(nbytes, block, timeout))

    def array(self, shape: Any, dtype: Any = float, block: bool = True, timeout: float | None = None) -> Any:
        """A numpy array allocated inside the queue (see :meth:`buffer`): fill it, then
        ``put(array)`` sends it with no copy at all, whatever its size."""
        import numpy

        dt = numpy.dtype(dtype)
        count = 1
        for dim in (shape if isinstance(shape, tuple) else (shape,)):
            count *= operator.index(dim)
        return numpy.ndarray(shape, dt, buffer=self._lend(count * dt.itemsize, block, timeout))

    # -- state ---------------------------------------------------------------------

    def qsize(self) -> int:
        """Messages in the queue now (approximate while others put and get)."""
        return len(self._ring)

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self._maxsize > 0 and self.qsize() >= self._maxsize

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def shm(self) -> ShareMem:
        return self._shm

    @property
    def name(self) -> str | None:
        return self._shm.name

    def unlink(self) -> None:
        """Remove a named queue's name (processes that have it keep using it)."""
        self._shm.unlink()

    def reclaim(self) -> int:
        """Give back the blocks held by processes that died (see ``Mempool.reclaim``)."""
        return self._pools[0].reclaim()

    def shutdown(self, immediate: bool = False) -> None:
        """As :meth:`queue.Queue.shutdown`, for every process: puts raise ``ShutDown``;
        gets drain what is queued, then raise ``ShutDown`` (at once if ``immediate``,
        which drops what is queued)."""
        self._ring.shutdown(immediate)
        self._wake_all()  # puts waiting for a block of their size class

    def join_thread(self) -> None:
        """No feeder thread to wait for: a put is done when ``put`` returns. As with
        multiprocessing, only valid after :meth:`close`."""
        if not self.closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self) -> None:
        """Nothing to cancel (no feeder thread)."""

    def __repr__(self) -> str:
        where = f"name={self.name!r}" if self.name else "unnamed"
        return f"<pyshm.{type(self).__name__} {where} maxsize={self._maxsize} capacity={self._capacity}>"


class JoinableQueue(Queue):
    """A :class:`Queue` with :meth:`task_done` and :meth:`join`, like
    :class:`multiprocessing.JoinableQueue`. The count of unfinished tasks is a ring of
    tokens: ``put`` adds one before the message, ``task_done`` takes one."""

    _joinable = True
    _tasks: Ring
    _tokens: Mempool

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        end = None if timeout is None or not block else time.monotonic() + timeout
        try:
            token = self._tokens.get(block=block, timeout=timeout)
        except EmptyError:
            raise FullError(
                f"the queue has {self._tokens.count} unfinished tasks, its most (call task_done() for the "
                "objects got)"
            ) from None
        try:
            self._tasks.enqueue(token, block=block, timeout=None if end is None else max(0.0, end - time.monotonic()))
        except BaseException:
            self._tokens.put(token)
            raise
        try:
            super().put(obj, block, None if end is None else max(0.0, end - time.monotonic()))
        except BaseException:
            self._untask()
            raise

    def put_nowait(self, obj: Any) -> None:
        self.put(obj, False)

    def _untask(self) -> bool:
        try:
            token = self._tasks.dequeue()
        except EmptyError:
            return False
        self._tokens.put(token)
        return True

    def task_done(self) -> None:
        """One object got earlier is fully processed."""
        if not self._untask():
            raise ValueError("task_done() called too many times")

    def join(self) -> None:
        """Wait until every object put has been got and marked :meth:`task_done`."""
        nap = 0.0001
        while len(self._tasks) > 0:
            time.sleep(nap)
            nap = min(nap * 2, 0.005)

    def shutdown(self, immediate: bool = False) -> None:
        if immediate:
            # As queue.Queue: what an immediate shutdown drops counts as done.
            dropped = len(self._ring)
            super().shutdown(True)
            for _ in range(dropped):
                if not self._untask():
                    break
        else:
            super().shutdown(False)


def _dumps_for_processes(obj: Any, buffer_callback: Any) -> bytes:
    """Pickle as multiprocessing does for a Queue or Pipe (its reducers: an unnamed
    ShareMem or a pyshm.Queue by file descriptor): what put() tries when plain pickling
    raises _OnlyThroughMultiprocessing."""
    out = io.BytesIO()
    reduction.ForkingPickler(out, 5, True, buffer_callback).dump(obj)  # positional only
    return out.getvalue()


def _rebuild(cls: type[Queue], shm: ShareMem, meta_offset: int) -> Queue:
    self = cls.__new__(cls)
    self._setup(shm, meta_offset)
    return self
