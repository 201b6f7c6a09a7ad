"""faster-fifo: a circular buffer in shared memory guarded by a process-shared mutex and
condition variables; messages are pickled into it (put/get, put_many/get_many)."""
from __future__ import annotations

from ..common import (
    BATCH,
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

#: Circular buffer for the small-message workloads: about what 1024 pickled 64-byte
#: messages take, like the 1024-block pools of the others.
SMALL_BYTES = 1 << 17
#: W3: room for 16 messages of 1 MiB, like the others' 16 blocks.
LARGE_MESSAGES = 16


def systems() -> list[System]:
    import faster_fifo  # noqa: F401
    from importlib.metadata import version

    return [
        System(
            name="faster-fifo",
            workloads={"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5},
            notes={
                "W1": "put(64 bytes) | get()",
                "W2": "put_many(32 messages) | get_many(max_messages_to_get=32)",
                "W3": "put(buffer) | get() is the private copy",
                "W4": "one Queue, 4 | 4; end by None markers",
                "W5": "two Queues, blocking get()",
            },
            version=version("faster-fifo"),
        )
    ]


def _queue(max_size_bytes: int):
    import faster_fifo

    return faster_fifo.Queue(max_size_bytes=max_size_bytes)


def w1(p: Params) -> dict:
    q = _queue(SMALL_BYTES)
    timeout = p.timeout

    def producer(start):
        put, msg = q.put, MSG64.pack
        start()
        for seq in range(p.warm):
            put(msg(seq), True, timeout)
        t0 = now()
        for seq in range(p.warm, p.total):
            put(msg(seq), True, timeout)
        return {"t_start": t0}

    def consumer(start):
        get, unpack = q.get, MSG64.unpack
        start()
        for expected in range(p.total):
            (seq,) = unpack(get(True, timeout))
            if seq != expected:
                raise bad_seq(seq, expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        q.close()


def w2(p: Params) -> dict:
    q = _queue(SMALL_BYTES)
    timeout = p.timeout
    batch = p.batch or BATCH

    def producer(start):
        put_many, msg = q.put_many, MSG64.pack

        def send(lo, hi):
            for base in range(lo, hi, batch):
                put_many([msg(seq) for seq in range(base, min(base + batch, hi))], True, timeout)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        get_many, unpack = q.get_many, MSG64.unpack
        total, expected = p.total, 0
        start()
        while expected < total:
            for m in get_many(True, timeout, batch):
                (seq,) = unpack(m)
                if seq != expected:
                    raise bad_seq(seq, expected)
                expected += 1
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        q.close()


def w3(p: Params) -> dict:
    size = p.size or LARGE
    q = _queue(LARGE_MESSAGES * (size + 256))
    timeout = p.timeout

    def producer(start):
        put, pack = q.put, SEQ.pack_into
        src = bytes(range(256)) * (size // 256)
        msg = bytearray(size)

        def send(lo, hi):
            for seq in range(lo, hi):
                msg[:] = src
                pack(msg, 0, seq)
                put(msg, True, timeout)  # pickled into the queue before put returns

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        get, unpack = q.get, SEQ.unpack_from
        start()
        for expected in range(p.total):
            msg = get(True, timeout)
            if len(msg) != size or unpack(msg, 0)[0] != expected:
                raise bad_seq(unpack(msg, 0)[0], expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        q.close()


def w4(p: Params) -> dict:
    q = _queue(SMALL_BYTES)
    timeout = p.timeout

    def producer(start, pid):
        put, msg = q.put, MSG64_PID.pack
        start()
        for seq in range(p.warm):
            put(msg(pid, seq), True, timeout)
        t0 = now()
        for seq in range(p.warm, p.total):
            put(msg(pid, seq), True, timeout)
        return {"t_start": t0}

    def consumer(start):
        get, unpack = q.get, MSG64_PID.unpack
        check = MultiCheck(p.producers)
        t_end = None
        start()
        while True:
            m = get(True, timeout)
            if m is None:
                break
            check(*unpack(m))
            t_end = now()
        return {"t_end": t_end or now(), "check": check.report()}

    def end():
        for _ in range(p.consumers):
            q.put(None, True, timeout)

    workers = [Worker(producer, (i,)) for i in range(p.producers)]
    workers += [Worker(consumer, role="consumer") for _ in range(p.consumers)]
    try:
        results = run_workers(workers, p.timeout, on_producers_done=end)
        prods, conss = results[: p.producers], results[p.producers :]
        check_multi(conss, p.producers, p.total)
        return throughput(prods, conss, p.producers * p.n)
    finally:
        q.close()


def w5(p: Params) -> dict:
    from time import perf_counter_ns

    ping, pong = _queue(1 << 12), _queue(1 << 12)
    timeout = p.timeout

    def initiator(start):
        put, get, msg, unpack = ping.put, pong.get, MSG64.pack, MSG64.unpack
        samples = []
        start()
        for i in range(p.total):
            t = perf_counter_ns()
            put(msg(2 * i), True, timeout)
            (seq,) = unpack(get(True, timeout))
            if seq != 2 * i + 1:
                raise bad_seq(seq, 2 * i + 1)
            samples.append(perf_counter_ns() - t)
        return percentiles(samples[p.warm :])

    def echoer(start):
        put, get, msg, unpack = pong.put, ping.get, MSG64.pack, MSG64.unpack
        start()
        for i in range(p.total):
            (seq,) = unpack(get(True, timeout))
            if seq != 2 * i:
                raise bad_seq(seq, 2 * i)
            put(msg(2 * i + 1), True, timeout)
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        ping.close()
        pong.close()
