"""faster-fifo: a circular buffer in shared memory guarded by a process-shared mutex and
condition variables; messages are pickled into it (put/get, put_many/get_many).

The object-queue workloads (Q1, Q2, Q4) use its object mode: ``put`` pickles into the
buffer before it returns, ``get`` unpickles a private copy. Q2's buffer holds
``Q2_DEPTH`` messages (``max_size_bytes``), 64 MiB ones included."""
from __future__ import annotations

from ..common import (
    BATCH,
    LARGE,
    MSG64,
    MSG64_PID,
    Q2_DEPTH,
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

#: Circular buffer for the small-message workloads: about what 1024 pickled 64-byte
#: messages take, like the 1024-block pools of the others.
SMALL_BYTES = 1 << 17
#: W3: room for 16 messages of 1 MiB, like the others' 16 blocks.
LARGE_MESSAGES = 16


def systems() -> list[System]:
    import faster_fifo  # noqa: F401
    from importlib.metadata import version

    workloads = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "Q1": q1, "Q2a": q2, "Q2b": q2, "Q4": q4}
    unsupported: dict[str, str] = {}
    drop_numpy_workloads(workloads, unsupported)
    q2_how = f"put(arr) pickles into the buffer (max_size_bytes: {Q2_DEPTH} messages) | get() is a private copy"
    return [
        System(
            name="faster-fifo",
            workloads=workloads,
            notes={
                "W1": "put(64 bytes) | get()",
                "W2": "put_many(32 messages) | get_many(max_messages_to_get=32)",
                "W3": "put(buffer) | get() is the private copy",
                "W4": "one Queue, 4 | 4; end by None markers",
                "W5": "two Queues, blocking get()",
                "Q1": "put(obj) | get() (object mode: pickled)",
                "Q2a": q2_how,
                "Q2b": q2_how,
                "Q4": "one Queue, 4 | 4, put(obj) | get(); end by None markers",
            },
            unsupported=unsupported,
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

    return run_multi(p, producer, consumer, end, q.close)


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


# --- the object queue: Q1, Q2, Q4 --------------------------------------------------------------
# put / get take (block=True, timeout) as in W1-W5; put pickles into the buffer before it
# returns.

#: Q2: room per message for the pickle around an array's bytes (and the buffer's framing).
PICKLE_ROOM = 4096


def q1(p: Params) -> dict:
    return _queues.q1(p, _queue(SMALL_BYTES), p.timeout)


def q2(p: Params) -> dict:
    pattern = PagePattern(p.size)
    return _queues.q2(p, pattern, _queue(Q2_DEPTH * (p.size + PICKLE_ROOM)), p.timeout)


def q4(p: Params) -> dict:
    return _queues.q4(p, _queue(SMALL_BYTES), p.timeout)
