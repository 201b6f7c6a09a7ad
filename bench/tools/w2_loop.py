"""W2's hand-off (batches) in one process, for profilers: the counterpart of w1_loop.py.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/w2.callgrind \
        python bench/tools/w2_loop.py 200000 32
    callgrind_annotate /tmp/w2.callgrind | head -40

Each iteration: get_many(k), struct.pack_into a sequence number into each view,
enqueue_many | dequeue_many(k), struct.unpack_from and check each, put_many: the calls
of W2, with the pool and ring flags W2 uses. N is the number of messages (a multiple of
k). Run it with two values of N and divide the difference in instructions by the
difference in N for the cost of one message without the start-up.

pyshm is found as in w1_loop.py; which one goes to standard error.
"""
import os
import struct
import sys

try:
    import pyshm
except ImportError:  # not installed: this tree's src/pyshm, if its extension is built there
    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import pyshm


def main(n: int, k: int) -> None:
    shm = pyshm.ShareMem(1 << 20)
    pool = pyshm.Mempool(1024, 64, pyshm.MEMPOOL_F_SC_GET | pyshm.MEMPOOL_F_SP_PUT, shm)
    ring = pyshm.Ring(1024, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ, shm)
    get_many, put_many, enq_many, deq_many = pool.get_many, pool.put_many, ring.enqueue_many, ring.dequeue_many
    pack, unpack = struct.Struct("<Q").pack_into, struct.Struct("<Q").unpack_from
    seq = expected = 0
    while seq < n:
        vs = get_many(k)
        for v in vs:
            pack(v, 0, seq)
            seq += 1
        enq_many(vs)
        ws = deq_many(k)
        for w in ws:
            if unpack(w, 0)[0] != expected:
                raise AssertionError(expected)
            expected += 1
        put_many(ws)
    ring.close()
    pool.close()
    shm.close()


if __name__ == "__main__":
    print(f"pyshm {getattr(pyshm, '__version__', '?')} from {os.path.dirname(pyshm.__file__)}", file=sys.stderr)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 32)
