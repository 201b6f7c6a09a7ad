"""Kill one process at a chosen point inside a pyshm call while others keep working.

Run by tests/test_kill.py with a build of pyshm made with PYSHM_FAULT_INJECTION=1 first
on PYTHONPATH (src/core/fault.h lists the points)::

    python tests/faults/kill_driver.py POINT WORKLOAD ROUNDS SEED

Each round makes a fresh region with one pool and one ring, then forks two producers
and two consumers (the survivors) and one victim. The victim sets PYSHM_FAULT=POINT:N
(N random) and runs WORKLOAD ("single": get, enqueue, dequeue, put; "bulk": the same
through get_many, enqueue_many, dequeue_many, put_many; "queue": a pyshm.Queue's put
and get of objects whose messages fall in three size classes, one with an out-of-band
array received as a view of its block) until it passes the point for the N-th time and
SIGKILLs itself. The survivors use blocking calls with short
timeouts and stop at a deadline. Every message carries (sender, sequence, crc32).

The parent then checks each child's exit status (survivors 0, the victim SIGKILL or 0
if it never reached the point), that no survivor outlived the deadline by more than
HANG_GUARD seconds, that no message was delivered twice or corrupted, and counts the
blocks: it calls reclaim(), drains the ring into the pool, and reports every block
that is neither free nor held by anyone as stranded. It prints one JSON object.
"""
import json
import os
import random
import signal
import struct
import sys
import tempfile
import time
import zlib

import numpy as np

from pyshm import CorruptionError, EmptyError, FullError, Mempool, PyshmError, Queue, Ring, ShareMem

COUNT = 32
ELT = 64
RING_SLOTS = 16
BATCH = 4
RUN_SECONDS = 1.5
FLOW_WINDOW = 1.0  # a kill this long before the deadline must be followed by deliveries
REPAIR_PERIOD = 0.15  # a waiter looks for dead processes every 0.1 s (src/ext/waiting.c)
WAIT = 0.02
HANG_GUARD = 10.0
MSG = struct.Struct("<III")  # sender, sequence, crc32 of the two
VICTIM = 9
EXIT_BAD_DATA = 4


def stamp(view, sender, seq):
    head = struct.pack("<II", sender, seq)
    MSG.pack_into(view, 0, sender, seq, zlib.crc32(head))


def read_stamp(view):
    sender, seq, crc = MSG.unpack_from(view)
    if zlib.crc32(struct.pack("<II", sender, seq)) != crc:
        return None
    return sender, seq


