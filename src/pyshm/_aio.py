"""The asyncio counterparts of the calls that can wait: Mempool.get_async, Ring.dequeue_async...

Each ``*_async`` method of the C types calls one of the functions at the end of this
file, which returns a coroutine. The coroutine runs in the event loop's thread and
follows the waitpoint protocol of src/core/wait.h, one attempt at a time:

    e = handle._prepare(side)        mark a sleeper on the waitpoint, read its epoch
    try the non-blocking call        done if it succeeds
    await the epoch moving past e    a future that a watcher thread resolves

The take or hand-over is always one synchronous non-blocking call: a task cancelled
while it awaits has taken nothing, and a task whose call succeeded returns at once.

Watcher threads sleep in futex_waitv (_Watch, src/ext/aio.c) on the epoch words that
tasks await, up to _PER_THREAD distinct words each, plus a private word of their own that
a loop thread bumps when it adds a word to the set. Tasks awaiting the same waitpoint at
the same epoch share one entry. When a word moves, the watcher resolves the futures of its
entry through loop.call_soon_threadsafe. While it has entries, a watcher also looks every
_REPAIR_PERIOD for members of their regions that are gone, and then wakes that region's
tasks so that they run the repair (in their loop thread, with the GIL) before trying
again, as blocking callers do (src/ext/waiting.c).

A task that awaits is counted on its handle (_async_wait): ShareMem.cleanup() refuses
meanwhile, so the regions of the words being watched stay mapped, and the handle's
cleanup() bumps the epochs, which wakes the task into a ValueError.
"""
from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from typing import Any, Callable, Coroutine, Dict, List, Optional, Tuple, Type

from ._pyshm import EmptyError, FullError, _Watch

_PER_THREAD = 127  # futex_waitv takes 128 words: these and the thread's own
_REPAIR_PERIOD = 0.1  # seconds, as for blocking callers
_SPIN_NS = 20_000  # how long an await tries again before it sleeps
_NOT_EMPTY, _NOT_FULL = 0, 1
_REPAIR = "repair"


class _Entry:
    __slots__ = ("key", "handle", "side", "waiters", "watcher")

    def __init__(self, key: Tuple[int, int], handle: Any, side: int, watcher: "_Watcher") -> None:
        self.key = key
        self.handle = handle
        self.side = side
        self.waiters: Dict[asyncio.Future[Any], asyncio.AbstractEventLoop] = {}
        self.watcher = watcher


_Fired = Tuple[_Entry, Dict[Any, asyncio.AbstractEventLoop], Optional[str]]


def _resolve(fut: "asyncio.Future[Any]", why: Optional[str]) -> None:
    if not fut.done():
        fut.set_result(why)


def _fire(entries: List[_Fired]) -> None:
    for _entry, waiters, why in entries:
        for fut, loop in waiters.items():
            try:
                loop.call_soon_threadsafe(_resolve, fut, why)
            except RuntimeError:  # that loop is closed: nobody awaits any more
                pass


