"""pyshm: blocks from a Mempool handed over through a Ring, never copied.

Two systems: ``pyshm`` spins on the non-blocking calls (catching EmptyError/FullError,
yielding the CPU after a run of failures), ``pyshm-blocking`` passes ``block=True`` and
sleeps on the ring's futex when it has to wait. With one producer and one consumer the
pool and ring are made with the single-producer/single-consumer flags; W4 uses the
defaults (any number of each).
"""
from __future__ import annotations

from ..common import (
    BATCH,
    LARGE,
    SEQ,
    MultiCheck,
    Params,
    Worker,
    bad_seq,
    now,
    percentiles,
    run_multi,
    run_workers,
    spin,
    throughput,
)
from . import System


def systems() -> list[System]:
    import pyshm  # noqa: F401  (ImportError -> missing)

    out = []
    for blocking in (False, True):
        name = "pyshm-blocking" if blocking else "pyshm"
        how = "block=True" if blocking else "non-blocking calls in a spin loop"
        out.append(
            System(
                name=name,
                workloads={
                    "W1": lambda p, b=blocking: w1(p, b),
                    "W2": lambda p, b=blocking: w2(p, b),
                    "W3": lambda p, b=blocking: w3(p, b),
                    "W4": lambda p, b=blocking: w4(p, b),
                    "W5": lambda p, b=blocking: w5(p, b),
                },
                notes={
                    "W1": f"get/pack_into/enqueue | dequeue/unpack_from/put, {how}",
                    "W2": f"get_many/enqueue_many | dequeue_many/put_many (32), {how}",
                    "W3": f"copy in, enqueue | dequeue, copy out, {how}",
                    "W4": f"MPMC pool and ring, {how}; end by Ring.shutdown()",
                    "W5": "blocking dequeue (futex)" if blocking else "spin on dequeue (not the blocking API)",
                },
                version=pyshm.__version__,
            )
        )
    return out


def _objects(count: int, elt_size: int, rings: int, ring_count: int, spsc: bool):
    import pyshm

    stride = elt_size if elt_size < 64 else (elt_size + 63) // 64 * 64
    size = count * (stride + 64) + rings * (ring_count * 16 + 1024) + (1 << 16)
    shm = pyshm.ShareMem(size)
    pool_flags = (pyshm.MEMPOOL_F_SC_GET | pyshm.MEMPOOL_F_SP_PUT) if spsc else 0
    ring_flags = (pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ) if spsc else 0
    pool = pyshm.Mempool(count, elt_size, pool_flags, shm)
    return shm, pool, [pyshm.Ring(ring_count, ring_flags, shm) for _ in range(rings)]


def _close(shm, pool, rings) -> None:
    for r in rings:
        r.close()
    pool.close()
    shm.close()


# --- W1: one by one ----------------------------------------------------------------------


def w1(p: Params, blocking: bool) -> dict:
    from pyshm import EmptyError, FullError

    shm, pool, (ring,) = _objects(1024, 64, 1, 1024, spsc=True)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from

    def producer(start):
        get, enq = pool.get, ring.enqueue

        def send(lo, hi):
            if blocking:
                for seq in range(lo, hi):
                    v = get(block=True)
                    pack(v, 0, seq)
                    enq(v, block=True)
            else:
                for seq in range(lo, hi):
                    try:
                        v = get()
                    except EmptyError:
                        v = spin(get, EmptyError)
                    pack(v, 0, seq)
                    try:
                        enq(v)
                    except FullError:
                        spin(enq, FullError, v)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        deq, put = ring.dequeue, pool.put
        start()
        if blocking:
            for expected in range(p.total):
                v = deq(block=True)
                if unpack(v, 0)[0] != expected:
                    raise bad_seq(unpack(v, 0)[0], expected)
                put(v)
        else:
            for expected in range(p.total):
                try:
                    v = deq()
                except EmptyError:
                    v = spin(deq, EmptyError)
                if unpack(v, 0)[0] != expected:
                    raise bad_seq(unpack(v, 0)[0], expected)
                put(v)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        _close(shm, pool, [ring])


