"""asyncio: pyshm's awaiting calls (A1, A5) and the asyncio peers of A5.

A1 is W1 with an asyncio consumer: the producer uses pyshm's blocking calls, the
consumer runs an event loop doing ``await ring.dequeue_async()`` and ``pool.put``. A5 is
W5 with both sides awaiting (``enqueue_async`` / ``dequeue_async``). Both are attached
to the ``pyshm-blocking`` system (:func:`attach`, called by run.py after loading the
systems), so that they sit next to its W1 and W5; the other systems show n/a.

The peers of A5, each its own system that runs only A5, in the same two processes:

- ``asyncio-socketpair``: a ``socket.socketpair()``, ``loop.sock_sendall`` /
  ``loop.sock_recv`` of the 64-byte message;
- ``executor-mp.Queue``: ``loop.run_in_executor`` around a blocking
  ``multiprocessing.Queue.get`` (and ``put``), one worker thread.

Every event loop is created before the start barrier and closed after the last message.
"""
from __future__ import annotations

from ..common import (
    CTX,
    MSG64,
    SEQ,
    Params,
    Worker,
    bad_seq,
    now,
    percentiles,
    run_workers,
    throughput,
)
from . import System

ASYNC_WORKLOADS = ("A1", "A5")
PYSHM_NOTES = {
    "A1": "producer: get/enqueue block=True | consumer: await dequeue_async(), put, in an asyncio loop",
    "A5": "both sides: await enqueue_async / await dequeue_async, in asyncio loops",
}


def systems() -> list[System]:
    return [
        System(
            name="asyncio-socketpair",
            workloads={"A5": socketpair_a5},
            notes={"A5": "socket.socketpair(): loop.sock_sendall / loop.sock_recv, 64 bytes"},
        ),
        System(
            name="executor-mp.Queue",
            workloads={"A5": executor_a5},
            notes={"A5": "two Queues: await loop.run_in_executor(put), (blocking get), one worker thread"},
        ),
    ]


def attach(systems_: list[System]) -> None:
    """Give pyshm-blocking the awaiting workloads; mark them n/a on the other systems
    (but for the C floor, the A5 peers and the systems of the object-queue workloads
    only: pyshm.Queue, pyzmq, the one-copy floor)."""
    for s in systems_:
        if s.name == "pyshm-blocking":
            s.workloads.setdefault("A1", pyshm_a1)
            s.workloads.setdefault("A5", pyshm_a5)
            for w, note in PYSHM_NOTES.items():
                s.notes.setdefault(w, note)
            continue
        if s.name == "C core" or not any(w.startswith("W") for w in s.workloads):
            continue
        for w in ASYNC_WORKLOADS:
            if w in s.workloads or w in s.unsupported:
                continue
            if s.name == "pyshm":
                s.unsupported[w] = "spin variant: pyshm's awaiting calls are measured under pyshm-blocking"
            elif s.name in ("asyncio-socketpair", "executor-mp.Queue"):
                continue  # the peers of A5: no row elsewhere
            else:
                s.unsupported[w] = "no asyncio API" + (" (A5: see executor-mp.Queue)" if s.name == "mp.Queue" else "")


def _new_loop():
    import asyncio

    return asyncio.new_event_loop()


# --- pyshm ------------------------------------------------------------------------------------


def pyshm_a1(p: Params) -> dict:
    from .pyshm_sys import _close, _objects

    shm, pool, (ring,) = _objects(1024, 64, 1, 1024, spsc=True)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from

    def producer(start):
        get, enq = pool.get, ring.enqueue

        def send(lo, hi):
            for seq in range(lo, hi):
                v = get(block=True)
                pack(v, 0, seq)
                enq(v, block=True)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        deq, put = ring.dequeue_async, pool.put

        async def main():
            for expected in range(p.total):
                v = await deq()
                if unpack(v, 0)[0] != expected:
                    raise bad_seq(unpack(v, 0)[0], expected)
                put(v)
            return now()

        loop = _new_loop()
        try:
            start()
            t_end = loop.run_until_complete(main())
        finally:
            loop.close()
        return {"t_end": t_end}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        _close(shm, pool, [ring])