class _Watcher:
    def __init__(self, hub: "_Hub") -> None:
        self.hub = hub
        self.watch = _Watch()
        self.entries: Dict[Tuple[int, int], _Entry] = {}
        self.thread = threading.Thread(target=self._run, name="pyshm-asyncio-watcher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        hub = self.hub
        next_check = time.monotonic() + _REPAIR_PERIOD
        while True:
            seq = self.watch.seq()
            with hub.lock:
                if hub.dead:
                    return
                items = list(self.entries.values())
            timeout = None
            if items:
                timeout = max(0.0, next_check - time.monotonic())
            rc = self.watch.wait([e.key[0] for e in items], [e.key[1] for e in items], seq, timeout)
            if rc == -errno.ENOSYS:  # no futex_waitv (Linux before 5.16): look now and then
                time.sleep(0.005)
            fired: List[_Fired] = []
            with hub.lock:
                for e in items:
                    if self.entries.get(e.key) is not e:
                        continue
                    now = e.handle._epoch(e.side)
                    if now is None or now != e.key[1]:
                        fired.append((e, hub.drop(e), None))
            if not items:
                next_check = time.monotonic() + _REPAIR_PERIOD
            elif time.monotonic() >= next_check:
                next_check = time.monotonic() + _REPAIR_PERIOD
                fired.extend(self._regions_to_repair(items))
            _fire(fired)

    def _regions_to_repair(self, items: List[_Entry]) -> List[_Fired]:
        """Wake the tasks of the regions where a member is gone: they repair, then retry."""
        needed: Dict[int, bool] = {}
        out: List[_Fired] = []
        for e in items:
            shm = e.handle.shm
            if shm is None:
                continue
            if id(shm) not in needed:
                needed[id(shm)] = bool(e.handle._repair_needed())
            if needed[id(shm)]:
                with self.hub.lock:
                    if self.entries.get(e.key) is e:
                        out.append((e, self.hub.drop(e), _REPAIR))
        return out


class _Hub:
    """The watcher threads of this process (a fork child starts a new hub)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: Dict[Tuple[int, int], _Entry] = {}
        self.watchers: List[_Watcher] = []
        self.dead = False

    def register(self, handle: Any, side: int, addr: int, epoch: int,
                 loop: asyncio.AbstractEventLoop) -> Tuple["asyncio.Future[Any]", _Entry]:
        fut = loop.create_future()
        key = (addr, epoch)
        kick = None
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                watcher = next((w for w in self.watchers if len(w.entries) < _PER_THREAD), None)
                if watcher is None:
                    watcher = _Watcher(self)
                    self.watchers.append(watcher)
                entry = _Entry(key, handle, side, watcher)
                self.entries[key] = entry
                watcher.entries[key] = entry
                kick = watcher
            entry.waiters[fut] = loop
        if kick is not None:
            kick.watch.kick()
        return fut, entry

    def unregister(self, entry: _Entry, fut: "asyncio.Future[Any]") -> None:
        with self.lock:
            entry.waiters.pop(fut, None)
            if not entry.waiters and self.entries.get(entry.key) is entry:
                self.drop(entry)

    def drop(self, entry: _Entry) -> Dict[Any, asyncio.AbstractEventLoop]:
        """Remove an entry (lock held); its waiters, to resolve."""
        del self.entries[entry.key]
        del entry.watcher.entries[entry.key]
        waiters, entry.waiters = entry.waiters, {}
        return waiters


_hub: Optional[_Hub] = None
_hub_lock = threading.Lock()


def _get_hub() -> _Hub:
    global _hub
    hub = _hub
    if hub is None:
        with _hub_lock:
            if _hub is None:
                _hub = _Hub()
            hub = _hub
    return hub


def _after_fork_in_child() -> None:
    """The child has none of the watcher threads: start afresh when a task first waits."""
    global _hub, _hub_lock
    if _hub is not None:
        _hub.dead = True
    _hub = None
    _hub_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        if not hasattr(timeout, "__index__") and not hasattr(timeout, "__float__"):
            raise TypeError(f"'timeout' must be a number of seconds or None, not {type(timeout).__name__}")
    seconds = float(timeout)
    if not seconds >= 0:
        raise ValueError("'timeout' must be a non-negative number")
    return seconds


async def _wait(handle: Any, side: int, attempt: Callable[[], Any], timeout: Optional[float],
                again: Type[Exception]) -> Any:
    # First, a plain try: marking a sleeper is needed only before sleeping (it costs the
    # peer a wake-up), and data that is there is taken without any hand-off.
    try:
        return attempt()
    except again:
        if timeout == 0:
            raise
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    # Then a short spin, as the blocking calls do, that lets the loop's other ready tasks
    # and a peer on this CPU run between tries: data about to come is caught without the
    # watcher thread's two hand-offs (futex -> watcher -> loop). A task cancelled here
    # has taken nothing.
    stop = time.perf_counter_ns() + _SPIN_NS
    while time.perf_counter_ns() < stop and (deadline is None or loop.time() < deadline):
        await asyncio.sleep(0)
        os.sched_yield()
        try:
            return attempt()
        except again:
            pass
    hub = _get_hub()
    counted = False
    repair = False
    try:
        while True:
            if repair:
                handle._repair_now()
            addr, epoch = handle._prepare(side)
            try:
                return attempt()
            except again:
                if deadline is not None and loop.time() >= deadline:
                    raise
            if not counted:
                handle._async_wait(1)
                counted = True
            fut, entry = hub.register(handle, side, addr, epoch, loop)
            timer = None if deadline is None else loop.call_at(deadline, _resolve, fut, None)
            try:
                repair = await fut == _REPAIR
            finally:
                if timer is not None:
                    timer.cancel()
                hub.unregister(entry, fut)
    finally:
        if counted:
            handle._async_wait(-1)


def mempool_get(pool: Any, *, timeout: Optional[float] = None) -> Coroutine[Any, Any, Any]:
    return _wait(pool, _NOT_EMPTY, pool.get, _check_timeout(timeout), EmptyError)


def mempool_get_many(pool: Any, n: int, *, timeout: Optional[float] = None) -> Coroutine[Any, Any, Any]:
    return _wait(pool, _NOT_EMPTY, lambda: pool.get_many(n), _check_timeout(timeout), EmptyError)


def ring_enqueue(ring: Any, buf: Any, *, timeout: Optional[float] = None) -> Coroutine[Any, Any, Any]:
    return _wait(ring, _NOT_FULL, lambda: ring.enqueue(buf), _check_timeout(timeout), FullError)


def ring_enqueue_many(ring: Any, views: Any, *, timeout: Optional[float] = None) -> Coroutine[Any, Any, Any]:
    return _wait(ring, _NOT_FULL, lambda: ring.enqueue_many(views), _check_timeout(timeout), FullError)


def ring_dequeue(ring: Any, size: Optional[int] = None, *,
                 timeout: Optional[float] = None) -> Coroutine[Any, Any, Any]:
    return _wait(ring, _NOT_EMPTY, lambda: ring.dequeue(size), _check_timeout(timeout), EmptyError)


def ring_dequeue_many(ring: Any, n: int, *, timeout: Optional[float] = None) -> Coroutine[Any, Any, Any]:
    return _wait(ring, _NOT_EMPTY, lambda: ring.dequeue_many(n), _check_timeout(timeout), EmptyError)
