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
            raise VerifyError(f"W4 check failed: producer {pid} seq {seq} after {last[pid] if pid < len(last) else '?'}")
        last[pid] = seq
        self.count[pid] += 1
        self.sum[pid] += seq
        self.sumsq[pid] += seq * seq

    def report(self) -> dict:
        return {"count": self.count, "sum": self.sum, "sumsq": self.sumsq}


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
                f"W4 check failed for producer {pid}: {count} messages (want {total}), "
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
