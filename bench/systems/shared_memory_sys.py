"""multiprocessing.shared_memory with a queue of indices: the do-it-yourself way.

A SharedMemory buffer is cut into fixed slots; a "free" queue holds the indices of
empty slots and a "used" queue those of filled ones. The producer takes a free index,
writes the slot, puts the index on "used"; the consumer does the reverse. The queues are
multiprocessing.SimpleQueue (a pipe and a lock: no feeder thread, and measured faster
than Queue for single ints here). No batch call: W2 goes one at a time.
"""
from __future__ import annotations

from ..common import (
    CTX,
    LARGE,
    PID_SEQ,
    SEQ,
    MultiCheck,
    Params,
    Worker,
    bad_seq,
    check_multi,
    now,
    percentiles,
    run_workers,
    throughput,
)
from . import System

QUEUE = "SimpleQueue"


def systems() -> list[System]:
    from multiprocessing import shared_memory  # noqa: F401

    return [
        System(
            name="shared_memory",
            workloads={"W1": w1, "W2": w1, "W3": w3, "W4": w4, "W5": w5},
            notes={
                "W1": f"SharedMemory slots + free/used {QUEUE}s of indices",
                "W2": "no batch call: one at a time, as W1",
                "W3": "copy into the slot | copy out of the slot",
                "W4": "shared free and used queues, 4 | 4; end by -1 markers",
                "W5": "one slot, two index queues, blocking get()",
            },
        )
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

    workers = [Worker(producer, (i,)) for i in range(p.producers)]
    workers += [Worker(consumer, role="consumer") for _ in range(p.consumers)]
    try:
        results = run_workers(workers, p.timeout, on_producers_done=end)
        prods, conss = results[: p.producers], results[p.producers :]
        check_multi(conss, p.producers, p.total)
        return throughput(prods, conss, p.producers * p.n)
    finally:
        s.close()


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
