"""The asyncio methods: Mempool.get_async, get_many_async, Ring.enqueue_async,
enqueue_many_async, dequeue_async, dequeue_many_async (src/pyshm/_aio.py).

Forked children end with os._exit (conftest.fork_child) and the parent asserts their
status. No assertion is about time: timeouts only bound how long a broken build hangs.
"""
import asyncio
import os
import random
import resource
import signal
import struct
import threading
import time

import pytest

import pyshm
from conftest import Signal, fork_child, wait_child

GUARD = 60.0  # a timeout that only a hang reaches


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def produce(pool, rings, count, pause_every=0, go=None):
    """Child: `count` blocks numbered 0.. onto rings[i % len(rings)], blocking calls."""
    if go is not None:
        go.recv()
    for i in range(count):
        view = pool.get(block=True, timeout=GUARD)
        struct.pack_into("=I", view, 0, i)
        rings[i % len(rings)].enqueue(view, block=True, timeout=GUARD)
        if pause_every and i % pause_every == 0:
            time.sleep(0.001)


@pytest.fixture
def objs(shm):
    pool = pyshm.Mempool(64, 16, shm=shm)
    ring = pyshm.Ring(64, shm=shm)
    yield shm, pool, ring
    pool.cleanup()
    ring.cleanup()


def test_round_trip_across_processes(objs):
    shm, pool, ring = objs
    go = Signal()
    pid = fork_child(produce, pool, [ring], 40, 5, go)

    async def consume():
        go.send()  # the producer starts once a task may already wait
        got = []
        for _ in range(40):
            view = await ring.dequeue_async(timeout=GUARD)
            got.append(struct.unpack_from("=I", view)[0])
            pool.put(view)
        return got

    assert asyncio.run(consume()) == list(range(40))
    wait_child(pid)
    assert pool.free_count == 64 and len(ring) == 0 and ring._waiting() == 0


def test_every_method(objs):
    shm, pool, ring = objs
    small = pyshm.Ring(2, shm=shm)

    def consumer():
        for _ in range(5):
            view = small.dequeue(block=True, timeout=GUARD)
            view[0] = 7
            ring.enqueue(view, block=True, timeout=GUARD)

    pid = fork_child(consumer)

    async def main():
        first = await pool.get_async()
        more = await pool.get_many_async(4)
        assert len(first) == 16 and 1 <= len(more) <= 4
        await small.enqueue_async(first, timeout=GUARD)
        views = more
        while views:  # a full ring of 2 makes these wait for the consumer
            await small.enqueue_many_async(views[:2], timeout=GUARD)
            views = views[2:]
        left = 1 + len(more)
        back = [await ring.dequeue_async(8, timeout=GUARD)]
        while len(back) < left:
            back += await ring.dequeue_many_async(left - len(back), timeout=GUARD)
        assert len(back[0]) == 8
        assert all(v[0] == 7 for v in back)
        pool.put_many(back)

    asyncio.run(main())
    wait_child(pid)
    assert pool.free_count == 64


def test_timeouts_raise_like_blocking_calls(objs):
    shm, pool, ring = objs

    async def main():
        with pytest.raises(pyshm.EmptyError):
            await ring.dequeue_async(timeout=0.05)
        with pytest.raises(pyshm.EmptyError):
            await ring.dequeue_many_async(3, timeout=0)
        held = pool.get_many(64)
        with pytest.raises(pyshm.EmptyError):
            await pool.get_async(timeout=0.05)
        full = pyshm.Ring(1, shm=shm)
        await full.enqueue_async(held.pop())
        with pytest.raises(pyshm.FullError):
            await full.enqueue_async(held[0], timeout=0.05)
        with pytest.raises(pyshm.FullError):
            await full.enqueue_many_async(held[:1], timeout=0.01)
        held.append(full.dequeue())
        pool.put_many(held)
        with pytest.raises(ValueError):
            ring.dequeue_async(timeout=-1)
        with pytest.raises(TypeError):
            ring.dequeue_async(timeout="1")
        with pytest.raises(TypeError):
            ring.dequeue_async(block=True)
        assert ring._waiting() == 0 and pool._waiting() == 0

    asyncio.run(main())


