"""multiprocessing.shared_memory with a queue of indices: the do-it-yourself way.

A SharedMemory buffer is cut into fixed slots; a "free" queue holds the indices of
empty slots and a "used" queue those of filled ones. The producer takes a free index,
writes the slot, puts the index on "used"; the consumer does the reverse. The queues are
multiprocessing.SimpleQueue (a pipe and a lock: no feeder thread, and measured faster
than Queue for single ints here). No batch call: W2 goes one at a time.

Q1 is the same recipe for objects: each is pickled into a 128-byte slot (a 2-byte length,
then the pickle) and unpickled from it.

Also the ``one-copy floor`` of Q2: one process, no queue, no second process: for each
message the producers' per-page marking of a source array, ``numpy.copyto`` into a slot of
a SharedMemory buffer (``Q2_DEPTH`` slots in turn), and the consumers' per-page check of
the slot, back to back. The cost of one copy with nothing around it; a two-process peer
overlaps marking and checking and so can pass it (Q2b does).
"""
from __future__ import annotations

import pickle
import struct

from ..common import (
    CTX,
    LARGE,
    PID_SEQ,
    Q2_DEPTH,
    Q2_SOURCES,
    Q_STR,
    SEQ,
    MultiCheck,
    PagePattern,
    Params,
    Worker,
    bad_obj,
    bad_seq,
    now,
    drop_numpy_workloads,
    percentiles,
    q_obj,
    run_pair,
    run_multi,
    run_workers,
    throughput,
    timed,
)
from . import System

QUEUE = "SimpleQueue"


#: Q1: a slot holds a 2-byte length and the pickle.
Q1_SLOT = 128
LEN = struct.Struct("<H")


def systems() -> list[System]:
    from multiprocessing import shared_memory  # noqa: F401

    floor_workloads = {"Q2a": floor_q2, "Q2b": floor_q2}
    floor_unsupported: dict[str, str] = {}
    drop_numpy_workloads(floor_workloads, floor_unsupported)
    floor_how = (f"one process: mark the source's pages, numpy.copyto into a SharedMemory slot "
                 f"({Q2_DEPTH} in turn), check the slot's pages")
    return [
        System(
            name="shared_memory",
            workloads={"W1": w1, "W2": w1, "W3": w3, "W4": w4, "W5": w5, "Q1": q1},
            notes={
                "W1": f"SharedMemory slots + free/used {QUEUE}s of indices",
                "W2": "no batch call: one at a time, as W1",
                "W3": "copy into the slot | copy out of the slot",
                "W4": "shared free and used queues, 4 | 4; end by -1 markers",
                "W5": "one slot, two index queues, blocking get()",
                "Q1": f"pickle.dumps into a {Q1_SLOT}-byte slot | pickle.loads from it; index queues as W1",
            },
        ),
        System(
            name="one-copy floor",
            workloads=floor_workloads,
            notes={"Q2a": floor_how, "Q2b": floor_how},
            unsupported=floor_unsupported,
        ),
    ]


def _queue():
    return CTX.SimpleQueue() if QUEUE == "SimpleQueue" else CTX.Queue()


class _Slots:
    def __init__(self, count: int, size: int, queues: int = 2):
        from multiprocessing import shared_memory

        self.count, self.size = count, size
        self.shm = shared_memory.SharedMemory(create=True, size=count * size)
        self.queues = [_queue() for _ in range(queues)]
        for i in range(count):
            self.queues[0].put(i)  # the free list

    def close(self) -> None:
        for q in self.queues:
            q.close()
            if hasattr(q, "join_thread"):
                q.join_thread()
        self.shm.close()
        self.shm.unlink()


def w1(p: Params) -> dict:
    s = _Slots(1024, 64)
    free, used = s.queues

    def producer(start):
        buf, get, put, pack = s.shm.buf, free.get, used.put, SEQ.pack_into

        def send(lo, hi):
            for seq in range(lo, hi):
                i = get()
                pack(buf, i * 64, seq)
                put(i)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        buf, get, put, unpack = s.shm.buf, used.get, free.put, SEQ.unpack_from
        start()
        for expected in range(p.total):
            i = get()
            (seq,) = unpack(buf, i * 64)
            if seq != expected:
                raise bad_seq(seq, expected)
            put(i)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        s.close()


