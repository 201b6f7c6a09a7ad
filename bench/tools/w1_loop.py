"""W1's hand-off in one process, for profilers (no second process to attribute).

    valgrind --tool=callgrind --callgrind-out-file=/tmp/w1.callgrind \
        python bench/tools/w1_loop.py 200000
    callgrind_annotate /tmp/w1.callgrind | head -40

Each iteration: get, struct.pack_into a sequence number, enqueue | dequeue,
struct.unpack_from and check, put: the calls of W1, with the pool and ring flags W1 uses.

    python bench/tools/w1_loop.py --sides [ROUNDS]

times each side of W1 on its own instead, still in one process: rounds of 512 messages
through the producer's loop (get, pack_into, enqueue), then the same 512 through the
consumer's (dequeue, unpack_from and check, put); prints the best round's nanoseconds
per message for each loop (default 3,000 rounds). Nothing crosses between cores here:
this is what each call costs, not where a two-process run settles
(w1_regimes.py).

pyshm is the one `import pyshm` finds (installed, or editable: this tree's src/pyshm;
PYTHONPATH first for another build), else this tree's src/pyshm. Which one goes to
standard error.
"""
import os
import struct
import sys
import time

try:
    import pyshm
except ImportError:  # not installed: this tree's src/pyshm, if its extension is built there
    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import pyshm


def objects():
    shm = pyshm.ShareMem(1 << 20)
    pool = pyshm.Mempool(1024, 64, pyshm.MEMPOOL_F_SC_GET | pyshm.MEMPOOL_F_SP_PUT, shm)
    ring = pyshm.Ring(1024, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ, shm)
    return shm, pool, ring


def main(n: int) -> None:
    shm, pool, ring = objects()
    get, put, enq, deq = pool.get, pool.put, ring.enqueue, ring.dequeue
    pack, unpack = struct.Struct("<Q").pack_into, struct.Struct("<Q").unpack_from
    for seq in range(n):
        v = get()
        pack(v, 0, seq)
        enq(v)
        w = deq()
        if unpack(w, 0)[0] != seq:
            raise AssertionError(seq)
        put(w)
    ring.close()
    pool.close()
    shm.close()


def sides(rounds: int, k: int = 512) -> None:
    shm, pool, ring = objects()
    get, put, enq, deq = pool.get, pool.put, ring.enqueue, ring.dequeue
    pack, unpack = struct.Struct("<Q").pack_into, struct.Struct("<Q").unpack_from
    clock = time.perf_counter_ns
    best_producer = best_consumer = float("inf")
    for r in range(rounds):
        lo, hi = r * k, r * k + k
        t0 = clock()
        for seq in range(lo, hi):
            v = get()
            pack(v, 0, seq)
            enq(v)
        t1 = clock()
        for seq in range(lo, hi):
            w = deq()
            if unpack(w, 0)[0] != seq:
                raise AssertionError(seq)
            put(w)
        t2 = clock()
        best_producer = min(best_producer, (t1 - t0) / k)
        best_consumer = min(best_consumer, (t2 - t1) / k)
    print(f"producer loop {best_producer:.1f} ns/msg   consumer loop {best_consumer:.1f} ns/msg")
    ring.close()
    pool.close()
    shm.close()


if __name__ == "__main__":
    print(f"pyshm {getattr(pyshm, '__version__', '?')} from {os.path.dirname(pyshm.__file__)}", file=sys.stderr)
    if len(sys.argv) > 1 and sys.argv[1] == "--sides":
        sides(int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
