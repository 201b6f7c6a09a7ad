"""Mempool usage as the old library's own tests exercised it."""
import os
import struct

import pytest

from pyshm import mempool

from legacy_common import shm  # noqa: F401  (module-scoped fixture)


def test_mempool(shm):
    with mempool.Mempool(1, 4, shm=shm) as mp:
        buf = mp.get()
        with pytest.raises(mempool.EmptyError):
            mp.get()
        assert len(buf) == 4
        struct.pack_into("=i", buf, 0, 1234)
        mp.put(buf)
        buf = mp.get()
        v, = struct.unpack_from("=i", buf)
        assert v == 1234
        assert len(buf) == 4


def test_mempool_multiprocess(shm):
    count = 4
    mp = mempool.Mempool(count, 4, shm=shm)
    assert mp.used_count == 0
    assert mp.free_count == count
    pid = os.fork()
    if pid == 0:
        # The child does its share and then simply falls through: it goes on running
        # the rest of the pytest session (and its cleanups) like the old suite did.
        for i in range(count):
            buf = mp.get()
            struct.pack_into("=i", buf, 0, i)
            mp.put(buf)
    else:
        cid, status = os.wait()
        assert cid == pid
        with mp:
            for i in range(count):
                buf = mp.get()
                assert len(buf) == 4
                v, = struct.unpack_from("=i", buf)
                assert v == i
