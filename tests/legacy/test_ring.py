"""Ring usage as the old library's own tests exercised it."""
import os
import struct

from pyshm import mempool, ring

from legacy_common import shm  # noqa: F401  (module-scoped fixture)


def test_ring(shm):
    r = ring.Ring(64, 0, shm=shm)
    with mempool.Mempool(2, 8, shm=shm) as mp:
        buf = mp.get()
        struct.pack_into("=q", buf, 0, -7)
        r.enqueue(buf)
        assert r.used_count == 1
        buf = r.dequeue(8)
        assert len(buf) == 8
        assert struct.unpack_from("=q", buf) == (-7,)
        mp.put(buf)
    r.cleanup()


def test_ring_multiprocess(shm):
    count = 4
    r1 = ring.Ring(64, 0, shm=shm)
    r2 = ring.Ring(64, 0, shm=shm)
    mp = mempool.Mempool(count, 4, shm=shm)
    pid = os.fork()
    if pid == 0:
        # Falls through into the rest of the session, as in the old suite.
        for i in range(count):
            buf = mp.get()
            struct.pack_into("=i", buf, 0, i)
            r1.enqueue(buf)
    else:
        cid, status = os.wait()
        assert cid == pid
        assert r1.used_count == count
        bufs = []
        for i in range(count):
            buf = r1.dequeue(4)
            assert len(buf) == 4
            v, = struct.unpack_from("=i", buf)
            assert v == i
            bufs.append(buf)
        # handles cleaned up while the dequeued views are still held
        mp.cleanup()
        r1.cleanup()
        r2.cleanup()
        for i, buf in enumerate(bufs):
            assert struct.unpack_from("=i", buf) == (i,)