# --- W2: bursts of 32 ----------------------------------------------------------------------


def w2(p: Params, blocking: bool) -> dict:
    from pyshm import EmptyError, FullError

    shm, pool, (ring,) = _objects(1024, 64, 1, 1024, spsc=True)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from
    batch = p.batch or BATCH

    def producer(start):
        get_many, enq_many = pool.get_many, ring.enqueue_many

        def send(lo, hi):
            seq = lo
            while seq < hi:
                k = min(batch, hi - seq)
                if blocking:
                    vs = get_many(k, block=True)
                else:
                    try:
                        vs = get_many(k)
                    except EmptyError:
                        vs = spin(get_many, EmptyError, k)
                for v in vs:
                    pack(v, 0, seq)
                    seq += 1
                if blocking:
                    enq_many(vs, block=True)
                else:
                    try:
                        enq_many(vs)
                    except FullError:
                        spin(enq_many, FullError, vs)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        deq_many, put_many = ring.dequeue_many, pool.put_many
        total = p.total
        expected = 0
        start()
        while expected < total:
            if blocking:
                vs = deq_many(batch, block=True)
            else:
                try:
                    vs = deq_many(batch)
                except EmptyError:
                    vs = spin(deq_many, EmptyError, batch)
            for v in vs:
                if unpack(v, 0)[0] != expected:
                    raise bad_seq(unpack(v, 0)[0], expected)
                expected += 1
            put_many(vs)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        _close(shm, pool, [ring])


# --- W3: 1 MiB messages ------------------------------------------------------------------------