def pyshm_a5(p: Params) -> dict:
    from time import perf_counter_ns

    from .pyshm_sys import _close, _objects

    shm, pool, (ping, pong) = _objects(2, 64, 2, 2, spsc=True)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from

    def initiator(start):
        enq, deq = ping.enqueue_async, pong.dequeue_async
        v = pool.get()

        async def main(v):
            samples = []
            for i in range(p.total):
                t = perf_counter_ns()
                pack(v, 0, 2 * i)
                await enq(v)
                v = await deq()
                if unpack(v, 0)[0] != 2 * i + 1:
                    raise bad_seq(unpack(v, 0)[0], 2 * i + 1)
                samples.append(perf_counter_ns() - t)
            pool.put(v)
            return samples

        loop = _new_loop()
        try:
            start()
            samples = loop.run_until_complete(main(v))
        finally:
            loop.close()
        return percentiles(samples[p.warm :])

    def echoer(start):
        enq, deq = pong.enqueue_async, ping.dequeue_async

        async def main():
            for i in range(p.total):
                v = await deq()
                if unpack(v, 0)[0] != 2 * i:
                    raise bad_seq(unpack(v, 0)[0], 2 * i)
                pack(v, 0, 2 * i + 1)
                await enq(v)

        loop = _new_loop()
        try:
            start()
            loop.run_until_complete(main())
        finally:
            loop.close()
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        _close(shm, pool, [ping, pong])


# --- peers of A5 --------------------------------------------------------------------------------


def socketpair_a5(p: Params) -> dict:
    import socket
    from time import perf_counter_ns

    a, b = socket.socketpair()
    size = MSG64.size

    async def recv_exactly(loop, sock, n):
        data = await loop.sock_recv(sock, n)
        while len(data) < n:
            more = await loop.sock_recv(sock, n - len(data))
            if not more:
                raise EOFError("socket closed")
            data += more
        return data

    def initiator(start):
        b.close()
        a.setblocking(False)
        msg, unpack = MSG64.pack, MSG64.unpack

        async def main(loop):
            samples = []
            for i in range(p.total):
                t = perf_counter_ns()
                await loop.sock_sendall(a, msg(2 * i))
                (seq,) = unpack(await recv_exactly(loop, a, size))
                if seq != 2 * i + 1:
                    raise bad_seq(seq, 2 * i + 1)
                samples.append(perf_counter_ns() - t)
            return samples

        loop = _new_loop()
        try:
            start()
            samples = loop.run_until_complete(main(loop))
        finally:
            loop.close()
        return percentiles(samples[p.warm :])

    def echoer(start):
        a.close()
        b.setblocking(False)
        msg, unpack = MSG64.pack, MSG64.unpack

        async def main(loop):
            for i in range(p.total):
                (seq,) = unpack(await recv_exactly(loop, b, size))
                if seq != 2 * i:
                    raise bad_seq(seq, 2 * i)
                await loop.sock_sendall(b, msg(2 * i + 1))

        loop = _new_loop()
        try:
            start()
            loop.run_until_complete(main(loop))
        finally:
            loop.close()
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        a.close()
        b.close()


def executor_a5(p: Params) -> dict:
    from concurrent.futures import ThreadPoolExecutor
    from time import perf_counter_ns

    ping, pong = CTX.Queue(), CTX.Queue()

    def side(start, out_q, in_q, first):
        put, get, msg, unpack = out_q.put, in_q.get, MSG64.pack, MSG64.unpack

        async def main(loop, pool):
            samples = []
            for i in range(p.total):
                t = perf_counter_ns()
                if first:
                    await loop.run_in_executor(pool, put, msg(2 * i))
                (seq,) = unpack(await loop.run_in_executor(pool, get))
                want = 2 * i + 1 if first else 2 * i
                if seq != want:
                    raise bad_seq(seq, want)
                if not first:
                    await loop.run_in_executor(pool, put, msg(2 * i + 1))
                samples.append(perf_counter_ns() - t)
            return samples

        loop = _new_loop()
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            pool.submit(lambda: None).result()  # the worker thread exists before the start
            start()
            samples = loop.run_until_complete(main(loop, pool))
        finally:
            pool.shutdown()
            loop.close()
        if not first:
            out_q.close()
            out_q.join_thread()
            return {}
        return percentiles(samples[p.warm :])

    try:
        lat, _ = run_workers([Worker(side, (ping, pong, True), role="other"),
                              Worker(side, (pong, ping, False), role="other")], p.timeout)
        return lat
    finally:
        for q in (ping, pong):
            q.close()
            q.join_thread()
