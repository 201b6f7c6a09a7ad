"""multiprocessing.Pipe: raw bytes through a socket pair, no pickling (send_bytes /
recv_bytes). No batch call, and one reader per end: W4 does not apply."""
from __future__ import annotations

from ..common import CTX, LARGE, MSG64, SEQ, Params, Worker, bad_seq, now, percentiles, run_workers, throughput
from . import System


def systems() -> list[System]:
    return [
        System(
            name="mp.Pipe",
            workloads={"W1": w1, "W2": w1, "W3": w3, "W5": w5},
            notes={
                "W1": "send_bytes(64 bytes) | recv_bytes()",
                "W2": "no batch call: one at a time, as W1",
                "W3": "send_bytes(buffer) | recv_bytes_into(private buffer)",
                "W5": "one duplex Pipe, blocking recv_bytes()",
            },
            unsupported={
                "W4": "a Pipe has one reader and one writer; sharing it 4 to 4 needs the locks "
                "that mp.Queue adds (measured there)"
            },
        )
    ]


def w1(p: Params) -> dict:
    r, w = CTX.Pipe(duplex=False)

    def producer(start):
        send, msg = w.send_bytes, MSG64.pack
        start()
        for seq in range(p.warm):
            send(msg(seq))
        t0 = now()
        for seq in range(p.warm, p.total):
            send(msg(seq))
        return {"t_start": t0}

    def consumer(start):
        recv, unpack = r.recv_bytes, MSG64.unpack
        start()
        for expected in range(p.total):
            (seq,) = unpack(recv())
            if seq != expected:
                raise bad_seq(seq, expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        r.close()
        w.close()


def w3(p: Params) -> dict:
    size = p.size or LARGE
    r, w = CTX.Pipe(duplex=False)

    def producer(start):
        send, pack = w.send_bytes, SEQ.pack_into
        src = bytes(range(256)) * (size // 256)
        msg = bytearray(size)

        def send_range(lo, hi):
            for seq in range(lo, hi):
                msg[:] = src
                pack(msg, 0, seq)
                send(msg)

        start()
        send_range(0, p.warm)
        t0 = now()
        send_range(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        recv_into, unpack = r.recv_bytes_into, SEQ.unpack_from
        dst = bytearray(size)
        start()
        for expected in range(p.total):
            if recv_into(dst) != size or unpack(dst, 0)[0] != expected:
                raise bad_seq(unpack(dst, 0)[0], expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        r.close()
        w.close()


def w5(p: Params) -> dict:
    from time import perf_counter_ns

    a, b = CTX.Pipe()

    def initiator(start):
        send, recv, msg, unpack = a.send_bytes, a.recv_bytes, MSG64.pack, MSG64.unpack
        samples = []
        start()
        for i in range(p.total):
            t = perf_counter_ns()
            send(msg(2 * i))
            (seq,) = unpack(recv())
            if seq != 2 * i + 1:
                raise bad_seq(seq, 2 * i + 1)
            samples.append(perf_counter_ns() - t)
        return percentiles(samples[p.warm :])

    def echoer(start):
        send, recv, msg, unpack = b.send_bytes, b.recv_bytes, MSG64.pack, MSG64.unpack
        start()
        for i in range(p.total):
            (seq,) = unpack(recv())
            if seq != 2 * i:
                raise bad_seq(seq, 2 * i)
            send(msg(2 * i + 1))
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        a.close()
        b.close()