class Log:
    """Delivered stamps, appended to a file as they arrive (so a killed victim's survive)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def add(self, item):
        os.write(self.fd, b"%d %d %.6f\n" % (item[0], item[1], time.monotonic()))


def longest_pause(times, start):
    """The longest time without a delivery, from `start` to the last delivery."""
    longest, prev = 0.0, start
    for t in times:
        longest, prev = max(longest, t - prev), t
    return longest


def read_times(path):
    with open(path) as f:
        return [float(line.split()[2]) for line in f]


def put_all(pool, views, held):
    """Give views back; the ones the pool refuses (PyshmError) stay in `held`."""
    for v in views:
        try:
            pool.put(v)
        except PyshmError:
            held.append(v)


def producer(pool, ring, sender, deadline):
    seq = 0
    held = []
    while time.monotonic() < deadline:
        if held:
            put_all(pool, [held.pop()], held)
            continue
        try:
            v = pool.get(block=True, timeout=WAIT)
        except EmptyError:
            continue
        stamp(v, sender, seq)
        while True:
            try:
                ring.enqueue(v, block=True, timeout=WAIT)
                seq += 1
                break
            except FullError:
                if time.monotonic() >= deadline:
                    put_all(pool, [v], held)
                    break
    return 0


def consumer(pool, ring, log, deadline):
    held = []
    while time.monotonic() < deadline:
        if held:
            put_all(pool, [held.pop()], held)
        try:
            v = ring.dequeue(block=True, timeout=WAIT)
        except EmptyError:
            continue
        except CorruptionError:
            return EXIT_BAD_DATA
        item = read_stamp(v)
        if item is None:
            return EXIT_BAD_DATA
        log.add(item)
        put_all(pool, [v], held)
    return 0


def victim(pool, ring, log, point, nth, workload, deadline):
    os.environ["PYSHM_FAULT"] = f"{point}:{nth}"
    seq = 0
    held = []
    while time.monotonic() < deadline:
        try:
            if workload == "single":
                views = [pool.get(block=True, timeout=WAIT)]
            else:
                views = list(pool.get_many(BATCH, block=True, timeout=WAIT))
        except EmptyError:
            continue
        for v in views:
            stamp(v, VICTIM, seq)
            seq += 1
        try:
            if workload == "single":
                ring.enqueue(views[0], block=True, timeout=WAIT)
            else:
                ring.enqueue_many(views, block=True, timeout=WAIT)
        except FullError:
            put_all(pool, views, held)
        try:
            if workload == "single":
                got = [ring.dequeue(block=True, timeout=WAIT)]
            else:
                got = list(ring.dequeue_many(BATCH, block=True, timeout=WAIT))
        except EmptyError:
            continue
        except CorruptionError:
            return EXIT_BAD_DATA
        for v in got:
            item = read_stamp(v)
            if item is None:
                return EXIT_BAD_DATA
            log.add(item)
        if workload == "single":
            put_all(pool, got, held)
        else:
            try:
                pool.put_many(got)
            except PyshmError:
                held.extend(got)
    return 0


# --- the "queue" workload: pyshm.Queue, objects of three kinds ---------------------------


def q_message(sender, seq):
    head = struct.pack("<II", sender, seq)
    kind = seq % 3
    payload = None if kind == 0 else bytes([seq % 251]) * 3000 if kind == 1 else np.full(600, seq, np.int32)
    return (sender, seq, zlib.crc32(head), payload)


def q_check(msg):
    """(sender, seq) of an intact message, else None."""
    try:
        sender, seq, crc, payload = msg
        want = q_message(sender, seq)[3]
    except Exception:
        return None
    if zlib.crc32(struct.pack("<II", sender, seq)) != crc:
        return None
    if isinstance(want, np.ndarray):
        ok = isinstance(payload, np.ndarray) and np.array_equal(payload, want)
    else:
        ok = payload == want
    return (sender, seq) if ok else None


def q_put_one(q, sender, seq):
    """Put message seq; the next sequence number (seq again if the queue stayed full)."""
    try:
        q.put(q_message(sender, seq), timeout=WAIT)
        return seq + 1
    except FullError:
        return seq


def q_get_one(q, log):
    """Get, check and log one message: 0, or EXIT_BAD_DATA."""
    try:
        msg = q.get(timeout=WAIT)
    except EmptyError:
        return 0
    except CorruptionError:
        return EXIT_BAD_DATA
    item = q_check(msg)
    del msg  # an array's block goes back here
    if item is None:
        return EXIT_BAD_DATA
    log.add(item)
    return 0


def q_producer(q, sender, deadline):
    seq = 0
    while time.monotonic() < deadline:
        seq = q_put_one(q, sender, seq)
    return 0


def q_consumer(q, log, deadline):
    while time.monotonic() < deadline:
        if q_get_one(q, log):
            return EXIT_BAD_DATA
    return 0


def q_victim(q, log, point, nth, deadline):
    os.environ["PYSHM_FAULT"] = f"{point}:{nth}"
    seq = 0
    while time.monotonic() < deadline:
        seq = q_put_one(q, VICTIM, seq)
        if q_get_one(q, log):
            return EXIT_BAD_DATA
    return 0


def run_child(fn, *args):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn(*args)
        except BaseException as exc:  # report and fail, never return into the parent
            try:
                sys.stderr.write(f"child {os.getpid()}: {exc!r}\n")
            except BaseException:
                pass
        finally:
            os._exit(code)
    return pid


def reap(pids, limit):
    """{pid: status} (exit code, or -signal), {pid: when reaped}; pids still running at
    `limit` are hung (and killed)."""
    statuses, when, hung = {}, {}, []
    waiting = list(pids)
    while waiting:
        for pid in list(waiting):
            cid, status = os.waitpid(pid, os.WNOHANG)
            if cid == pid:
                statuses[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                when[pid] = time.monotonic()
                waiting.remove(pid)
        if waiting and time.monotonic() > limit:
            for pid in waiting:
                hung.append(pid)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    return statuses, when, hung


def one_round(point, workload, rng, logdir, round_no):
    totals = {"killed": 0, "hung": 0, "bad_exit": 0, "duplicates": 0, "delivered": 0,
              "stranded": 0, "reclaimed": 0, "flow_rounds": 0, "flowed": 0, "pause_ms": 0.0, "errors": []}
    deadline = time.monotonic() + RUN_SECONDS
    logs = [os.path.join(logdir, f"r{round_no}-{k}.log") for k in range(3)]
    nth = rng.randint(1, 60)
    if workload == "queue":
        q = Queue(maxsize=RING_SLOTS, capacity=1 << 16)
        survivors = [run_child(q_producer, q, s, deadline) for s in (0, 1)]
        survivors += [run_child(lambda p=p: q_consumer(q, Log(p), deadline)) for p in logs[:2]]
        vpid = run_child(lambda: q_victim(q, Log(logs[2]), point, nth, deadline))
    else:
        shm = ShareMem(1 << 20)
        pool = Mempool(COUNT, ELT, shm=shm)
        ring = Ring(RING_SLOTS, shm=shm)
        survivors = [run_child(producer, pool, ring, s, deadline) for s in (0, 1)]
        survivors += [run_child(lambda p=p: consumer(pool, ring, Log(p), deadline)) for p in logs[:2]]
        vpid = run_child(lambda: victim(pool, ring, Log(logs[2]), point, nth, workload, deadline))
    statuses, when, hung = reap(survivors + [vpid], deadline + HANG_GUARD)
    totals["hung"] = len(hung)
    for pid in survivors:
        if pid in statuses and statuses[pid] != 0:
            totals["bad_exit"] += 1
            totals["errors"].append(f"survivor exited with {statuses[pid]}")
    vstatus = statuses.get(vpid)
    if vstatus == -signal.SIGKILL:
        totals["killed"] = 1
        # Did messages keep flowing after the kill, once a waiter had time to repair?
        if when[vpid] < deadline - FLOW_WINDOW:
            totals["flow_rounds"] = 1
            after = [t for path in logs[:2] if os.path.exists(path) for t in read_times(path) if t > when[vpid]]
            totals["flowed"] = int(any(t > when[vpid] + REPAIR_PERIOD for t in after))
            # The longest the consumers went without a delivery after the victim died.
            totals["pause_ms"] = round(1000 * longest_pause(sorted(after), when[vpid]), 1)
    elif vstatus is not None and vstatus != 0:
        totals["bad_exit"] += 1
        totals["errors"].append(f"victim exited with {vstatus}")

    if workload == "queue":
        account_queue(q, logs, totals)
    else:
        account_blocks(pool, ring, shm, logs, totals)

    seen = set()
    for path in logs:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                item = tuple(map(int, line.split()[:2]))
                if item in seen:
                    totals["duplicates"] += 1
                seen.add(item)
    totals["delivered"] = len(seen)
    return totals


def account_queue(q, logs, totals):
    """Every block of the queue free once reclaim() ran and what is queued was got."""
    totals["reclaimed"] = q.reclaim()
    while True:
        try:
            msg = q.get(False)
        except EmptyError:
            break
        except CorruptionError as exc:
            totals["errors"].append(f"drain: {exc}")
            break
        item = q_check(msg)
        del msg
        if item is None:
            totals["errors"].append("drain: corrupt message")
        else:
            with open(logs[0], "a") as f:
                f.write("%d %d 0\n" % item)
    totals["stranded"] = sum(p.used_count for p in q._pools)


def account_blocks(pool, ring, shm, logs, totals):
    """Account for every block: what reclaim frees, what the ring still delivers."""
    totals["reclaimed"] = pool.reclaim()
    refused = []  # blocks the pool would not take back: as lost as the others
    while True:
        try:
            v = ring.dequeue()
        except EmptyError:
            break
        except CorruptionError as exc:
            totals["errors"].append(f"drain: {exc}")
            break
        item = read_stamp(v)
        if item is None:
            totals["errors"].append("drain: corrupt message")
        else:
            with open(logs[0], "a") as f:
                f.write("%d %d 0\n" % item)
        put_all(pool, [v], refused)
    for v in refused:
        v.release()
    totals["stranded"] = COUNT - pool.free_count
    pool.cleanup()
    ring.cleanup()
    shm.cleanup()


def main(argv):
    point, workload, rounds, seed = argv[1], argv[2], int(argv[3]), int(argv[4])
    rng = random.Random(seed)
    summary = {"point": point, "workload": workload, "rounds": rounds, "killed": 0, "hung": 0,
               "bad_exit": 0, "duplicates": 0, "delivered": 0, "stranded": 0, "reclaimed": 0,
               "stranded_rounds": 0, "flow_rounds": 0, "flowed": 0, "max_pause_ms": 0.0, "errors": []}
    with tempfile.TemporaryDirectory(prefix="pyshm-kill-") as logdir:
        for r in range(rounds):
            t = one_round(point, workload, rng, logdir, r)
            for key in ("killed", "hung", "bad_exit", "duplicates", "delivered", "stranded", "reclaimed",
                        "flow_rounds", "flowed"):
                summary[key] += t[key]
            summary["stranded_rounds"] += t["stranded"] > 0
            summary["max_pause_ms"] = max(summary["max_pause_ms"], t["pause_ms"])
            summary["errors"] += t["errors"]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