def w3(p: Params, blocking: bool) -> dict:
    from pyshm import EmptyError, FullError

    size = p.size or LARGE
    shm, pool, (ring,) = _objects(16, size, 1, 16, spsc=True)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from

    def producer(start):
        get, enq = pool.get, ring.enqueue
        src = bytes(range(256)) * (size // 256)

        def send(lo, hi):
            for seq in range(lo, hi):
                if blocking:
                    v = get(block=True)
                else:
                    try:
                        v = get()
                    except EmptyError:
                        v = spin(get, EmptyError)
                v[:] = src
                pack(v, 0, seq)
                if blocking:
                    enq(v, block=True)
                else:
                    try:
                        enq(v)
                    except FullError:
                        spin(enq, FullError, v)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        deq, put = ring.dequeue, pool.put
        dst = bytearray(size)
        out = memoryview(dst)
        start()
        for expected in range(p.total):
            if blocking:
                v = deq(block=True)
            else:
                try:
                    v = deq()
                except EmptyError:
                    v = spin(deq, EmptyError)
            out[:] = v
            put(v)
            if unpack(dst, 0)[0] != expected:
                raise bad_seq(unpack(dst, 0)[0], expected)
        return {"t_end": now()}

    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        _close(shm, pool, [ring])


# --- W4: 4 producers, 4 consumers --------------------------------------------------------------


def w4(p: Params, blocking: bool) -> dict:
    from pyshm import EmptyError, FullError, ShutDown

    from ..common import PID_SEQ

    shm, pool, (ring,) = _objects(1024, 64, 1, 1024, spsc=False)
    pack, unpack = PID_SEQ.pack_into, PID_SEQ.unpack_from

    def producer(start, pid):
        get, enq = pool.get, ring.enqueue

        def send(lo, hi):
            for seq in range(lo, hi):
                if blocking:
                    v = get(block=True)
                    pack(v, 0, pid, seq)
                    enq(v, block=True)
                else:
                    try:
                        v = get()
                    except EmptyError:
                        v = spin(get, EmptyError)
                    pack(v, 0, pid, seq)
                    try:
                        enq(v)
                    except FullError:
                        spin(enq, FullError, v)

        start()
        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        deq, put = ring.dequeue, pool.put
        check = MultiCheck(p.producers)
        t_end = None
        start()
        try:
            if blocking:
                while True:
                    v = deq(block=True)
                    check(*unpack(v, 0))
                    put(v)
                    t_end = now()
            else:
                while True:
                    try:
                        v = deq()
                    except EmptyError:
                        v = spin(deq, EmptyError)
                    check(*unpack(v, 0))
                    put(v)
                    t_end = now()
        except ShutDown:
            pass
        return {"t_end": t_end or now(), "check": check.report()}

    return run_multi(p, producer, consumer, ring.shutdown, lambda: _close(shm, pool, [ring]))


# --- W5: round trip ----------------------------------------------------------------------------


def w5(p: Params, blocking: bool) -> dict:
    from time import perf_counter_ns

    from pyshm import EmptyError

    shm, pool, (ping, pong) = _objects(2, 64, 2, 2, spsc=True)
    pack, unpack = SEQ.pack_into, SEQ.unpack_from

    def initiator(start):
        enq, deq = ping.enqueue, pong.dequeue
        v = pool.get()
        samples = []
        start()
        for i in range(p.total):
            t = perf_counter_ns()
            pack(v, 0, 2 * i)
            enq(v, block=True)
            if blocking:
                v = deq(block=True)
            else:
                try:
                    v = deq()
                except EmptyError:
                    v = spin(deq, EmptyError)
            if unpack(v, 0)[0] != 2 * i + 1:
                raise bad_seq(unpack(v, 0)[0], 2 * i + 1)
            samples.append(perf_counter_ns() - t)
        pool.put(v)
        return percentiles(samples[p.warm :])

    def echoer(start):
        enq, deq = pong.enqueue, ping.dequeue
        start()
        for i in range(p.total):
            if blocking:
                v = deq(block=True)
            else:
                try:
                    v = deq()
                except EmptyError:
                    v = spin(deq, EmptyError)
            if unpack(v, 0)[0] != 2 * i:
                raise bad_seq(unpack(v, 0)[0], 2 * i)
            pack(v, 0, 2 * i + 1)
            enq(v, block=True)
        return {}

    try:
        lat, _ = run_workers([Worker(initiator, role="other"), Worker(echoer, role="other")], p.timeout)
        return lat
    finally:
        _close(shm, pool, [ping, pong])


# --- pool creation -----------------------------------------------------------------------------


def pool_creation(count: int = 1_000_000, elt_size: int = 1024, region: int = 1 << 30) -> dict:
    """Time ShareMem(1 GiB) + Mempool(1,000,000 blocks) and measure the pool's overhead.

    The overhead is read from the region header's carve end (region.h: offset 24, the
    first byte not yet carved) before and after creating the pool: everything the pool
    took beyond its blocks' bytes, per block. (Where objects start depends on the layout:
    after the header, or after the header and the member table.)
    """
    import struct

    import pyshm

    def carve_end(shm) -> int:
        with memoryview(shm) as mv:  # type: ignore[arg-type]  # (the stub gives __buffer__ from 3.12)
            return struct.unpack_from("<Q", mv, 24)[0]

    t0 = now()
    shm = pyshm.ShareMem(region)
    start = carve_end(shm)
    pool = pyshm.Mempool(count, elt_size, 0, shm)
    t1 = now()
    try:
        used = carve_end(shm) - start
        free = pool.free_count
        if free != count or pool.count != count:
            raise RuntimeError(f"pool of {count} blocks reports {pool.count} blocks, {free} free")
        return {
            "count": count,
            "elt_size": elt_size,
            "region_bytes": region,
            "create_seconds": t1 - t0,
            "pool_bytes": used,
            "overhead_per_block": (used - count * elt_size) / count,
        }
    finally:
        pool.close()
        shm.close()
