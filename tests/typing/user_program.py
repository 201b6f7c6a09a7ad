"""A user's program that calls every public part of pyshm, with full annotations.

tests/typing/run.sh type-checks it with ``mypy --strict`` for several Python versions
(so the stubs in src/pyshm/*.pyi must accept what users really write), and runs it
(so every call here is real): ``python tests/typing/user_program.py`` exits 0.
"""

import multiprocessing
import os
import pickle
import queue
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

import pyshm
import pyshm.mempool
import pyshm.ring
import pyshm.shm
from pyshm import (
    LAYOUT_VERSION,
    MAX_MEMBERS,
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_SP_PUT,
    REGION_OVERHEAD,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    MempoolError,
    PyshmError,
    RawBuffer,
    Ring,
    RingError,
    ShareMem,
    ShareMemError,
    ShutDown,
    get_shm,
    init_shm,
)

MIB = 1 << 20


def check(condition: bool, what: str) -> None:
    """assert that survives python -O."""
    if not condition:
        raise AssertionError(what)


@contextmanager
def raises(*kinds: type[BaseException]) -> Iterator[None]:
    """The block must raise one of kinds."""
    try:
        yield
    except kinds:
        return
    raise AssertionError(f"expected one of {[k.__name__ for k in kinds]}")


def constants() -> None:
    values: list[int] = [
        LAYOUT_VERSION,
        MAX_MEMBERS,
        REGION_OVERHEAD,
        MEMPOOL_F_SP_PUT,
        MEMPOOL_F_SC_GET,
        RING_F_SP_ENQ,
        RING_F_SC_DEQ,
    ]
    check(all(isinstance(v, int) for v in values), "constants are ints")
    check(MAX_MEMBERS > 0 and REGION_OVERHEAD > 0, "positive sizes")
    version: str = pyshm.__version__
    check(version.count(".") >= 1, "a version string")
    # The submodules re-export what belongs to them.
    check(pyshm.mempool.Mempool is Mempool and pyshm.ring.Ring is Ring, "submodules")
    check(pyshm.shm.ShareMem is ShareMem and pyshm.shm.init_shm is init_shm, "pyshm.shm")
    check(pyshm.mempool.MEMPOOL_F_SC_GET == MEMPOOL_F_SC_GET, "pyshm.mempool flags")
    check(pyshm.ring.RING_F_SC_DEQ == RING_F_SC_DEQ and pyshm.ring.ShutDown is ShutDown, "pyshm.ring")


def exception_hierarchy() -> None:
    for kind in (ShareMemError, MempoolError, RingError, CorruptionError, ShutDown):
        check(issubclass(kind, PyshmError), f"{kind.__name__} is a PyshmError")
    check(issubclass(EmptyError, queue.Empty) and issubclass(FullError, queue.Full), "queue errors")
    check(issubclass(EmptyError, MempoolError) and issubclass(EmptyError, RingError), "EmptyError")
    check(issubclass(FullError, MempoolError) and issubclass(FullError, RingError), "FullError")
    if sys.version_info >= (3, 13):
        check(issubclass(ShutDown, queue.ShutDown), "ShutDown is a queue.ShutDown")


def default_region() -> None:
    """init_shm / get_shm / ShareMem.instance, and what needs them."""
    with raises(ShareMemError):
        get_shm()  # none yet
    with raises(ValueError):
        Ring(4)  # a ring needs a region: shm= or the default one
    shm: ShareMem = init_shm(4 * MIB)
    check(get_shm() is shm and ShareMem.instance() is shm, "one default region")
    with raises(ShareMemError):
        init_shm(MIB)  # only once
    pool = Mempool(8, 256)  # carved from the default region
    ring = Ring(8)
    check(pool.shm is shm and ring.shm is shm, "carved from the default region")
    buf = pool.get()
    ring.enqueue(buf)
    pool.put(ring.dequeue())
    ring.cleanup()
    pool.cleanup()


def region_basics() -> None:
    shm = ShareMem(MIB)
    size: int = shm.size
    free: int = shm.free
    check(size == MIB and free == MIB and not shm.closed, "a fresh region")
    check(shm.name is None, "unnamed")
    fd: int = shm.fileno()
    check(fd >= 0, "a file descriptor")
    # The whole region, read-only, through the buffer protocol.
    with memoryview(shm) as whole:
        check(whole.readonly and len(whole) == size + REGION_OVERHEAD, "memoryview(shm)")
        magic: tuple[int] = struct.unpack_from("=B", whole, 0)
        check(isinstance(magic[0], int), "readable")
    header: tuple[int, ...] = struct.unpack_from("=QQ", shm, 0)  # shm itself is a buffer
    check(len(header) == 2, "struct reads a region")
    array: npt.NDArray[np.uint8] = np.frombuffer(memoryview(shm), dtype=np.uint8, count=16)
    check(array.shape == (16,), "numpy maps a region")
    del array
    with raises(TypeError):
        struct.pack_into("=B", shm, 0, 1)  # read-only: no writable buffer
    with raises(TypeError):
        pickle.dumps(shm)  # an unnamed region pickles only for multiprocessing
    with raises(ValueError):
        shm.unlink()  # no name to unlink
    shm.cleanup()
    check(shm.closed, "closed")
    shm.close()  # again: nothing to do

    with ShareMem(MIB) as other:
        check(not other.closed, "open in the with block")
    check(other.closed, "closed by the with block")


