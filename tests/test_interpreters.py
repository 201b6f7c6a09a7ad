"""Sub-interpreters with their own GIL (Python 3.12+): the module declares
Py_MOD_PER_INTERPRETER_GIL_SUPPORTED, so it must import there and work alongside the main
interpreter, each interpreter a member of the region of its own."""
import os
import sys
import threading

import pytest

import pyshm

if sys.version_info < (3, 12):
    pytest.skip("per-interpreter GIL needs Python 3.12 or newer", allow_module_level=True)

try:
    import _interpreters as interpreters  # 3.13

    def create():
        return interpreters.create("isolated")
except ImportError:  # 3.12
    import _xxsubinterpreters as interpreters

    def create():
        return interpreters.create(isolated=True)


def run(iid, code):
    result = interpreters.run_string(iid, code)
    # 3.13 returns None or an exception snapshot; 3.12 raises on failure.
    assert result is None, f"sub-interpreter raised: {result}"


@pytest.fixture
def region():
    name = f"pyshm-subi-{os.getpid()}"
    shm = pyshm.ShareMem(1 << 20, name=name)
    pyshm.Mempool(64, 64, shm=shm, name="pool")
    pyshm.Ring(64, shm=shm, name="ring")
    yield name, shm
    shm.unlink()


def test_import_and_pass_blocks_between_interpreters(region):
    name, shm = region
    pool = pyshm.Mempool.attach(shm, "pool")
    ring = pyshm.Ring.attach(shm, "ring")
    iid = create()
    try:
        run(iid, f"""
import pyshm
shm = pyshm.ShareMem.attach({name!r})
pool = pyshm.Mempool.attach(shm, "pool")
ring = pyshm.Ring.attach(shm, "ring")
for i in range(20):
    b = pool.get(block=True, timeout=30)
    b[:2] = i.to_bytes(2, "little")
    ring.enqueue(b, block=True, timeout=30)
""")
        got = []
        for _ in range(20):
            b = ring.dequeue(block=True, timeout=30)
            got.append(int.from_bytes(b[:2], "little"))
            pool.put(b)
        assert got == list(range(20))
        assert pool.free_count == pool.count
    finally:
        interpreters.destroy(iid)


def test_two_interpreters_at_once_in_two_threads(region):
    """Each interpreter runs in its own thread with its own GIL: true concurrency on one
    region, every block accounted for at the end."""
    name, shm = region
    pool = pyshm.Mempool.attach(shm, "pool")
    code = f"""
import pyshm
shm = pyshm.ShareMem.attach({name!r})
pool = pyshm.Mempool.attach(shm, "pool")
ring = pyshm.Ring.attach(shm, "ring")
for i in range(3000):
    if i % 2:
        b = pool.get(block=True, timeout=30)
        ring.enqueue(b, block=True, timeout=30)
    else:
        try:
            pool.put(ring.dequeue())
        except pyshm.EmptyError:
            pass
"""
    errors = []

    def worker():
        # Each thread creates, runs and destroys its own interpreter: on CPython 3.12,
        # destroying from another thread an interpreter that imported threading (pyshm
        # imports queue, which does) hangs in threading._shutdown, with or without pyshm.
        try:
            iid = create()
            try:
                run(iid, code)
            finally:
                interpreters.destroy(iid)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    ring = pyshm.Ring.attach(shm, "ring")
    while True:
        try:
            pool.put(ring.dequeue())
        except pyshm.EmptyError:
            break
    assert pool.free_count == pool.count