def test_asyncio_timeout_and_wait_for(objs):
    shm, pool, ring = objs

    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await ring.dequeue_async()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ring.dequeue_async(), 0.05)
        assert ring._waiting() == 0
        view = pool.get()
        ring.enqueue(view)
        got = await asyncio.wait_for(ring.dequeue_async(), GUARD)
        pool.put(got)

    asyncio.run(main())


def test_cleanup_while_tasks_await(objs):
    shm, pool, ring = objs

    async def main():
        tasks = [asyncio.ensure_future(ring.dequeue_async()) for _ in range(3)]
        while ring._waiting() < 3:
            await asyncio.sleep(0.01)
        with pytest.raises(Exception, match="waiting"):
            shm.cleanup()  # a task awaits: the region stays
        ring.cleanup()
        for t in tasks:
            with pytest.raises(ValueError):
                await t

    asyncio.run(main())


def test_cancellation_storm(shm):
    """Thousands of tasks cancelled at random moments: each block is delivered once or
    is still in a ring."""
    total, nrings = 3000, 4
    region = pyshm.ShareMem(8 << 20)
    try:
        pool = pyshm.Mempool(total, 8, shm=region)
        rings = [pyshm.Ring(total, shm=region) for _ in range(nrings)]
        pid = fork_child(produce, pool, rings, total, 20)
        rng = random.Random(1234)
        received = []

        async def main():
            tasks = set()

            def harvest(done):
                for t in done:
                    if not t.cancelled() and t.exception() is None:
                        view = t.result()
                        received.append(struct.unpack_from("=I", view)[0])
                        pool.put(view)

            created = 0
            producer_done = False
            while not producer_done:
                while len(tasks) < 2000:
                    tasks.add(asyncio.ensure_future(rings[created % nrings].dequeue_async()))
                    created += 1
                await asyncio.sleep(rng.random() * 0.003)
                for t in rng.sample(sorted(tasks, key=id), rng.randrange(1, 200)):
                    t.cancel()
                await asyncio.sleep(0)
                done = {t for t in tasks if t.done()}
                harvest(done)
                tasks -= done
                producer_done = os.waitpid(pid, os.WNOHANG)[0] == pid
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            harvest(tasks)
            return created

        created = asyncio.run(main())
        assert created >= 2000
        queued = sum(len(r) for r in rings)
        assert len(received) == len(set(received))
        assert len(received) + queued == total
        assert pool.free_count + queued == total
        left = []
        for r in rings:
            for _ in range(len(r)):
                view = r.dequeue()
                left.append(struct.unpack_from("=I", view)[0])
                pool.put(view)
        assert sorted(received + left) == list(range(total))
        assert all(r._waiting() == 0 for r in rings)
        for r in rings:
            r.cleanup()
        pool.cleanup()
    finally:
        region.cleanup()


def test_thousand_tasks_on_hundred_rings():
    region = pyshm.ShareMem(8 << 20)
    try:
        pool = pyshm.Mempool(1000, 8, shm=region)
        rings = [pyshm.Ring(16, shm=region) for _ in range(100)]
        go = Signal()
        pid = fork_child(produce, pool, rings, 1000, 0, go)

        async def main():
            tasks = [asyncio.ensure_future(rings[i % 100].dequeue_async(timeout=GUARD)) for i in range(1000)]
            while sum(r._waiting() for r in rings) < 1000:
                await asyncio.sleep(0.01)
            go.send()
            views = await asyncio.gather(*tasks)
            ids = sorted(struct.unpack_from("=I", v)[0] for v in views)
            pool.put_many(views)
            return ids

        assert asyncio.run(main()) == list(range(1000))
        wait_child(pid)
        assert pool.free_count == 1000
        for r in rings:
            r.cleanup()
        pool.cleanup()
    finally:
        region.cleanup()


def test_dead_holder_is_repaired_through_the_watcher(objs):
    shm, pool, ring = objs
    ready = Signal()

    def holder():
        held = pool.get_many(64)
        assert len(held) == 64
        ready.send()
        signal.pause()

    pid = fork_child(holder)
    ready.recv()

    async def main():
        task = asyncio.ensure_future(pool.get_async(timeout=GUARD))
        while pool._waiting() < 1:
            await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        view = await task  # the watcher sees the dead member; the task repairs
        pool.put(view)

    try:
        asyncio.run(main())
    finally:
        code = os.waitpid(pid, 0)[1]
    assert os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL
    assert pool.free_count == 64


