"""iceoryx2 (Python bindings): zero-copy publish-subscribe over shared memory.

The payload is a ``Slice[c_uint8]`` written and read through ``as_memory_view()``, the
same struct.pack_into / unpack_from as pyshm. The service does not drop data
(``enable_safe_overflow(False)``, publisher ``RetryUntilDelivered``), and the subscriber
polls ``receive()`` (iceoryx2's pub-sub has no blocking receive; W5 wakes it through an
event service, iceoryx2's way to block).

Quirk found while writing this (iceoryx2 0.10.0): now and then, once the subscriber's
buffer has filled, ``send()`` returns 0 recipients instead of waiting, and the sample is
lost. The producer checks the count and sends the message again, so nothing is lost.

Pub-sub delivers every sample to every subscriber, so 4 producers to 4 consumers that
share the work (W4) is not a pattern it offers. No batch calls: W2 goes one at a time.
"""
from __future__ import annotations

import ctypes
import itertools
import os

from ..common import (
    LARGE,
    SEQ,
    SPIN_BEFORE_YIELD,
    Params,
    Worker,
    bad_seq,
    now,
    percentiles,
    run_workers,
    throughput,
)
from . import System

_names = itertools.count()


def systems() -> list[System]:
    import iceoryx2 as iox
    from importlib.metadata import version

    iox.set_log_level(iox.LogLevel.Error)
    return [
        System(
            name="iceoryx2",
            workloads={"W1": w1, "W2": w1, "W3": w3, "W5": w5},
            notes={
                "W1": "loan_slice_uninit/pack_into/send | receive (polled)/unpack_from",
                "W2": "no batch call: one at a time, as W1",
                "W3": "copy into the loaned sample | copy out of the received one",
                "W5": "pub-sub both ways, blocking on an event Listener",
            },
            unsupported={"W4": "publish-subscribe hands every sample to every subscriber: no work sharing"},
            version=version("iceoryx2"),
        )
    ]


def _name(kind: str) -> str:
    return f"pyshm-bench/{os.getpid()}/{next(_names)}/{kind}"


def _node():
    import iceoryx2 as iox

    iox.set_log_level(iox.LogLevel.Error)
    return iox.NodeBuilder.new().create(iox.ServiceType.Ipc)


def _pubsub(node, name: str, buffer: int):
    import iceoryx2 as iox

    return (
        node.service_builder(iox.ServiceName.new(name))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .enable_safe_overflow(False)
        .subscriber_max_buffer_size(buffer)
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .open_or_create()
    )


def _publisher(service, slice_len: int):
    import iceoryx2 as iox

    return (
        service.publisher_builder()
        .initial_max_slice_len(slice_len)
        .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )


def _wait_connected(service, publisher) -> None:
    import time

    deadline = time.monotonic() + 30
    while service.dynamic_config.number_of_subscribers < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("iceoryx2: no subscriber connected")
        time.sleep(0.001)
    publisher.update_connections()


def _receive(sub):
    """Poll until a sample arrives (yielding the CPU now and then, as pyshm's spin)."""
    receive = sub.receive
    tries = 0
    while True:
        s = receive()
        if s is not None:
            return s
        tries += 1
        if tries >= SPIN_BEFORE_YIELD:
            tries = 0
            os.sched_yield()


def _throughput(p: Params, size: int, buffer: int) -> dict:
    name = _name("data")
    pack, unpack = SEQ.pack_into, SEQ.unpack_from
    large = size > 64

    def producer(start):
        start()
        node = _node()
        service = _pubsub(node, name, buffer)
        pub = _publisher(service, size)
        _wait_connected(service, pub)
        loan = pub.loan_slice_uninit
        src = bytes(range(256)) * (size // 256) if large else b""

        def send(lo, hi):
            for seq in range(lo, hi):
                while True:
                    s = loan(size)
                    mv = s.payload().as_memory_view()  # format "<B"
                    if large:
                        mv.cast("B")[:] = src
                    pack(mv, 0, seq)
                    del mv
                    if s.assume_init().send() == 1:
                        break
                    pub.update_connections()  # not delivered (see the module's note): again

        send(0, p.warm)
        t0 = now()
        send(p.warm, p.total)
        return {"t_start": t0}

    def consumer(start):
        node = _node()
        service = _pubsub(node, name, buffer)
        sub = service.subscriber_builder().buffer_size(buffer).create()
        dst = bytearray(size)
        out = memoryview(dst)
        start()
        for expected in range(p.total):
            s = _receive(sub)
            mv = s.payload().as_memory_view()
            if large:
                out[:] = mv.cast("B")
                seq = unpack(dst, 0)[0]
            else:
                seq = unpack(mv, 0)[0]
            del mv
            s.delete()
            if seq != expected:
                raise bad_seq(seq, expected)
        return {"t_end": now()}

    prod, cons = run_workers([Worker(producer), Worker(consumer, role="consumer")], p.timeout)
    return throughput([prod], [cons], p.n)


def w1(p: Params) -> dict:
    return _throughput(p, 64, 1024)


def w3(p: Params) -> dict:
    return _throughput(p, p.size or LARGE, 16)


def w5(p: Params) -> dict:
    from time import perf_counter_ns

    import iceoryx2 as iox

    names = {k: _name(k) for k in ("ping", "pong", "ping-event", "pong-event")}
    pack, unpack = SEQ.pack_into, SEQ.unpack_from

    def ports(node, send: str, recv: str):
        pub_service = _pubsub(node, names[send], 4)
        sub_service = _pubsub(node, names[recv], 4)
        send_ev = node.service_builder(iox.ServiceName.new(names[send + "-event"])).event().open_or_create()
        recv_ev = node.service_builder(iox.ServiceName.new(names[recv + "-event"])).event().open_or_create()
        sub = sub_service.subscriber_builder().buffer_size(4).create()
        listener = recv_ev.listener_builder().create()
        pub = _publisher(pub_service, 64)
        notifier = send_ev.notifier_builder().create()
        return (pub_service, sub_service, send_ev, recv_ev), pub, sub, notifier, listener

    def send(pub, notifier, seq):
        while True:
            s = pub.loan_slice_uninit(64)
            mv = s.payload().as_memory_view()
            pack(mv, 0, seq)
            del mv
            if s.assume_init().send() == 1:
                break
            pub.update_connections()
        notifier.notify()

    def recv(sub, listener):
        while True:
            s = sub.receive()
            if s is not None:
                mv = s.payload().as_memory_view()
                seq = unpack(mv, 0)[0]
                del mv
                s.delete()
                return seq
            listener.blocking_wait()

    def echoer(start):
        node = _node()
        keep, pub, sub, notifier, listener = ports(node, "pong", "ping")
        start()
        for i in range(p.total):
            seq = recv(sub, listener)
            if seq != 2 * i:
                raise bad_seq(seq, 2 * i)
            send(pub, notifier, 2 * i + 1)
        return {}

    def initiator(start):
        start()
        node = _node()
        keep, pub, sub, notifier, listener = ports(node, "ping", "pong")
        _wait_connected(keep[0], pub)
        samples = []
        for i in range(p.total):
            t = perf_counter_ns()
            send(pub, notifier, 2 * i)
            seq = recv(sub, listener)
            if seq != 2 * i + 1:
                raise bad_seq(seq, 2 * i + 1)
            samples.append(perf_counter_ns() - t)
        return percentiles(samples[p.warm :])

    # The echoer makes every service before the start barrier; the initiator opens them after.
    _, lat = run_workers([Worker(echoer, role="other"), Worker(initiator, role="other")], p.timeout)
    return lat