def named_region() -> None:
    name = f"pyshm-typing-{os.getpid()}"
    shm = ShareMem(MIB, name=name)
    try:
        check(shm.name == "/" + name, "the POSIX name")
        check(ShareMem.attach(name) is shm, "one object per region and process")
        check(pickle.loads(pickle.dumps(shm)) is shm, "a named region pickles as its name")

        pool = Mempool(4, 128, shm=shm, name="frames")
        ring = Ring(4, shm=shm, name="queue")
        raw = RawBuffer(64, shm=shm, name="table")
        check(pool.name == "frames" and ring.name == "queue" and raw.name == "table", "object names")

        # Attach by name, or rebuild from the offset, as unpickling does.
        same_pool: Mempool = Mempool.attach(shm, "frames")
        same_ring: Ring = Ring.attach(shm, "queue")
        same_raw: RawBuffer = RawBuffer.attach(shm, "table")
        check(same_pool.offset == pool.offset and same_ring.offset == ring.offset, "attach")
        check(same_raw.offset == raw.offset, "attach a RawBuffer")
        check(Mempool._from_offset(shm, pool.offset).count == 4, "_from_offset")
        check(Ring._from_offset(shm, ring.offset).count == 4, "Ring._from_offset")
        check(RawBuffer._from_offset(shm, raw.offset).size == 64, "RawBuffer._from_offset")
        with raises(CorruptionError):
            Mempool._from_offset(shm, ring.offset)  # a ring is no pool
        with raises(ValueError):
            Ring.attach(shm, "frames")  # that name is a pool

        # Pools, rings and raw buffers of a named region pickle.
        pool2: Mempool = pickle.loads(pickle.dumps(pool))
        ring2: Ring = pickle.loads(pickle.dumps(ring))
        raw2: RawBuffer = pickle.loads(pickle.dumps(raw))
        check(pool2.shm is shm and ring2.offset == ring.offset and len(raw2) == 64, "pickled")

        buf = pool2.get()
        buf[:5] = b"hello"
        ring2.enqueue(buf)
        got = same_ring.dequeue()
        check(bytes(got[:5]) == b"hello", "the same memory")
        same_pool.put(got)

        reclaimed: int = pool.reclaim()  # nothing to reclaim: no process died
        check(reclaimed == 0, "reclaim")
        for handle in (same_pool, same_ring, same_raw, pool2, ring2, raw2, pool, ring, raw):
            handle.cleanup()
    finally:
        shm.unlink()
    with raises(FileNotFoundError):
        ShareMem.attach(name)  # the name is gone
    shm.cleanup()


def pools(shm: ShareMem) -> None:
    pool = Mempool(8, 64, MEMPOOL_F_SP_PUT | MEMPOOL_F_SC_GET, shm, name="pool")
    check(pool.count == 8 and pool.max_count == 8 and pool.elt_size == 64, "sizes")
    check(pool.flags == MEMPOOL_F_SP_PUT | MEMPOOL_F_SC_GET, "flags")
    check(pool.free_count == 8 and pool.used_count == 0, "counts")
    check(pool.shm is shm and pool.name == "pool" and pool.offset > 0 and not pool.closed, "getters")
    check(pool._waiting() == 0, "nobody waits")

    buf: memoryview = pool.get()
    struct.pack_into("=i", buf, 0, 42)
    (value,) = struct.unpack_from("=i", buf)
    check(value == 42, "struct round trip")
    floats: npt.NDArray[np.float64] = np.frombuffer(buf, dtype=np.float64)
    floats[:] = 1.5
    del floats  # or put() raises BufferError
    pool.put(buf)

    views: list[memoryview] = pool.get_many(5)
    more = pool.get_many(n=100, block=True, timeout=1.0)  # 1 to 100: the 3 left
    check(len(views) == 5 and len(more) == 3, "get_many")
    with raises(EmptyError):
        pool.get()
    with raises(queue.Empty):
        pool.get(block=True, timeout=0.01)
    pool.put_many(views)
    pool.put_many(tuple(more))
    check(pool.free_count == pool.count, "all back")
    pool.close()
    check(pool.closed and pool.shm is None, "closed")

    with Mempool(2, 32, shm=shm) as scoped:
        scoped.put(scoped.get(block=True))
    check(scoped.closed, "closed by the with block")

    alone = Mempool(2, 4096)  # no region given and no default: a region of its own
    check(alone.shm is not None and alone.shm is not shm, "its own region")
    alone.cleanup()


