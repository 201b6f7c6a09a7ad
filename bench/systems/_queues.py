"""Q1-Q4 on any queue-like object with ``put(obj)`` / ``get()`` (mp.Queue, faster-fifo,
pyshm.Queue): the workload bodies, parameterised by the queue (made by the caller in
this process, inherited by the forked workers) and a few small hooks.

- ``timeout``: faster-fifo's ``put(obj, True, timeout)`` / ``get(True, timeout)`` (its
  default timeout is 10 s); None: plain ``put(obj)`` / ``get()`` (mp.Queue,
  pyshm.Queue). Not ``get(*args)`` nor ``get(True, None)``: those add tens of ns a call,
  measurable on pyshm.Queue; the producers' and Q1's loops choose outside the loop, the
  other consumers per message (a few ns next to the check and the copy or the 4 | 4
  contention).
- ``close(q)``: how the parent lets go of the queue afterwards (default ``q.close()``).

Not a system: :data:`bench.systems.MODULES` does not list it.
"""
from __future__ import annotations

from typing import Any, Callable

from ..common import (
    Q2_SOURCES,
    Q_STR,
    SEQ,
    MultiCheck,
    PagePattern,
    Params,
    bad_obj,
    bad_seq,
    now,
    q_obj,
    run_multi,
    run_pair,
    timed,
)


def _close(q: Any) -> None:
    q.close()


def send_objs(put: Callable[..., Any], timeout: float | None = None) -> Callable[[int, int], None]:
    """Q1: a producer's ``send(lo, hi)``: ``put`` messages ``lo..hi-1``."""

    def send(lo: int, hi: int) -> None:
        for seq in range(lo, hi):
            put((seq, seq * 0.5, Q_STR))

    def send_t(lo: int, hi: int) -> None:
        for seq in range(lo, hi):
            put((seq, seq * 0.5, Q_STR), True, timeout)

    return send if timeout is None else send_t


def q1(p: Params, q: Any, timeout: float | None = None, close: Callable[[Any], None] = _close) -> dict:
    """Q1: small objects, 1 | 1."""

    def producer(start):
        return timed(start, p, send_objs(q.put, timeout))

    def consumer(start):
        get, total = q.get, p.total
        start()
        if timeout is None:
            for expected in range(total):
                m = get()
                if m != (expected, expected * 0.5, Q_STR):
                    raise bad_obj(m, q_obj(expected))
        else:
            for expected in range(total):
                m = get(True, timeout)
                if m != (expected, expected * 0.5, Q_STR):
                    raise bad_obj(m, q_obj(expected))
        return {"t_end": now()}

    return run_pair(p, producer, consumer, lambda: close(q))


def q2(p: Params, pattern: PagePattern, q: Any, timeout: float | None = None,
       close: Callable[[Any], None] = _close) -> dict:
    """Q2: numpy arrays of ``pattern.size`` bytes, 1 | 1: the producer rotates through
    ``Q2_SOURCES`` source arrays, stamping each page; the consumer checks every page."""

    def producer(start):
        put, mark = q.put, pattern.mark
        srcs = pattern.sources(Q2_SOURCES)

        def send(lo, hi):
            if timeout is None:
                for seq in range(lo, hi):
                    a = srcs[seq % Q2_SOURCES]
                    mark(a, seq)
                    put(a)
            else:
                for seq in range(lo, hi):
                    a = srcs[seq % Q2_SOURCES]
                    mark(a, seq)
                    put(a, True, timeout)

        return timed(start, p, send)

    def consumer(start):
        get, check = q.get, pattern.check
        start()
        for expected in range(p.total):
            a = get() if timeout is None else get(True, timeout)
            check(a, expected)
            del a  # (pyshm.Queue: the block goes back before the next get waits)
        return {"t_end": now()}

    return run_pair(p, producer, consumer, lambda: close(q))


def q3(p: Params, q: Any, alloc: Callable[[Any], Callable[..., Any]],
       close: Callable[[Any], None] = _close) -> dict:
    """Q3: a fresh array of ``p.size`` bytes per message, ``alloc(q)(size, uint8)`` (called
    in the producer), the sequence number in its first 8 bytes only (the rest is never
    written); the consumer checks the shape and those 8 bytes, and reads the last byte."""
    size = p.size

    def producer(start):
        import numpy as np

        array, put, pack, u8 = alloc(q), q.put, SEQ.pack_into, np.uint8

        def send(lo, hi):
            for seq in range(lo, hi):
                a = array(size, u8)
                pack(a, 0, seq)
                put(a)
                del a

        return timed(start, p, send)

    def consumer(start):
        get, unpack = q.get, SEQ.unpack_from
        shape = (size,)
        start()
        for expected in range(p.total):
            a = get()
            if a.shape != shape:
                raise bad_obj(a.shape, shape)
            seq = unpack(a, 0)[0]
            if seq != expected:
                raise bad_seq(seq, expected)
            a[-1]  # the last byte is readable (not compared: never written)
            del a
        return {"t_end": now()}

    return run_pair(p, producer, consumer, lambda: close(q))


def q4(
    p: Params,
    q: Any,
    timeout: float | None = None,
    close: Callable[[Any], None] = _close,
    producer_done: Callable[[Any], None] | None = None,
    end: Callable[[Any], None] | None = None,
    stop: tuple[type[BaseException], ...] = (),
) -> dict:
    """Q4: small objects, ``p.producers`` | ``p.consumers`` on one queue.

    ``producer_done(q)`` runs in each producer after its last message (mp.Queue: flush its
    feeder thread). ``end(q)`` runs in the parent once the producers are done; by default
    it puts one ``None`` end marker per consumer. A consumer stops at a ``None`` or when
    ``get`` raises one of ``stop`` (pyshm.Queue: ``ShutDown``)."""

    def producer(start, pid):
        put = q.put

        def send(lo, hi):
            if timeout is None:
                for seq in range(lo, hi):
                    put((pid, seq, seq * 0.5, Q_STR))
            else:
                for seq in range(lo, hi):
                    put((pid, seq, seq * 0.5, Q_STR), True, timeout)

        r = timed(start, p, send)
        if producer_done is not None:
            producer_done(q)  # everything is in the queue before this producer counts as done
        return r

    def consumer(start):
        get = q.get
        check = MultiCheck(p.producers)
        t_end = None
        start()
        try:
            while True:
                m = get() if timeout is None else get(True, timeout)
                if m is None:
                    break
                if type(m) is not tuple or len(m) != 4 or m[2] != m[1] * 0.5 or m[3] != Q_STR:
                    raise bad_obj(m, "(pid, seq, seq * 0.5, Q_STR)")
                check(m[0], m[1])
                t_end = now()
        except stop:
            pass
        return {"t_end": t_end or now(), "check": check.report()}

    def markers():
        for _ in range(p.consumers):
            q.put(None) if timeout is None else q.put(None, True, timeout)

    return run_multi(p, producer, consumer, (lambda: end(q)) if end is not None else markers,
                     lambda: close(q))
