"""What every system's workloads share: parameters, fresh processes, checks, timing.

A measurement runs in fresh processes forked for it (multiprocessing's fork context).
Every worker does its own setup (attaching, creating ports), waits at a start barrier
shared by all the measurement's processes, sends or receives ``warm`` untimed messages,
then the timed ones. A producer reports the monotonic time just before its first timed
message, a consumer the time just after checking its last one; CLOCK_MONOTONIC is one
clock for every process on the machine, so the measured span is
``max(consumer end) - min(producer start)``.

Every consumer checks every message it receives. A failed check raises
:class:`VerifyError` in the child; the parent turns it into a :class:`BenchFailure`
with ``verification=True`` and the run stops loudly.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import struct
import time
import traceback
from typing import Any, Callable

CTX = multiprocessing.get_context("fork")

#: W1/W2/W4/W5 message size, W3 message size.
SMALL = 64
LARGE = 1 << 20
#: W2 batch size.
BATCH = 32
#: W4 process counts.
W4_PRODUCERS = 4
W4_CONSUMERS = 4

#: A spinning side yields its CPU after this many failed attempts in a row, so that on an
#: oversubscribed machine it gives the other side a chance to run (it costs nothing while
#: both sides are on a CPU: the other side never keeps it waiting that long then).
SPIN_BEFORE_YIELD = 200

#: The object queue (pyshm.Queue and its peers): Q2's numpy array sizes and Q3's in-queue
#: array sizes, per workload.
Q2_SIZES = {"Q2a": 1 << 20, "Q2b": 64 << 20}
Q3_SIZES = {"Q3a": 4 << 10, "Q3b": 1 << 20, "Q3c": 64 << 20, "Q3d": 1 << 30}
#: Q1/Q4: the 20-character str every message carries (with a sequence number and a float).
Q_STR = "pyshm object queue !"
#: Q2: messages in flight (mp.Queue's maxsize, faster-fifo's buffer, zmq's high-water
#: marks, the one-copy floor's destination slots; pyshm.Queue: its capacity is 4x the
#: message, which its size classes make 2 blocks of twice the message); and the number of
#: source arrays a producer rotates through (more than in flight, so that one is never
#: rewritten before it was sent).
Q2_DEPTH = 4
Q2_SOURCES = Q2_DEPTH + 2
PAGE = 4096

SEQ = struct.Struct("<Q")  # W1-W3, W5: the sequence number in the first 8 bytes
PID_SEQ = struct.Struct("<QQ")  # W4: producer id, sequence number
MSG64 = struct.Struct("<Q56x")  # a 64-byte message carrying a sequence number
MSG64_PID = struct.Struct("<QQ48x")  # a 64-byte message carrying producer id and sequence


class VerifyError(AssertionError):
    """A consumer received something other than what was sent."""


class BenchFailure(RuntimeError):
    def __init__(self, message: str, verification: bool = False):
        super().__init__(message)
        self.verification = verification


@dataclasses.dataclass
class Params:
    workload: str
    n: int  # timed messages (per producer in W4), round trips in W5
    warm: int  # untimed messages (per producer) sent first
    size: int = SMALL
    batch: int = 1
    producers: int = 1
    consumers: int = 1
    timeout: float = 120.0  # seconds for the whole measurement

    @property
    def total(self) -> int:
        """Messages each producer sends."""
        return self.warm + self.n


def bad_seq(got: int, expected: int, where: str = "") -> VerifyError:
    return VerifyError(f"{where}sequence check failed: got {got}, expected {expected}")


class MultiCheck:
    """W4: a consumer sees each producer's messages in increasing order (the queue is
    FIFO); per producer it counts them and sums their numbers, and the parent checks
    that the consumers together saw every number exactly once."""

    __slots__ = ("last", "count", "sum", "sumsq")

    def __init__(self, producers: int):
        self.last = [-1] * producers
        self.count = [0] * producers
        self.sum = [0] * producers
        self.sumsq = [0] * producers

    def __call__(self, pid: int, seq: int) -> None:
        last = self.last
        if pid >= len(last) or seq <= last[pid]:
            raise VerifyError(f"W4/Q4 check failed: producer {pid} seq {seq} "
                              f"after {last[pid] if pid < len(last) else '?'}")
        last[pid] = seq
        self.count[pid] += 1
        self.sum[pid] += seq
        self.sumsq[pid] += seq * seq

    def report(self) -> dict:
        return {"count": self.count, "sum": self.sum, "sumsq": self.sumsq}


def q_obj(seq: int) -> tuple:
    """Q1: the object sent as message ``seq``."""
    return (seq, seq * 0.5, Q_STR)


def bad_obj(got: Any, expected: Any, where: str = "") -> VerifyError:
    return VerifyError(f"{where}object check failed: got {got!r:.200}, expected {expected!r:.200}")


def numpy_missing() -> str | None:
    """Why Q2/Q3 cannot run here (numpy not importable), or None."""
    try:
        import numpy  # noqa: F401
    except ImportError as exc:
        return f"numpy not installed ({exc})"
    return None


def drop_numpy_workloads(workloads: dict, unsupported: dict) -> None:
    """Without numpy, a system's Q2/Q3 are n/a (with the reason) instead of failing."""
    why = numpy_missing()
    if why:
        for w in [w for w in workloads if w.startswith(("Q2", "Q3"))]:
            del workloads[w]
            unsupported[w] = why


