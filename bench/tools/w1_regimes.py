"""Which of its three states a W1 run settles in (docs/benchmarks.rst, "Reading W1").

    python bench/tools/w1_regimes.py [--runs 3] [--messages 2000000] [--producer-extra K]
                                     [--consumer-extra K] [--blocking] [--ring N]

W1's loop across two forked processes, as bench/systems/pyshm_sys.py runs it (spinning
variant, same pool, ring and flags), counting how often each side found nothing to do:
the producer's get() an empty pool, the consumer's dequeue() an empty ring. Many
producer misses mean the run settled with every block in the ring (both processes on
the same cache lines); few mean it stayed spread out.

--producer-extra K adds K struct.pack_into calls (into the block, after the sequence
number) to every message the producer sends, about 50 ns for the first and more for
each further one (they run in a loop): a slower producer, to see where it settles.
--consumer-extra K likewise adds K struct.unpack_from calls to every message the
consumer takes. One line per run: messages per second, the
producer's misses, the consumer's misses.

--blocking runs the loop of W1's blocking variant instead (get, enqueue and dequeue
with block=True; nothing to count: a call that waits does not say so), without extra
calls. --ring N makes the ring hold N entries instead of 1,024 (the pool keeps 1,024
blocks): with a smaller ring, a faster producer waits for room in the ring rather than
for a block.

pyshm is found as in w1_loop.py; which one goes to standard error.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(os.path.dirname(HERE)))
from w1_loop import pyshm  # noqa: E402  (the same lookup of pyshm)

from bench.common import SEQ, spin  # noqa: E402  (W1's sequence struct and spin loop)

WARM = 20_000


def timed_sends(send, total, out_w, misses):
    """Warm up, then send the rest timed; report the start and the producer's misses."""
    send(0, WARM)
    t0 = time.perf_counter()
    send(WARM, total)
    os.write(out_w, f"{t0!r} {misses()}\n".encode())


def producer(pool, ring, total, extra, out_w):
    get, enq, pack = pool.get, ring.enqueue, SEQ.pack_into
    misses = 0
    more = extra - 1

    def send(lo, hi):
        # W1's producer loop as bench/systems/pyshm_sys.py has it, with a miss counter;
        # the extra calls in a copy of it, so that K = 0 runs exactly W1's loop.
        nonlocal misses
        if extra == 0:
            for seq in range(lo, hi):
                try:
                    v = get()
                except pyshm.EmptyError:
                    misses += 1
                    v = spin(get, pyshm.EmptyError)
                pack(v, 0, seq)
                try:
                    enq(v)
                except pyshm.FullError:
                    spin(enq, pyshm.FullError, v)
            return
        for seq in range(lo, hi):
            try:
                v = get()
            except pyshm.EmptyError:
                misses += 1
                v = spin(get, pyshm.EmptyError)
            pack(v, 0, seq)
            pack(v, 8, seq)
            if more:
                for k in range(more):
                    pack(v, 16, k)
            try:
                enq(v)
            except pyshm.FullError:
                spin(enq, pyshm.FullError, v)

    timed_sends(send, total, out_w, lambda: misses)


def consumer(pool, ring, total, extra, out_w):
    deq, put, unpack = ring.dequeue, pool.put, SEQ.unpack_from
    misses = 0
    more = extra - 1
    if extra == 0:  # W1's consumer loop, with a miss counter
        for expected in range(total):
            try:
                v = deq()
            except pyshm.EmptyError:
                misses += 1
                v = spin(deq, pyshm.EmptyError)
            if unpack(v, 0)[0] != expected:
                raise SystemExit(f"message {expected}: got {unpack(v, 0)[0]}")
            put(v)
    else:
        for expected in range(total):
            try:
                v = deq()
            except pyshm.EmptyError:
                misses += 1
                v = spin(deq, pyshm.EmptyError)
            if unpack(v, 0)[0] != expected:
                raise SystemExit(f"message {expected}: got {unpack(v, 0)[0]}")
            unpack(v, 8)
            if more:
                for k in range(more):
                    unpack(v, 16)
            put(v)
    os.write(out_w, f"{time.perf_counter()!r} {misses}\n".encode())


def blocking_producer(pool, ring, total, extra, out_w):
    get, enq, pack = pool.get, ring.enqueue, SEQ.pack_into

    def send(lo, hi):  # W1's blocking producer loop, as bench/systems/pyshm_sys.py has it
        for seq in range(lo, hi):
            v = get(block=True)
            pack(v, 0, seq)
            enq(v, block=True)

    timed_sends(send, total, out_w, lambda: -1)


def blocking_consumer(pool, ring, total, extra, out_w):
    deq, put, unpack = ring.dequeue, pool.put, SEQ.unpack_from
    for expected in range(total):  # W1's blocking consumer loop
        v = deq(block=True)
        if unpack(v, 0)[0] != expected:
            raise SystemExit(f"message {expected}: got {unpack(v, 0)[0]}")
        put(v)
    os.write(out_w, f"{time.perf_counter()!r} -1\n".encode())


def one_run(messages: int, producer_extra: int, consumer_extra: int, blocking: bool = False,
            ring_count: int = 1024) -> str:
    shm = pyshm.ShareMem(1 << 20)
    pool = pyshm.Mempool(1024, 64, pyshm.MEMPOOL_F_SC_GET | pyshm.MEMPOOL_F_SP_PUT, shm)
    ring = pyshm.Ring(ring_count, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ, shm)
    total = WARM + messages
    pids, reads = [], []
    for side in (blocking_producer, blocking_consumer) if blocking else (producer, consumer):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                side(pool, ring, total, producer_extra if side in (producer, blocking_producer) else consumer_extra, w)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        pids.append(pid)
        reads.append(r)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    if codes != [0, 0]:
        raise SystemExit(f"producer, consumer exit codes {codes}")
    (t0, p_miss), (t1, c_miss) = [os.read(r, 100).decode().split() for r in reads]
    for r in reads:
        os.close(r)
    ring.close()
    pool.close()
    shm.close()
    rate = messages / (float(t1) - float(t0))
    if blocking:
        return f"{rate / 1e6:.2f} M msg/s"
    return f"{rate / 1e6:.2f} M msg/s   producer misses {int(p_miss):>7,}   consumer misses {int(c_miss):>7,}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--producer-extra", type=int, default=0, metavar="K")
    ap.add_argument("--consumer-extra", type=int, default=0, metavar="K")
    ap.add_argument("--blocking", action="store_true", help="W1's blocking loop (no extra calls, no misses)")
    ap.add_argument("--ring", type=int, default=1024, metavar="N", help="ring entries (the pool has 1,024 blocks)")
    a = ap.parse_args()
    if a.blocking and (a.producer_extra or a.consumer_extra):
        ap.error("--blocking runs W1's blocking loop as it is: no --producer-extra / --consumer-extra")
    print(f"pyshm {getattr(pyshm, '__version__', '?')} from {os.path.dirname(pyshm.__file__)}", file=sys.stderr)
    for _ in range(a.runs):
        print(one_run(a.messages, a.producer_extra, a.consumer_extra, a.blocking, a.ring), flush=True)


if __name__ == "__main__":
    main()
