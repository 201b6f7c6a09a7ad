"""Multi-process stress: producers and consumers (os.fork) pass stamped, checksummed
blocks through one Ring; the parent checks that nothing was lost, duplicated or corrupted
and that every block is back at the end.

Non-blocking API only: every side spins on FullError / EmptyError (with sched_yield).
There is no timing assertion. A spinning child gives up only after STALL_GUARD seconds
without any progress (a deadlock guard), exiting with status EXIT_STALLED.
"""
import hashlib
import os
import struct
import sys
import time
import zlib

import numpy as np
import pytest

from pyshm import (
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_SP_PUT,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    EmptyError,
    FullError,
    Mempool,
    RawBuffer,
    Ring,
    ShareMem,
)

from conftest import child_status, fork_child

ELT = 64
HDR = struct.Struct("<HI")  # producer id, sequence
CRC = struct.Struct("<I")
PAYLOAD_LEN = ELT - HDR.size - CRC.size  # 54
ZERO = bytes(ELT)
STALL_GUARD = 60.0
EXIT_STALLED = 3
EXIT_BAD_DATA = 4


def message(producer, seq):
    head = HDR.pack(producer, seq) + hashlib.blake2b(HDR.pack(producer, seq), digest_size=PAYLOAD_LEN).digest()
    return head + CRC.pack(zlib.crc32(head))


def check_message(data, producers, per_producer):
    """(producer, seq) if data is an intact message, else None."""
    if len(data) != ELT:
        return None
    head, (crc,) = data[: ELT - CRC.size], CRC.unpack_from(data, ELT - CRC.size)
    if zlib.crc32(head) != crc:
        return None
    producer, seq = HDR.unpack_from(data)
    if producer >= producers or seq >= per_producer:
        return None
    if data != message(producer, seq):
        return None
    return producer, seq


class Stall:
    """Deadlock guard: call progress() on every success, idle() on every spin."""

    def __init__(self, what):
        self.what = what
        self.last = time.monotonic()
        self.spins = 0

    def progress(self):
        self.spins = 0

    def idle(self):
        self.spins += 1
        if self.spins & 1023 == 0:
            now = time.monotonic()
            if self.spins == 1024:
                self.last = now
            elif now - self.last > STALL_GUARD:
                print(f"{self.what}: no progress for {STALL_GUARD:.0f}s, giving up", file=sys.stderr)
                sys.stderr.flush()
                os._exit(EXIT_STALLED)
        os.sched_yield()