class PagePattern:
    """Q2's arrays (uint8, ``size`` bytes): bytes 0-7 carry the sequence number and byte 8
    of every 4 KiB page a value derived from it, which the consumer checks: one byte per
    page, so every page is touched and the check stays cheap next to the copy."""

    def __init__(self, size: int):
        import numpy as np

        if size % PAGE:
            raise ValueError("Q2 sizes are whole pages")
        self.np = np
        self.size = size
        self.base = ((np.arange(size // PAGE, dtype=np.int64) * 131 + 7) % 256).astype(np.uint8)

    def sources(self, count: int) -> list:
        """The producer's arrays, every page written once (resident, not the zero page)."""
        np = self.np
        fill = np.frombuffer(bytes(range(256)) * (self.size // 256), np.uint8)
        return [fill.copy() for _ in range(count)]

    def expected(self, seq: int):
        return self.base + self.np.uint8(seq & 0xFF)  # uint8: wraps

    def mark(self, arr, seq: int) -> None:
        arr[8::PAGE] = self.expected(seq)
        SEQ.pack_into(arr, 0, seq)

    def check(self, arr, seq: int, where: str = "") -> None:
        np = self.np
        if arr.dtype != np.uint8 or arr.shape != (self.size,):
            raise VerifyError(f"{where}array check failed: got {arr.dtype} {arr.shape}, "
                              f"expected uint8 ({self.size},)")
        got = SEQ.unpack_from(arr, 0)[0]
        if got != seq:
            raise bad_seq(got, seq, where)
        if not np.array_equal(arr[8::PAGE], self.expected(seq)):
            bad = int(np.flatnonzero(arr[8::PAGE] != self.expected(seq))[0])
            raise VerifyError(f"{where}page check failed for message {seq}: page {bad} holds "
                              f"{int(arr[bad * PAGE + 8])}, expected {int(self.expected(seq)[bad])}")


def check_multi(consumer_results: list[dict], producers: int, total: int) -> int:
    """Every producer's 0..total-1 seen exactly once across the consumers."""
    want_sum = total * (total - 1) // 2
    want_sq = (total - 1) * total * (2 * total - 1) // 6
    for pid in range(producers):
        count = sum(r["check"]["count"][pid] for r in consumer_results)
        s = sum(r["check"]["sum"][pid] for r in consumer_results)
        sq = sum(r["check"]["sumsq"][pid] for r in consumer_results)
        if (count, s, sq) != (total, want_sum, want_sq):
            raise VerifyError(
                f"W4/Q4 check failed for producer {pid}: {count} messages (want {total}), "
                f"sum {s} (want {want_sum}), sum of squares {sq} (want {want_sq})"
            )
    return producers * total


def now() -> float:
    return time.perf_counter()  # CLOCK_MONOTONIC on Linux: one clock for all processes


def percentiles(samples_ns: list[int]) -> dict:
    s = sorted(samples_ns)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(p * n))] / 1000.0

    return {
        "n": n,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "min_us": s[0] / 1000.0,
        "max_us": s[-1] / 1000.0,
        "mean_us": sum(s) / n / 1000.0,
    }


# --- running workers in fresh processes -------------------------------------------------


@dataclasses.dataclass
class Worker:
    """One process: ``fn(start, *args)`` where ``start()`` waits at the start barrier."""

    fn: Callable[..., Any]
    args: tuple = ()
    role: str = "producer"  # "producer", "consumer" or "other"


def _child(fn, args, start, conn) -> None:
    try:
        report = ("ok", fn(start, *args))
    except BaseException as exc:  # report everything, including VerifyError
        report = ("verify" if isinstance(exc, VerifyError) else "error", traceback.format_exc())
    # Out of the except block the traceback is gone, and with it the worker's frames, so
    # their objects are finalized (iceoryx2 ports remove their shared-memory files).
    conn.send(report)
    conn.close()
    if report[0] != "ok":
        os._exit(1)


def run_workers(
    workers: list[Worker],
    timeout: float,
    on_producers_done: Callable[[], None] | None = None,
) -> list[Any]:
    """Fork one process per worker, wait for all, return their results in order.

    ``on_producers_done`` is called in this process once every producer has finished
    (W4 uses it to shut the queue down or to send end markers). Raises BenchFailure if a
    worker raised, died, or the whole thing took longer than ``timeout``.
    """
    barrier = CTX.Barrier(len(workers))

    def start() -> None:
        barrier.wait(timeout)

    procs, readers = [], []
    try:
        for w in workers:
            r, wr = CTX.Pipe(duplex=False)
            p = CTX.Process(target=_child, args=(w.fn, w.args, start, wr), daemon=True)
            p.start()
            wr.close()
            procs.append(p)
            readers.append(r)
        results: list[Any] = [None] * len(workers)
        got = [False] * len(workers)
        failures: list[str] = []
        verification = False
        producers_left = {i for i, w in enumerate(workers) if w.role == "producer"}
        called = on_producers_done is None
        deadline = time.monotonic() + timeout
        pending = set(range(len(workers)))
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchFailure(f"timed out after {timeout:.0f} s; workers still running: "
                                   + ", ".join(f"{workers[i].role}#{i}" for i in sorted(pending)))
            waitables = [readers[i] for i in pending if not got[i]] + [procs[i].sentinel for i in pending]
            multiprocessing.connection.wait(waitables, min(left, 0.5))
            for i in list(pending):
                if not got[i] and readers[i].poll():
                    try:
                        status, payload = readers[i].recv()
                    except EOFError:
                        status, payload = "error", "worker closed its result pipe without a result"
                    got[i] = True
                    if status == "ok":
                        results[i] = payload
                    else:
                        verification |= status == "verify"
                        failures.append(f"{workers[i].role}#{i}:\n{payload}")
                if not procs[i].is_alive():
                    procs[i].join()
                    if not got[i] and readers[i].poll():
                        continue  # read its result on the next round
                    pending.discard(i)
                    if not got[i]:
                        failures.append(f"{workers[i].role}#{i} died (exit code {procs[i].exitcode}) without a result")
                    elif procs[i].exitcode != 0 and results[i] is not None:
                        failures.append(f"{workers[i].role}#{i} exited with code {procs[i].exitcode}")
                    producers_left.discard(i)
            if failures:
                raise BenchFailure("\n".join(failures), verification)
            if not called and not producers_left:
                called = True
                if on_producers_done is not None:
                    on_producers_done()
        return results
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        for r in readers:
            r.close()


def throughput(producer_results: list[dict], consumer_results: list[dict], messages: int) -> dict:
    t0 = min(r["t_start"] for r in producer_results)
    t1 = max(r["t_end"] for r in consumer_results)
    return {"messages": messages, "seconds": t1 - t0}


def spin(call, exc, *args):
    """Call ``call(*args)`` until it stops raising ``exc``, yielding now and then."""
    tries = 0
    while True:
        try:
            return call(*args)
        except exc:
            tries += 1
            if tries >= SPIN_BEFORE_YIELD:
                tries = 0
                os.sched_yield()


# --- the shapes every workload shares ---------------------------------------------------


def timed(start: Callable[[], None], p: Params, send: Callable[[int, int], None]) -> dict:
    """A producer's run: wait at the start barrier, send messages ``0..warm`` untimed, then
    ``warm..total`` timed; report the time just before the first timed one."""
    start()
    send(0, p.warm)
    t0 = now()
    send(p.warm, p.total)
    return {"t_start": t0}


def run_pair(p: Params, producer: Callable[..., Any], consumer: Callable[..., Any],
             close: Callable[[], None]) -> dict:
    """One producer, one consumer: their throughput over ``p.n`` messages; ``close()``
    afterwards, whatever happened."""
    try:
        prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
        return throughput([prod], [cons], p.n)
    finally:
        close()


def run_multi(p: Params, producer: Callable[..., Any], consumer: Callable[..., Any],
              end: Callable[[], None], close: Callable[[], None]) -> dict:
    """W4/Q4: ``p.producers`` producers (``producer(start, pid)``) and ``p.consumers``
    consumers; ``end()`` once the producers are done; every producer's messages checked
    across the consumers; ``close()`` afterwards, whatever happened."""
    workers = [Worker(producer, (i,)) for i in range(p.producers)]
    workers += [Worker(consumer, role="consumer") for _ in range(p.consumers)]
    try:
        results = run_workers(workers, p.timeout, on_producers_done=end)
        prods, conss = results[: p.producers], results[p.producers :]
        check_multi(conss, p.producers, p.total)
        return throughput(prods, conss, p.producers * p.n)
    finally:
        close()