def rings(shm: ShareMem) -> None:
    pool = Mempool(16, 32, shm=shm)
    ring = Ring(4, RING_F_SP_ENQ | RING_F_SC_DEQ, shm, name="ring")
    check(ring.count == 4 and ring.flags == RING_F_SP_ENQ | RING_F_SC_DEQ, "ring")
    check(ring.name == "ring" and ring.shm is shm and ring.offset > 0 and not ring.closed, "getters")
    check(len(ring) == 0 and ring.used_count == 0 and ring.free_count == 4, "empty")
    check(ring._waiting() == 0 and not ring.is_shutdown, "idle")

    for i in range(4):
        buf = pool.get()
        buf[0] = i
        ring.enqueue(buf, block=True, timeout=1)
    extra = pool.get()
    with raises(FullError):
        ring.enqueue(extra)
    with raises(queue.Full):
        ring.enqueue(buf=extra, block=True, timeout=0.01)
    first = ring.dequeue(8)  # a view of its first 8 bytes
    check(len(first) == 8 and first[0] == 0, "dequeue(size)")
    pool.put(first)
    rest: list[memoryview] = ring.dequeue_many(10, block=True, timeout=1.0)
    check([b[0] for b in rest] == [1, 2, 3], "oldest first")
    with raises(EmptyError):
        ring.dequeue()
    with raises(queue.Empty):
        ring.dequeue(None, block=True, timeout=0.01)

    ring.enqueue_many(rest)
    ring.enqueue_many((extra,), block=True, timeout=1.0)
    check(len(ring) == 4, "full again")
    too_many = pool.get_many(5)
    with raises(ValueError):
        ring.enqueue_many(too_many)  # 5 blocks never fit 4 slots: nothing moves
    pool.put_many(too_many)  # they are all still ours
    leftovers = [ring.dequeue(size=None) for _ in range(4)]
    pool.put_many(leftovers)

    ring.enqueue(pool.get())
    ring.shutdown()
    check(ring.is_shutdown, "shut down")
    refused = pool.get()
    with raises(ShutDown):
        ring.enqueue(refused)
    pool.put(refused)  # the view stayed ours
    pool.put(ring.dequeue())  # what is left drains
    with raises(ShutDown):
        ring.dequeue(block=True)

    with Ring(8, shm=shm) as other:
        other.enqueue_many(pool.get_many(3))
        other.shutdown(immediate=True)  # the queued blocks go back to their pool
        check(len(other) == 0, "drained")
    check(other.closed, "closed by the with block")
    check(pool.free_count == pool.count, "every block came back")
    ring.cleanup()
    pool.cleanup()


def raw_buffers(shm: ShareMem) -> None:
    raw = RawBuffer(4096, shm, name="raw")
    check(raw.size == 4096 and len(raw) == 4096, "size")
    check(raw.name == "raw" and raw.shm is shm and raw.offset > 0 and not raw.closed, "getters")
    check(raw._waiting() == 0, "nobody waits")
    struct.pack_into("=Q", raw, 0, 7)  # a RawBuffer is a writable buffer
    (seven,) = struct.unpack_from("=Q", raw, 0)
    check(seven == 7, "struct")
    with memoryview(raw) as view:
        check(not view.readonly and view[0] == 7, "memoryview(raw)")
    # numpy's stubs take only known buffer classes before Python 3.12: give it a view.
    counts: npt.NDArray[np.int64] = np.frombuffer(memoryview(raw), dtype=np.int64)
    counts[1:] = 3
    check(int(counts.sum()) == 7 + 3 * 511, "numpy")
    del counts
    raw.cleanup()
    check(raw.closed and raw.shm is None, "closed")

    with RawBuffer(16, shm=shm) as scoped:
        check(bytes(scoped) == bytes(16), "zero-filled")
    check(scoped.closed, "closed by the with block")
    alone = RawBuffer(100)  # a region of its own
    check(alone.shm is not None, "its own region")
    alone.close()


def consume(ring: Ring, pool: Mempool, count: int) -> None:
    """Runs in a spawned process: ring and pool arrive as handles on the same memory."""
    for expected in range(count):
        buf = ring.dequeue(block=True, timeout=30)
        check(struct.unpack_from("=Q", buf)[0] == expected, "in order")
        pool.put(buf)


def other_process(shm: ShareMem) -> None:
    pool = Mempool(8, 64, shm=shm)
    ring = Ring(4, shm=shm)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=consume, args=(ring, pool, 100))
    child.start()
    for seq in range(100):
        buf = pool.get(block=True, timeout=30)
        struct.pack_into("=Q", buf, 0, seq)
        ring.enqueue(buf, block=True, timeout=30)
    child.join(60)
    check(child.exitcode == 0, "the consumer succeeded")
    ring.cleanup()
    pool.cleanup()


def main() -> int:
    constants()
    exception_hierarchy()
    default_region()
    region_basics()
    named_region()
    shm = ShareMem(8 * MIB)
    pools(shm)
    rings(shm)
    raw_buffers(shm)
    other_process(shm)
    before = shm.free
    check(0 < before < shm.size, "carved")
    shm.cleanup()
    print("user_program: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