def run_pipeline(*, producers, consumers, per_producer, ring_count, pool_count, recycle, ring_flags=0,
                 pool_flags=0):
    """Fork the producers and consumers, wait for them, check everything. See module doc.

    recycle="ring": blocks circulate through a second Ring (the free ring): producers
    dequeue an empty block from it, consumers enqueue the block back. The pool is only
    touched by the parent (get all blocks at the start, put them all back at the end).
    recycle="pool": producers get() from the pool, consumers put() to it.
    """
    shm = ShareMem(4 << 20)
    pool = Mempool(pool_count, ELT, pool_flags, shm=shm)
    work = Ring(ring_count, ring_flags, shm=shm)
    free_ring = Ring(pool_count, shm=shm) if recycle == "ring" else None
    if free_ring is not None:
        for _ in range(pool_count):
            free_ring.enqueue(pool.get())
        assert pool.free_count == 0
        assert free_ring.used_count == pool_count

    # Per-consumer counters in raw shared bytes of their own: counts[c, p, seq], then a
    # flag and a stats row per consumer.
    n_counts = consumers * producers * per_producer
    stats_buf = RawBuffer(n_counts * 2 + 8192)
    stats_shm = stats_buf.shm
    COUNTS_AT = 1024
    DONE_AT = COUNTS_AT + n_counts * 2  # byte offset of the "producers finished" flag
    STATS_AT = (DONE_AT + 64) // 8 * 8  # consumers x [received, bad, out of order] as uint64

    def arrays():
        counts = np.frombuffer(stats_buf, dtype=np.uint16, count=n_counts, offset=COUNTS_AT)
        counts = counts.reshape(consumers, producers, per_producer)
        stats = np.frombuffer(stats_buf, dtype=np.uint64, count=consumers * 3, offset=STATS_AT).reshape(consumers, 3)
        done = np.frombuffer(stats_buf, dtype=np.uint8, count=1, offset=DONE_AT)
        return counts, stats, done

    def producer(pid):
        stall = Stall(f"producer {pid}")
        take = free_ring.dequeue if free_ring is not None else pool.get
        for seq in range(per_producer):
            msg = message(pid, seq)
            while True:
                try:
                    buf = take()
                    break
                except EmptyError:
                    stall.idle()
            stall.progress()
            if bytes(buf) != ZERO:  # consumers scrub every block before recycling it
                print(f"producer {pid}: got a block that was not scrubbed", file=sys.stderr)
                return EXIT_BAD_DATA
            buf[:] = msg
            while True:
                try:
                    work.enqueue(buf)
                    break
                except FullError:
                    stall.idle()
            stall.progress()
        return 0

    def consumer(cid):
        counts, stats, done = arrays()
        mine = counts[cid]
        row = stats[cid]
        stall = Stall(f"consumer {cid}")
        back = free_ring.enqueue if free_ring is not None else pool.put
        # A consumer claims ring positions in increasing order, and each producer
        # enqueues its sequence in order: per consumer, each producer's numbers rise.
        last = [-1] * producers
        while True:
            finished = done[0] != 0  # read before the dequeue that may find the ring empty
            try:
                buf = work.dequeue()
            except EmptyError:
                if finished:
                    return 0
                stall.idle()
                continue
            stall.progress()
            data = bytes(buf)
            buf[:] = ZERO
            while True:
                try:
                    back(buf)
                    break
                except FullError:  # the free ring has room for every block: never expected
                    stall.idle()
            row[0] += 1
            got = check_message(data, producers, per_producer)
            if got is None:
                row[1] += 1
            else:
                mine[got] += 1
                if got[1] <= last[got[0]]:
                    row[2] += 1
                last[got[0]] = got[1]

    consumer_pids = [fork_child(consumer, c) for c in range(consumers)]
    producer_pids = [fork_child(producer, p) for p in range(producers)]
    codes = {}
    for i, pid in enumerate(producer_pids):
        codes[f"producer {i}"] = child_status(pid)
    counts, stats, done = arrays()
    done[0] = 1
    for i, pid in enumerate(consumer_pids):
        codes[f"consumer {i}"] = child_status(pid)
    assert all(code == 0 for code in codes.values()), f"child exit codes: {codes}"

    total = producers * per_producer
    per_msg = counts.sum(axis=0)  # (producers, per_producer)
    lost = int((per_msg == 0).sum())
    duplicated = int((per_msg > 1).sum())
    bad = int(stats[:, 1].sum())
    received = int(stats[:, 0].sum())
    out_of_order = int(stats[:, 2].sum())
    assert bad == 0, f"{bad} corrupted blocks received"
    assert lost == 0, f"{lost} of {total} messages lost"
    assert duplicated == 0, f"{duplicated} messages received more than once"
    assert received == total, f"consumers received {received} blocks, producers sent {total}"
    assert out_of_order == 0, f"{out_of_order} blocks overtook an earlier block of the same producer (FIFO)"
    assert int(counts.sum()) == total
    per_consumer = stats[:, 0].tolist()
    del counts, stats, done, per_msg

    assert work.used_count == 0
    assert len(work) == 0
    with pytest.raises(EmptyError):
        work.dequeue()
    if free_ring is not None:
        assert free_ring.used_count == pool_count
        for _ in range(pool_count):
            buf = free_ring.dequeue()
            assert bytes(buf) == ZERO
            pool.put(buf)
        with pytest.raises(EmptyError):
            free_ring.dequeue()
    assert pool.free_count == pool.count, f"{pool.count - pool.free_count} blocks never came back"
    assert pool.used_count == 0
    # all blocks are really free: get them all once
    held = [pool.get() for _ in range(pool.count)]
    with pytest.raises(EmptyError):
        pool.get()
    for buf in held:
        pool.put(buf)
    del held
    stats_shm.cleanup()
    shm.cleanup()
    return per_consumer


def test_two_producers_two_consumers_1m_blocks_ring_recycling():
    per_consumer = run_pipeline(producers=2, consumers=2, per_producer=500_000, ring_count=64, pool_count=256,
                                recycle="ring")
    assert sum(per_consumer) == 1_000_000


def test_two_producers_two_consumers_pool_get_put_across_processes():
    per_consumer = run_pipeline(producers=2, consumers=2, per_producer=25_000, ring_count=16, pool_count=64,
                                recycle="pool")
    assert sum(per_consumer) == 50_000


def test_three_producers_one_consumer_small_pool():
    # a pool smaller than the ring: producers mostly spin on an empty pool
    per_consumer = run_pipeline(producers=3, consumers=1, per_producer=3_000, ring_count=64, pool_count=8,
                                recycle="pool")
    assert per_consumer == [9_000]


def test_single_producer_single_consumer_flags():
    per_consumer = run_pipeline(producers=1, consumers=1, per_producer=20_000, ring_count=32, pool_count=48,
                                recycle="pool", ring_flags=RING_F_SP_ENQ | RING_F_SC_DEQ,
                                pool_flags=MEMPOOL_F_SP_PUT | MEMPOOL_F_SC_GET)
    assert per_consumer == [20_000]


@pytest.mark.parametrize("ring_count,pool_count", [(1, 1), (1, 4), (2, 16), (3, 16), (5, 16)])
def test_tiny_and_odd_capacities(ring_count, pool_count):
    per_consumer = run_pipeline(producers=2, consumers=2, per_producer=2_500, ring_count=ring_count,
                                pool_count=pool_count, recycle="pool")
    assert sum(per_consumer) == 5_000
