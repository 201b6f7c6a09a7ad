"""Child targets for tests/test_queue.py: importable by spawn and forkserver children
(standard library, numpy and pyshm only; never pytest or a test module).

Each target raises on a failed check (the child then exits with status 1) or returns
(status 0); the parent asserts the exit code."""
import os
import pickle
import struct
import sys

import numpy as np

import pyshm

SEQ = struct.Struct("<Q")


def message(seq):
    """The message number seq of the mixed-size stream: small tuples, byte strings and
    arrays of a few bytes to a few MiB, each derived from seq so that the receiver checks it."""
    kind = seq % 4
    if kind == 0:
        return (seq, seq * 0.5, f"message {seq:>12}")
    if kind == 1:
        return bytes([seq % 251]) * (seq * 37 % 5000) + SEQ.pack(seq)
    if kind == 2:
        return np.full(1 + seq * 131 % 70000, seq, dtype=np.int64)
    return {"seq": seq, "array": np.arange(seq % 300000, dtype=np.float32) + seq}


def check(seq, got):
    """Assert got is message(seq)."""
    want = message(seq)
    if isinstance(want, dict):
        assert got["seq"] == seq and np.array_equal(got["array"], want["array"]), f"message {seq} damaged"
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and np.array_equal(got, want), f"message {seq} damaged"
    else:
        assert got == want, f"message {seq} damaged: {got!r:.80}"


def seq_of(got):
    if isinstance(got, tuple):
        return got[0]
    if isinstance(got, bytes):
        return SEQ.unpack_from(got, len(got) - SEQ.size)[0]
    if isinstance(got, np.ndarray):
        return int(got[0])
    return got["seq"]


def get_and_check(q, first, n):
    for seq in range(first, first + n):
        check(seq, q.get(timeout=60))


def put_range(q, first, n):
    for seq in range(first, first + n):
        q.put(message(seq))


def produce_forever(q):
    seq = 0
    while True:
        q.put(message(seq))
        seq += 1


def consume_forever(q, report_fd):
    """Get and check messages in order, writing each sequence number to report_fd once
    it has been checked."""
    seq = 0
    while True:
        check(seq, q.get())
        os.write(report_fd, SEQ.pack(seq))
        seq += 1


def get_array_and_drop(q, value, size):
    """Get one array, check it, drop it, and check that its block went back (in this
    process, the one that got it)."""
    arr = q.get(timeout=60)
    assert arr.shape == (size,) and int(arr[0]) == value and int(arr[-1]) == value
    arr[0] = 0  # writable, like an array this process made
    in_use = sum(p.used_count for p in q._pools)
    assert in_use == 1, in_use
    del arr
    in_use = sum(p.used_count for p in q._pools)
    assert in_use == 0, in_use


_init_queue = None


def init_worker(q):
    global _init_queue
    _init_queue = q


def worker_echo(x):
    """Pool task: put x twice as large into the queue the initializer gave."""
    _init_queue.put(x * 2)
    return x


def nested_receiver(outer):
    """Get a Queue through another queue, then use it."""
    inner = outer.get(timeout=60)
    inner.put(("from child", os.getpid()))


def joinable_worker(q, n):
    for _ in range(n):
        item = q.get(timeout=60)
        assert item[0] == "job"
        q.task_done()


def async_echo(q, back, n):
    """An asyncio consumer: await each (i, array), check it, answer i."""
    import asyncio

    async def main():
        for expected in range(n):
            i, a = await q.get_async(timeout=60)
            assert i == expected and (a == i).all()
            await back.put_async(i)

    asyncio.run(main())


def attach_and_talk(name):
    """In an unrelated process: attach by name, get one object, answer it through the
    queue named name + "-answers"."""
    q = pyshm.Queue.attach(name)
    answers = pyshm.Queue.attach(name + "-answers")
    got = q.get(timeout=60)
    answers.put(("answer", got))


if __name__ == "__main__":  # python queue_helpers.py attach NAME
    if sys.argv[1] == "attach":
        attach_and_talk(sys.argv[2])
        sys.exit(0)
    sys.exit(2)