def w3(p: Params) -> dict:
    size = p.size or LARGE
    s = _Slots(16, size)
    free, used = s.queues

    def producer(start):
        buf, get, put, pack = s.shm.buf, free.get, used.put, SEQ.pack_into
        src = bytes(range(256)) * (size // 256)

        def send(lo, hi):
            for seq in range(lo, hi):
                i = get()
                off = i * size
                buf[off : off + size] = src
                pack(buf, off, seq)
                put(i)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        buf, get, put, unpack = s.shm.buf, used.get, free.put, SEQ.unpack_from
        dst = bytearray(size)
        out = memoryview(dst)
        start()
        for expected in range(p.total):
            i = get()
            off = i * size
            out[:] = buf[off : off + size]
            put(i)
            if unpack(dst, 0)[0] != expected:
                raise bad_seq(unpack(dst, 0)[0], expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        s.close()


def w4(p: Params) -> dict:
    s = _Slots(1024, 64)
    free, used = s.queues

    def producer(start, pid):
        buf, get, put, pack = s.shm.buf, free.get, used.put, PID_SEQ.pack_into

        def send(lo, hi):
            for seq in range(lo, hi):
                i = get()
                pack(buf, i * 64, pid, seq)
                put(i)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        buf, get, put, unpack = s.shm.buf, used.get, free.put, PID_SEQ.unpack_from
        check = MultiCheck(p.producers)
        t_end = None
        start()
        while True:
            i = get()
            if i < 0:
                break
            check(*unpack(buf, i * 64))
            put(i)
            t_end = now()
        return {"t_end": t_end or now(), "check": check.report()}

    def end():
        for _ in range(p.consumers):
            used.put(-1)

    return run_multi(p, producer, consumer, end, s.close)


def w5(p: Params) -> dict:
    from time import perf_counter_ns

    s = _Slots(1, 64, queues=3)
    _, ping, pong = s.queues

    def initiator(start):
        buf, put, get, pack, unpack = s.shm.buf, ping.put, pong.get, SEQ.pack_into, SEQ.unpack_from
        samples = []
        start()
        for i in range(p.total):
            t = perf_counter_ns()
            pack(buf, 0, 2 * i)
            put(0)
            j = get()
            (seq,) = unpack(buf, j * 64)
            if seq != 2 * i + 1:
                raise bad_seq(seq, 2 * i + 1)
            samples.append(perf_counter_ns() - t)
        return percentiles(samples[p.warm :])

    def echoer(start):
        buf, put, get, pack, unpack = s.shm.buf, pong.put, ping.get, SEQ.pack_into, SEQ.unpack_from
        start()
        for i in range(p.total):
            j = get()
            (seq,) = unpack(buf, j * 64)
            if seq != 2 * i:
                raise bad_seq(seq, 2 * i)
            pack(buf, j * 64, 2 * i + 1)
            put(j)
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        s.close()


# --- the object queue: Q1, and Q2's one-copy floor ------------------------------------------


def q1(p: Params) -> dict:
    s = _Slots(1024, Q1_SLOT)
    free, used = s.queues
    room = Q1_SLOT - LEN.size

    def producer(start):
        buf, get, put, pack, dumps = s.shm.buf, free.get, used.put, LEN.pack_into, pickle.dumps
        proto = pickle.HIGHEST_PROTOCOL

        def send(lo, hi):
            for seq in range(lo, hi):
                b = dumps((seq, seq * 0.5, Q_STR), proto)
                n = len(b)
                if n > room:
                    raise ValueError(f"a pickle of {n} bytes does not fit a {Q1_SLOT}-byte slot")
                i = get()
                off = i * Q1_SLOT
                pack(buf, off, n)
                buf[off + 2 : off + 2 + n] = b
                put(i)

        return timed(start, p, send)

    def consumer(start):
        buf, get, put, unpack, loads = s.shm.buf, used.get, free.put, LEN.unpack_from, pickle.loads
        start()
        for expected in range(p.total):
            i = get()
            off = i * Q1_SLOT
            (n,) = unpack(buf, off)
            m = loads(buf[off + 2 : off + 2 + n])
            put(i)
            if m != (expected, expected * 0.5, Q_STR):
                raise bad_obj(m, q_obj(expected))
        return {"t_end": now()}

    return run_pair(p, producer, consumer, s.close)


def floor_q2(p: Params) -> dict:
    from multiprocessing import shared_memory

    size = p.size
    shm = shared_memory.SharedMemory(create=True, size=Q2_DEPTH * size)

    def run(start):
        import numpy as np

        pattern = PagePattern(size)
        mark, check, copyto = pattern.mark, pattern.check, np.copyto
        srcs = pattern.sources(Q2_SOURCES)
        dst = [np.ndarray((size,), np.uint8, buffer=shm.buf, offset=i * size) for i in range(Q2_DEPTH)]
        for d in dst:
            d.fill(0)  # resident before the clock starts: a floor, not a page-fault count

        def go(lo, hi):
            for seq in range(lo, hi):
                a = srcs[seq % Q2_SOURCES]
                mark(a, seq)
                d = dst[seq % Q2_DEPTH]
                copyto(d, a)
                check(d, seq)

        r = timed(start, p, go)
        r["t_end"] = now()
        return r

    try:
        (r,) = run_workers([Worker(run, role="other")], p.timeout)
        return {"messages": p.n, "seconds": r["t_end"] - r["t_start"]}
    finally:
        shm.close()
        shm.unlink()
