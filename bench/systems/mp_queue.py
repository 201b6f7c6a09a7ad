"""multiprocessing.Queue: the baseline. Every message is pickled, written to a pipe by a
feeder thread, read and unpickled by the consumer. It has no batch call, so W2 sends
one message at a time like W1.

The object-queue workloads: Q1 and Q4 put tuples, Q2 numpy arrays (pickled by the feeder
thread after put returns: a producer rotates through more arrays than ``maxsize``, so
that none is rewritten before it was pickled), and Q3 only at 64 MiB (Q3c), a fresh
``numpy.empty`` array per message: the baseline of pyshm.Queue's in-queue arrays."""
from __future__ import annotations

from ..common import (
    CTX,
    LARGE,
    MSG64,
    MSG64_PID,
    Q2_DEPTH,
    Q3_SIZES,
    SEQ,
    MultiCheck,
    PagePattern,
    Params,
    Worker,
    bad_seq,
    now,
    drop_numpy_workloads,
    percentiles,
    run_multi,
    run_workers,
    throughput,
)
from . import System, _queues


def systems() -> list[System]:
    unsupported = {w: "run at 64 MiB only (Q3c): the baseline of pyshm.Queue's in-queue arrays"
                   for w in Q3_SIZES if w != "Q3c"}
    workloads = {"W1": w1, "W2": w1, "W3": w3, "W4": w4, "W5": w5,
                 "Q1": q1, "Q2a": q2, "Q2b": q2, "Q3c": q3, "Q4": q4}
    drop_numpy_workloads(workloads, unsupported)
    q2_how = f"put(arr), maxsize={Q2_DEPTH} (pickled by the feeder thread) | get() is a private copy"
    return [
        System(
            name="mp.Queue",
            workloads=workloads,
            notes={
                "W1": "put(64 bytes) | get()",
                "W2": "no batch call: one at a time, as W1",
                "W3": "put(a fresh 1 MiB bytearray) | get() is the private copy",
                "W4": "one Queue, 4 | 4; end by None markers",
                "W5": "two Queues, blocking get()",
                "Q1": "put(obj) | get()",
                "Q2a": q2_how,
                "Q2b": q2_how,
                "Q3c": "a = numpy.empty(64 MiB), seq in a[:8], put(a), del a, maxsize=2 | get(), check a[:8], "
                       "read a[-1]",
                "Q4": "one Queue, 4 | 4; end by None markers",
            },
            unsupported=unsupported,
        )
    ]


def _close(*queues) -> None:
    for q in queues:
        q.close()
        q.join_thread()


def w1(p: Params) -> dict:
    q = CTX.Queue()

    def producer(start):
        put, msg = q.put, MSG64.pack
        start()
        for seq in range(p.warm):
            put(msg(seq))
        t0 = now()
        for seq in range(p.warm, p.total):
            put(msg(seq))
        return {"t_start": t0}

    def consumer(start):
        get, unpack = q.get, MSG64.unpack
        start()
        for expected in range(p.total):
            (seq,) = unpack(get())
            if seq != expected:
                raise bad_seq(seq, expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        _close(q)


def w3(p: Params) -> dict:
    size = p.size or LARGE
    q = CTX.Queue(maxsize=16)

    def producer(start):
        put, pack = q.put, SEQ.pack_into
        src = bytes(range(256)) * (size // 256)

        def send(lo, hi):
            for seq in range(lo, hi):
                msg = bytearray(src)  # the queue keeps the object until its thread sends it
                pack(msg, 0, seq)
                put(msg)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        get, unpack = q.get, SEQ.unpack_from
        start()
        for expected in range(p.total):
            msg = get()
            if len(msg) != size or unpack(msg, 0)[0] != expected:
                raise bad_seq(unpack(msg, 0)[0], expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        _close(q)


def w4(p: Params) -> dict:
    q = CTX.Queue()

    def producer(start, pid):
        put, msg = q.put, MSG64_PID.pack
        start()
        for seq in range(p.warm):
            put(msg(pid, seq))
        t0 = now()
        for seq in range(p.warm, p.total):
            put(msg(pid, seq))
        q.close()
        q.join_thread()  # everything is in the pipe before this producer counts as done
        return {"t_start": t0}

    def consumer(start):
        get, unpack = q.get, MSG64_PID.unpack
        check = MultiCheck(p.producers)
        t_end = None
        start()
        while True:
            m = get()
            if m is None:
                break
            check(*unpack(m))
            t_end = now()
        return {"t_end": t_end or now(), "check": check.report()}

    def end():
        for _ in range(p.consumers):
            q.put(None)

    return run_multi(p, producer, consumer, end, lambda: _close(q))


def w5(p: Params) -> dict:
    from time import perf_counter_ns

    ping, pong = CTX.Queue(), CTX.Queue()

    def initiator(start):
        put, get, msg, unpack = ping.put, pong.get, MSG64.pack, MSG64.unpack
        samples = []
        start()
        for i in range(p.total):
            t = perf_counter_ns()
            put(msg(2 * i))
            (seq,) = unpack(get())
            if seq != 2 * i + 1:
                raise bad_seq(seq, 2 * i + 1)
            samples.append(perf_counter_ns() - t)
        return percentiles(samples[p.warm :])

    def echoer(start):
        put, get, msg, unpack = pong.put, ping.get, MSG64.pack, MSG64.unpack
        start()
        for i in range(p.total):
            (seq,) = unpack(get())
            if seq != 2 * i:
                raise bad_seq(seq, 2 * i)
            put(msg(2 * i + 1))
        pong.close()
        pong.join_thread()
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        _close(ping, pong)


# --- the object queue: Q1-Q4 ---------------------------------------------------------------


def q1(p: Params) -> dict:
    return _queues.q1(p, CTX.Queue(), close=_close)


def q2(p: Params) -> dict:
    # put(k) returns once at most maxsize messages are not yet got, so message
    # k - maxsize is got (pickled) by then: Q2_SOURCES > maxsize arrays suffice.
    return _queues.q2(p, PagePattern(p.size), CTX.Queue(maxsize=Q2_DEPTH), close=_close)


def _empty(q):
    import numpy as np

    return np.empty


def q3(p: Params) -> dict:
    return _queues.q3(p, CTX.Queue(maxsize=2), _empty, close=_close)


def q4(p: Params) -> dict:
    # A producer closes its end and joins the feeder thread: everything is in the pipe
    # before it counts as done; then None markers.
    return _queues.q4(p, CTX.Queue(), close=_close, producer_done=_close)