def test_no_cpu_while_idle(objs):
    shm, pool, ring = objs
    rings = [pyshm.Ring(4, shm=shm) for _ in range(10)]

    async def main():
        tasks = [asyncio.ensure_future(rings[i % 10].dequeue_async()) for i in range(100)]
        while sum(r._waiting() for r in rings) < 100:
            await asyncio.sleep(0.01)
        before = cpu_seconds()
        await asyncio.sleep(2)
        used = cpu_seconds() - before
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return used

    used = asyncio.run(main())
    print(f"CPU of the whole process while 100 tasks awaited 2 s: {used:.4f} s")
    assert used < 0.05
    for r in rings:
        r.cleanup()


def test_two_loops_in_two_threads(objs):
    shm, pool, ring = objs
    other = pyshm.Ring(64, shm=shm)
    go = Signal()
    pid = fork_child(produce, pool, [ring, other], 40, 3, go)
    results = {}

    def run(name, r):
        async def consume():
            got = []
            for _ in range(20):
                view = await r.dequeue_async(timeout=GUARD)
                got.append(struct.unpack_from("=I", view)[0])
                pool.put(view)
            return got

        results[name] = asyncio.run(consume())

    threads = [threading.Thread(target=run, args=(n, r)) for n, r in (("a", ring), ("b", other))]
    for t in threads:
        t.start()
    go.send()
    for t in threads:
        t.join(GUARD)
    wait_child(pid)
    assert results == {"a": list(range(0, 40, 2)), "b": list(range(1, 40, 2))}
    other.cleanup()


def test_uvloop(objs):
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    shm, pool, ring = objs
    go = Signal()
    pid = fork_child(produce, pool, [ring], 10, 2, go)

    async def consume():
        go.send()
        got = []
        for _ in range(10):
            view = await ring.dequeue_async(timeout=GUARD)
            got.append(struct.unpack_from("=I", view)[0])
            pool.put(view)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await ring.dequeue_async()
        return got

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(consume()) == list(range(10))
    finally:
        loop.close()
    wait_child(pid)


def test_fork_child_starts_its_own_watchers(objs):
    shm, pool, ring = objs

    async def warm():  # the parent has a watcher thread now
        with pytest.raises(pyshm.EmptyError):
            await ring.dequeue_async(timeout=0.02)

    asyncio.run(warm())
    waiting = Signal()

    def child():
        async def main():
            task = asyncio.ensure_future(ring.dequeue_async(timeout=GUARD))
            while ring._waiting() < 1:
                await asyncio.sleep(0.01)
            waiting.send()
            view = await task
            pool.put(view)

        asyncio.run(main())

    pid = fork_child(child)
    waiting.recv()
    ring.enqueue(pool.get())
    wait_child(pid)
    assert pool.free_count == 64


def _shut_down_after_go(ring, go, immediate):
    go.recv()
    ring.shutdown(immediate=immediate)


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_in_another_process_wakes_awaiters(objs, immediate):
    """Tasks awaiting an empty ring (and a full one) wake when another process shuts the
    ring down, and raise ShutDown; nothing is taken or lost."""
    shm, pool, ring = objs
    small = pyshm.Ring(1, shm=shm)
    small.enqueue(pool.get())  # full: an enqueue_async waits
    go = Signal()
    pid = fork_child(_shut_down_after_go, ring, go, immediate)
    pid2 = fork_child(_shut_down_after_go, small, go, immediate)

    async def main():
        consumers = [asyncio.create_task(ring.dequeue_async()) for _ in range(20)]
        view = pool.get()
        producer = asyncio.create_task(small.enqueue_async(view))
        while ring._waiting() < 20 or small._waiting() < 1:
            await asyncio.sleep(0.001)
        go.send()
        go.send()
        results = await asyncio.gather(*consumers, producer, return_exceptions=True)
        return view, results

    view, results = asyncio.run(asyncio.wait_for(main(), GUARD))
    wait_child(pid)
    wait_child(pid2)
    assert len(results) == 21
    assert all(isinstance(r, pyshm.ShutDown) for r in results), results
    pool.put(view)  # the enqueue failed: the view is still ours
    if not immediate:
        pool.put(small.dequeue())  # a graceful shutdown leaves the queued block to drain
    assert pool.free_count == pool.count
    assert ring._waiting() == 0 and small._waiting() == 0
