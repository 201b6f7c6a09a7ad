"""pyshm.Queue: the object queue (src/pyshm/queue.py), a drop-in for multiprocessing.Queue.

Every message is pickled (protocol 5) into one block of the smallest size class that
holds it, in the caller's thread; ``get`` unpickles, and hands numpy arrays over as views
of the block, which goes back to the queue when the array is dropped. The blocking calls
(``put`` / ``get``, as with multiprocessing.Queue) throughout.

- Q1, Q4: the default queue (``pyshm.Queue()``: 65,536 slots, 1 GiB of sparse memory);
  Q4 ends by ``Queue.shutdown()`` once the producers are done.
- Q2: ``put(arr)`` of an ordinary numpy array: one copy, into the block; capacity 4x the
  message.
- Q3: ``q.array(size, uint8)`` allocated in the queue, seq written in its first 8 bytes,
  ``put`` sends it with no copy; capacity 4x the message (1 GiB: ``2**31``).
"""
from __future__ import annotations

from ..common import (
    PagePattern,
    Params,
    drop_numpy_workloads,
)
from . import System, _queues

NAME = "pyshm.Queue"


def systems() -> list[System]:
    import pyshm

    pyshm.Queue  # noqa: B018  (an older pyshm without it: missing)
    workloads = {"Q1": q1, "Q2a": q2, "Q2b": q2, "Q3a": q3, "Q3b": q3, "Q3c": q3, "Q3d": q3, "Q4": q4}
    how2 = "put(arr): one copy into the block (capacity 4x) | get() is a view, dropped after the check"
    how3 = "a = q.array(size, uint8), seq in a[:8], put(a), del a | get(), check a[:8], read a[-1], drop"
    notes = {
        "Q1": "put(obj) | get(), default Queue()",
        "Q2a": how2,
        "Q2b": how2,
        **{w: how3 + "; capacity 4x (2 blocks of 2x)" for w in ("Q3a", "Q3b", "Q3c")},
        "Q3d": how3 + "; capacity 2**31 (1 block of 2 GiB: one message in flight)",
        "Q4": "one Queue(), 4 | 4; end by Queue.shutdown()",
    }
    unsupported: dict[str, str] = {}
    drop_numpy_workloads(workloads, unsupported)
    return [System(name=NAME, workloads=workloads, notes=notes, unsupported=unsupported,
                   version=pyshm.__version__)]


def _queue(capacity: int | None = None):
    import pyshm

    return pyshm.Queue(capacity=capacity)


def _shutdown(q) -> None:
    q.shutdown()


def q1(p: Params) -> dict:
    return _queues.q1(p, _queue())


def q2(p: Params) -> dict:
    # put copies into the block before it returns; get's view goes back when dropped
    return _queues.q2(p, PagePattern(p.size), _queue(4 * p.size))


def _array(q):
    return q.array  # allocated in the queue: put sends it with no copy


def q3(p: Params) -> dict:
    return _queues.q3(p, _queue(2**31 if p.size >= 1 << 30 else 4 * p.size), _array)


def q4(p: Params) -> dict:
    from pyshm import ShutDown

    return _queues.q4(p, _queue(), end=_shutdown, stop=(ShutDown,))
