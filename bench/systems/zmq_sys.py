"""pyzmq: a PUSH socket to a PULL socket over ``ipc://`` (a Unix socket), one context per
process. The object-queue workloads only:

- Q1: ``send_pyobj`` / ``recv_pyobj`` (pickle);
- Q2: zero-copy sends: a small header frame (the sequence number) then
  ``send(arr, copy=False, track=True)`` of the array's buffer; the receiver takes the
  frames with ``recv_multipart(copy=False)`` and ``numpy.frombuffer`` of the body. The
  kernel copies the bytes through the socket; a producer waits on a source array's
  tracker before it rewrites it. High-water marks of ``Q2_DEPTH`` messages.

The consumer binds before the start barrier, the producer connects after it (so the
connection is made at once, during the untimed warm-up, not after a reconnect interval).
The producer keeps its socket open until the consumer has received the last message (an
Event): when the PUSH side closes first, libzmq 4.3.5 drops what the PULL side has not
read yet, infinite linger or not (seen here under load over ipc://; libzmq issue #4660,
pyzmq issue #1934). Neither the wait nor the closing is timed.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from ..common import (
    CTX,
    Q2_DEPTH,
    Q2_SOURCES,
    Q_STR,
    SEQ,
    PagePattern,
    Params,
    bad_obj,
    bad_seq,
    drop_numpy_workloads,
    now,
    q_obj,
    run_pair,
    timed,
)
from . import System
from ._queues import send_objs


def systems() -> list[System]:
    import zmq

    workloads = {"Q1": q1, "Q2a": q2, "Q2b": q2}
    unsupported: dict[str, str] = {}
    drop_numpy_workloads(workloads, unsupported)
    q2_how = ("PUSH/PULL ipc://: header frame + send(arr, copy=False, track=True) | "
              "recv_multipart(copy=False), numpy.frombuffer")
    return [
        System(
            name="pyzmq",
            workloads=workloads,
            notes={"Q1": "PUSH/PULL ipc://: send_pyobj | recv_pyobj", "Q2a": q2_how, "Q2b": q2_how},
            unsupported=unsupported,
            version=f"{zmq.__version__} (libzmq {zmq.zmq_version()})",
        )
    ]


def _endpoint() -> tuple[str, str]:
    d = tempfile.mkdtemp(prefix="pyshm-bench-zmq-")
    return d, f"ipc://{os.path.join(d, 'q')}"


def _socket(kind: str, addr: str, hwm: int | None = None):
    """A context and a socket; a PULL socket is bound, a PUSH one not yet connected."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(getattr(zmq, kind))
    if hwm is not None:
        sock.setsockopt(zmq.SNDHWM if kind == "PUSH" else zmq.RCVHWM, hwm)
    if kind == "PULL":
        sock.bind(addr)
    return ctx, sock


def _done(ctx, sock, linger: int) -> None:
    sock.close(linger=linger)
    ctx.term()


def _producer_done(ctx, sock, received, timeout: float) -> None:
    """Close the PUSH socket once the consumer has everything (see the module's docstring)."""
    if not received.wait(timeout):
        raise RuntimeError("the consumer did not receive every message")
    _done(ctx, sock, -1)


def _connecting(start, sock, addr):
    """The producer's ``start``: the barrier, then connect (the consumer has bound by now)."""

    def go() -> None:
        start()
        sock.connect(addr)

    return go


def q1(p: Params) -> dict:
    d, addr = _endpoint()
    received = CTX.Event()

    def producer(start):
        ctx, sock = _socket("PUSH", addr)
        r = timed(_connecting(start, sock, addr), p, send_objs(sock.send_pyobj))
        _producer_done(ctx, sock, received, p.timeout)
        return r

    def consumer(start):
        ctx, sock = _socket("PULL", addr)
        recv = sock.recv_pyobj
        start()
        for expected in range(p.total):
            m = recv()
            if m != (expected, expected * 0.5, Q_STR):
                raise bad_obj(m, q_obj(expected))
        t_end = now()
        received.set()
        _done(ctx, sock, 0)
        return {"t_end": t_end}

    return run_pair(p, producer, consumer, lambda: shutil.rmtree(d, ignore_errors=True))


def q2(p: Params) -> dict:
    size = p.size
    pattern = PagePattern(size)
    d, addr = _endpoint()
    received = CTX.Event()

    def producer(start):
        import zmq

        ctx, sock = _socket("PUSH", addr, Q2_DEPTH)
        send, pack, mark, more = sock.send, SEQ.pack, pattern.mark, zmq.SNDMORE
        srcs = pattern.sources(Q2_SOURCES)
        trackers: list = [None] * Q2_SOURCES

        def go(lo, hi):
            for seq in range(lo, hi):
                k = seq % Q2_SOURCES
                t = trackers[k]
                if t is not None:
                    t.wait()  # zmq is done with this array
                a = srcs[k]
                mark(a, seq)
                send(pack(seq), more)
                trackers[k] = send(a, copy=False, track=True)

        r = timed(_connecting(start, sock, addr), p, go)
        _producer_done(ctx, sock, received, p.timeout)
        return r

    def consumer(start):
        import numpy as np

        ctx, sock = _socket("PULL", addr, Q2_DEPTH)
        recv, unpack, frombuffer, u8, check = sock.recv_multipart, SEQ.unpack, np.frombuffer, np.uint8, pattern.check
        start()
        for expected in range(p.total):
            frames = recv(copy=False)
            if len(frames) != 2:
                raise bad_obj(f"{len(frames)} frames", "2 frames")
            (seq,) = unpack(frames[0].bytes)
            if seq != expected:
                raise bad_seq(seq, expected, "header: ")
            a = frombuffer(frames[1].buffer, u8)
            check(a, expected)
            del a, frames
        t_end = now()
        received.set()
        _done(ctx, sock, 0)
        return {"t_end": t_end}

    return run_pair(p, producer, consumer, lambda: shutil.rmtree(d, ignore_errors=True))
