"""multiprocessing.Queue: the baseline. Every message is pickled, written to a pipe by a
feeder thread, read and unpickled by the consumer. It has no batch call, so W2 sends
one message at a time like W1."""
from __future__ import annotations

from ..common import (
    CTX,
    LARGE,
    MSG64,
    MSG64_PID,
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


def systems() -> list[System]:
    return [
        System(
            name="mp.Queue",
            workloads={"W1": w1, "W2": w1, "W3": w3, "W4": w4, "W5": w5},
            notes={
                "W1": "put(64 bytes) | get()",
                "W2": "no batch call: one at a time, as W1",
                "W3": "put(a fresh 1 MiB bytearray) | get() is the private copy",
                "W4": "one Queue, 4 | 4; end by None markers",
                "W5": "two Queues, blocking get()",
            },
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

    workers = [Worker(producer, (i,)) for i in range(p.producers)]
    workers += [Worker(consumer, role="consumer") for _ in range(p.consumers)]
    try:
        results = run_workers(workers, p.timeout, on_producers_done=end)
        prods, conss = results[: p.producers], results[p.producers :]
        check_multi(conss, p.producers, p.total)
        return throughput(prods, conss, p.producers * p.n)
    finally:
        _close(q)


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
