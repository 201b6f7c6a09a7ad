"""The ``pyshm`` command: look at the regions on this machine, remove them, run the demo.

::

    pyshm ls                    pyshm regions in /dev/shm: size, layout version, objects, members
    pyshm info NAME [--json]    what a region holds (ShareMem.inspect(NAME)), as a table or JSON
    pyshm rm NAME [--force]     unlink a region; refused while a live process uses it
    pyshm demo [--quick]        two processes passing blocks through a Ring and objects through
                                a Queue, next to multiprocessing.Queue (also ``python -m pyshm``)

Inspecting a region maps it read-only for the time of the call: it does not join the
region's member table, take a lock or write anything, so it changes nothing a process
using the region could notice. Liveness of members is the kernel's answer (the lock each
member holds on its entry), the same test a repair makes.

The demo forks a producer and a consumer for each phase:

1. 64-byte messages: the producer takes a block from a Mempool, writes a sequence
   number and a timestamp into it and enqueues it; the consumer dequeues it, checks
   that the sequence numbers arrive in order and puts the block back.
2. The same messages sent through ``multiprocessing.Queue``, for comparison.
3. 1 MiB blocks: the same round trip, the producer stamping every 4 KiB page of each
   block and the consumer checking every stamp. The payload itself is never copied:
   the cost of a hand-off does not depend on the block's size, and is reported per block.
4. The same 1 MiB payloads through ``multiprocessing.Queue`` (pickled and copied).

Every child ends with ``os._exit`` and the parent checks its exit status. The exit
status of the demo is 0 only if every message of every phase was verified.
"""
import argparse
import array
import json
import multiprocessing
import os
import signal
import stat as stat_module
import struct
import sys
import time
import traceback

import pyshm

SMALL_SIZE = 64
SMALL_POOL = 1024
SMALL_RING = 512
LARGE_SIZE = 1 << 20
LARGE_POOL = 32
LARGE_RING = 16
PAGE_WORDS = 4096 // 8  # one stamp per 4 KiB page, in 8-byte words
HEADER = struct.Struct("=QQ")  # sequence number, producer's clock (ns)

DEFAULT = {"small": 5_000_000, "queue_small": 400_000, "large": 20_000, "queue_large": 1_000}
QUICK = {"small": 100_000, "queue_small": 20_000, "large": 500, "queue_large": 50}


class Failed(Exception):
    """A phase did not verify."""


# children ---------------------------------------------------------------------------


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def fork(fn, *args):
    """Run fn(*args) in a forked child; return (pid, fd to read its report from).

    The child writes fn's result (a dict) as JSON to a pipe and ends with os._exit:
    status 0 if the result says ok, 1 if not, 2 if fn raised.
    """
    _flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.close(rfd)
            result = fn(*args)
            code = 0 if result.get("ok") else 1
            os.write(wfd, json.dumps(result).encode())
        except BaseException:
            try:
                traceback.print_exc()
            except BaseException:
                pass
        finally:
            _flush()
            os._exit(code)
    os.close(wfd)
    return pid, rfd


def wait_for(children, timeout):
    """Reap every (name, pid, fd); return {name: report}. Kills the others if one fails."""
    pending = {pid: (name, fd) for name, pid, fd in children}
    codes = {}
    killed = set()
    deadline = time.monotonic() + timeout
    while pending:
        for pid in list(pending):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pending[pid][0]] = (os.waitstatus_to_exitcode(status), pending[pid][1])
                del pending[pid]
        failed = [n for n, (code, _) in codes.items() if code != 0]
        if pending and (failed or time.monotonic() > deadline):
            for pid, (name, fd) in pending.items():
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                codes[name] = (-signal.SIGKILL, fd)
                killed.add(name)
            pending.clear()
            if not failed:
                raise Failed(f"the children did not finish within {timeout:.0f} s; killed them")
        time.sleep(0.01)
    reports = {}
    problems = []
    for name, (code, fd) in codes.items():
        with os.fdopen(fd, "rb") as f:
            raw = f.read()
        report = json.loads(raw) if raw else {}
        reports[name] = report
        if name in killed:
            problems.append(f"the {name} was stopped")
        elif code != 0:
            why = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            detail = report.get("error", "see its traceback above")
            problems.append(f"the {name} {why}: {detail}")
    if problems:
        raise Failed("; ".join(problems))
    return reports


def _spin():
    os.sched_yield()


# pyshm phases -----------------------------------------------------------------------


def small_producer(pool, ring, n):
    get, enqueue, pack, now = pool.get, ring.enqueue, HEADER.pack_into, time.perf_counter_ns
    Empty, Full = pyshm.EmptyError, pyshm.FullError
    spins = 0
    start = now()
    for seq in range(n):
        while True:
            try:
                buf = get()
                break
            except Empty:
                spins += 1
                _spin()
        pack(buf, 0, seq, now())
        while True:
            try:
                enqueue(buf)
                break
            except Full:
                spins += 1
                _spin()
    return {"ok": True, "start": start, "spins": spins}


def small_consumer(pool, ring, n):
    dequeue, put, unpack, now = ring.dequeue, pool.put, HEADER.unpack_from, time.perf_counter_ns
    Empty = pyshm.EmptyError
    errors, first_error, last_ts = 0, None, 0
    for expected in range(n):
        while True:
            try:
                buf = dequeue()
                break
            except Empty:
                _spin()
        seq, ts = unpack(buf, 0)
        if seq != expected or ts < last_ts:
            errors += 1
            if first_error is None:
                first_error = f"message {expected}: got sequence number {seq}, timestamp {ts} after {last_ts}"
        last_ts = ts
        put(buf)
    end = now()
    report = {"ok": errors == 0, "end": end, "errors": errors}
    if first_error:
        report["error"] = f"{errors} message(s) out of order; first: {first_error}"
    return report


def _stamp_values(seq):
    return array.array("Q", [seq]) * (LARGE_SIZE // 8 // PAGE_WORDS)


def large_producer(pool, ring, n):
    get, enqueue, now = pool.get, ring.enqueue, time.perf_counter_ns
    Empty, Full = pyshm.EmptyError, pyshm.FullError
    start = now()
    for seq in range(n):
        while True:
            try:
                buf = get()
                break
            except Empty:
                _spin()
        with buf.cast("Q") as words:
            words[::PAGE_WORDS] = _stamp_values(seq)  # first word of every page
            words[-1] = seq
            words[1] = now()
        while True:
            try:
                enqueue(buf)
                break
            except Full:
                _spin()
    return {"ok": True, "start": start}


def large_consumer(pool, ring, n):
    dequeue, put, now = ring.dequeue, pool.put, time.perf_counter_ns
    Empty = pyshm.EmptyError
    errors, first_error = 0, None
    for expected in range(n):
        while True:
            try:
                buf = dequeue()
                break
            except Empty:
                _spin()
        with buf.cast("Q") as words:
            good = words[::PAGE_WORDS] == _stamp_values(expected) and words[-1] == expected
            seq = words[0]
        if not good:
            errors += 1
            if first_error is None:
                first_error = f"block {expected}: stamps wrong (first stamp reads {seq})"
        put(buf)
    end = now()
    report = {"ok": errors == 0, "end": end, "errors": errors}
    if first_error:
        report["error"] = f"{errors} block(s) failed verification; first: {first_error}"
    return report


def run_pyshm(pool, ring, n, producer, consumer, timeout):
    children = [
        ("consumer", *fork(consumer, pool, ring, n)),
        ("producer", *fork(producer, pool, ring, n)),
    ]
    reports = wait_for(children, timeout)
    if len(ring) != 0 or pool.free_count != pool.count:
        raise Failed(
            f"after the run the ring holds {len(ring)} entries and the pool has "
            f"{pool.free_count} of {pool.count} blocks free (expected 0 and all)"
        )
    return (reports["consumer"]["end"] - reports["producer"]["start"]) / 1e9


# multiprocessing.Queue phases ------------------------------------------------------


def queue_producer(q, n, size):
    now = time.perf_counter_ns
    payload = bytearray(size)
    start = now()
    if size == SMALL_SIZE:
        for seq in range(n):
            HEADER.pack_into(payload, 0, seq, now())
            q.put(bytes(payload))
    else:
        with memoryview(payload).cast("Q") as words:
            for seq in range(n):
                words[::PAGE_WORDS] = _stamp_values(seq)
                words[-1] = seq
                words[1] = now()
                q.put(bytes(payload))
    q.close()
    q.join_thread()  # os._exit would drop what the feeder thread has not sent yet
    return {"ok": True, "start": start}


def queue_consumer(q, n, size):
    now = time.perf_counter_ns
    errors, first_error = 0, None
    for expected in range(n):
        data = q.get()
        if size == SMALL_SIZE:
            seq, _ = HEADER.unpack_from(data, 0)
            good = seq == expected
        else:
            words = memoryview(data).cast("Q")
            seq = words[0]
            good = words[::PAGE_WORDS] == _stamp_values(expected) and words[-1] == expected
        if not good:
            errors += 1
            if first_error is None:
                first_error = f"message {expected}: got sequence number {seq}"
    end = now()
    report = {"ok": errors == 0, "end": end, "errors": errors}
    if first_error:
        report["error"] = f"{errors} message(s) wrong; first: {first_error}"
    return report


def run_queue(n, size, timeout, kind="mp"):
    """The queue phases: multiprocessing.Queue (kind "mp") or pyshm.Queue ("pyshm"), the
    same producer and consumer (bytes objects, pickled by either queue)."""
    maxsize = SMALL_POOL if size == SMALL_SIZE else LARGE_POOL
    q = multiprocessing.get_context("fork").Queue(maxsize) if kind == "mp" else pyshm.Queue(maxsize)
    children = [
        ("consumer", *fork(queue_consumer, q, n, size)),
        ("producer", *fork(queue_producer, q, n, size)),
    ]
    reports = wait_for(children, timeout)
    q.close()
    return (reports["consumer"]["end"] - reports["producer"]["start"]) / 1e9


# main -------------------------------------------------------------------------------


def _count(n):
    return f"{n:,}"


def _rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def _per_item_us(n, seconds):
    return seconds * 1e6 / n if n > 0 else 0.0


def _timeout(n, per_message_s):
    return 60.0 + n * per_message_s


def demo_main(argv=None, prog="pyshm demo"):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fork a producer and a consumer that pass shared-memory blocks through a pyshm Ring, "
        "verify every message, and compare with multiprocessing.Queue.",
    )
    parser.add_argument(
        "--messages", type=int, metavar="N", help=f"64-byte messages to pass (default {_count(DEFAULT['small'])})"
    )
    parser.add_argument("--quick", action="store_true", help="a short run (a second or two)")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else DEFAULT)
    if args.messages is not None:
        if args.messages < 1:
            parser.error("--messages must be at least 1")
        scale = args.messages / sizes["small"]
        sizes["small"] = args.messages
        for key in ("queue_small", "large", "queue_large"):
            sizes[key] = max(1, min(args.messages, round(sizes[key] * scale)))

    with pyshm.ShareMem(64 << 20) as shm:
        small_pool = pyshm.Mempool(
            SMALL_POOL, SMALL_SIZE, pyshm.MEMPOOL_F_SP_PUT | pyshm.MEMPOOL_F_SC_GET, shm=shm
        )
        small_ring = pyshm.Ring(SMALL_RING, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ, shm=shm)
        large_pool = pyshm.Mempool(
            LARGE_POOL, LARGE_SIZE, pyshm.MEMPOOL_F_SP_PUT | pyshm.MEMPOOL_F_SC_GET, shm=shm
        )
        large_ring = pyshm.Ring(LARGE_RING, pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ, shm=shm)
        print(f"pyshm {pyshm.__version__} demo on Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
        print(f"one ShareMem of {shm.size >> 20} MiB; one forked producer and one forked consumer per phase")
        print()
        failures = []

        def phase(title, fn):
            print(title)
            _flush()
            try:
                return fn()
            except Failed as exc:
                print(f"    FAILED: {exc}")
                failures.append(title)
                return None

        n = sizes["small"]
        t_small = phase(
            f"[1] {SMALL_SIZE}-byte messages through a pyshm Ring "
            f"(Mempool of {SMALL_POOL} blocks, Ring of {SMALL_RING} slots)",
            lambda: run_pyshm(small_pool, small_ring, n, small_producer, small_consumer, _timeout(n, 50e-6)),
        )
        if t_small is not None:
            print(f"    {_count(n)} messages passed; every sequence number arrived in order")
            print(f"    {t_small:.3f} s: {_count(round(_rate(n, t_small)))} msg/s")

        qn = sizes["queue_small"]
        t_queue = phase(
            f"[2] the same {SMALL_SIZE}-byte messages through multiprocessing.Queue",
            lambda: run_queue(qn, SMALL_SIZE, _timeout(qn, 500e-6)),
        )
        if t_queue is not None:
            print(f"    {_count(qn)} messages passed; every sequence number arrived in order")
            print(f"    {t_queue:.3f} s: {_count(round(_rate(qn, t_queue)))} msg/s")
            if t_small is not None:
                ratio = _rate(n, t_small) / _rate(qn, t_queue)
                print(f"    pyshm passed small messages {ratio:.1f}x as fast")

        t_pqueue = phase(
            f"[3] the same {SMALL_SIZE}-byte messages through pyshm.Queue (objects, pickled like [2])",
            lambda: run_queue(qn, SMALL_SIZE, _timeout(qn, 500e-6), "pyshm"),
        )
        if t_pqueue is not None:
            print(f"    {_count(qn)} messages passed; every sequence number arrived in order")
            print(f"    {t_pqueue:.3f} s: {_count(round(_rate(qn, t_pqueue)))} msg/s", end="")
            if t_queue is not None:
                print(f", {_rate(qn, t_pqueue) / _rate(qn, t_queue):.1f}x multiprocessing.Queue's")
            else:
                print()

        ln = sizes["large"]
        t_large = phase(
            f"[4] 1 MiB blocks through a pyshm Ring (Mempool of {LARGE_POOL} blocks, Ring of {LARGE_RING} slots)",
            lambda: run_pyshm(large_pool, large_ring, ln, large_producer, large_consumer, _timeout(ln, 5e-3)),
        )
        if t_large is not None:
            print(f"    {_count(ln)} blocks passed; every 4 KiB page of every block was stamped by the")
            print("    producer and checked by the consumer")
            print(f"    {t_large:.3f} s: {_count(round(_rate(ln, t_large)))} blocks/s, "
                  f"{_per_item_us(ln, t_large):.1f} us per block, stamping and checking {LARGE_SIZE // 4096} pages "
                  "included")
            print("    no byte is copied: only a block's 8-byte offset crosses the ring, so a hand-off (get,")
            print("    enqueue, dequeue, put) costs the same for a block of any size", end="")
            if t_small is not None:
                print(f": {_per_item_us(n, t_small):.2f} us, as measured for the")
                print(f"    {SMALL_SIZE}-byte messages of [1]")
            else:
                print()

        lq = sizes["queue_large"]
        t_lqueue = phase(
            "[5] the same 1 MiB payloads through multiprocessing.Queue (pickled and copied)",
            lambda: run_queue(lq, LARGE_SIZE, _timeout(lq, 50e-3)),
        )
        if t_lqueue is not None:
            print(f"    {_count(lq)} payloads passed and checked")
            print(f"    {t_lqueue:.3f} s: {_count(round(_rate(lq, t_lqueue)))} payloads/s, "
                  f"{_per_item_us(lq, t_lqueue):.1f} us per payload")
            print("    (pickled, copied through a pipe and unpickled: the cost grows with the payload's size)")
            if t_large is not None:
                ratio = _per_item_us(lq, t_lqueue) / _per_item_us(ln, t_large)
                print(f"    a 1 MiB payload cost {ratio:.1f}x as much as through pyshm, stamps and checks included")

        t_plqueue = phase(
            "[6] the same 1 MiB payloads through pyshm.Queue (bytes objects: pickled, copied once each way)",
            lambda: run_queue(lq, LARGE_SIZE, _timeout(lq, 50e-3), "pyshm"),
        )
        if t_plqueue is not None:
            print(f"    {_count(lq)} payloads passed and checked")
            print(f"    {t_plqueue:.3f} s: {_count(round(_rate(lq, t_plqueue)))} payloads/s, "
                  f"{_per_item_us(lq, t_plqueue):.1f} us per payload", end="")
            if t_lqueue is not None:
                print(f", {_per_item_us(lq, t_lqueue) / _per_item_us(lq, t_plqueue):.1f}x faster than [5]")
            else:
                print()
            print("    (numpy arrays are not even copied on the way out: see pyshm.Queue's documentation)")

        for obj in (small_ring, small_pool, large_ring, large_pool):
            obj.cleanup()

    print()
    if failures:
        print(f"FAILED: {len(failures)} phase(s) did not verify")
        return 1
    print("OK: every message of every phase was verified")
    return 0



# inspection -------------------------------------------------------------------------

DEV_SHM = "/dev/shm"
_MAGIC = b"SREGION1"
_HEADER = struct.Struct("=8sI")  # magic, layout version (the start of every region header)


def _bare(name):
    return name[1:] if name.startswith("/") else name


def _peek(path):
    """(is a pyshm region, its layout version) from the first bytes of a file; None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat_module.S_ISREG(st.st_mode) or st.st_size < _HEADER.size:
            return (False, 0)
        data = os.pread(fd, _HEADER.size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) < _HEADER.size:
        return (False, 0)
    magic, version = _HEADER.unpack(data)
    return (magic == _MAGIC, version)


def _live(info):
    return sum(1 for m in info["members"] if m["alive"] is True)


def _kinds(info, kind):
    return sum(1 for o in info["objects"] if o["kind"] == kind)


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # not reached


def _alive_word(alive):
    return {True: "yes", False: "no", None: "unknown"}[alive]


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def list_regions(directory=DEV_SHM):
    """One dict per pyshm region in `directory`: name, size, layout_version, pools, rings,
    raw, members, live_members, and error (a str) where the region could not be read."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    out = []
    for entry in names:
        peek = _peek(os.path.join(directory, entry))
        if peek is None or not peek[0]:
            continue  # not a pyshm region (or not ours to read)
        row = {"name": "/" + entry, "layout_version": peek[1], "size": None, "pools": None, "rings": None,
               "raw": None, "members": None, "live_members": None, "error": None}
        if peek[1] != pyshm.LAYOUT_VERSION:
            row["error"] = f"layout version {peek[1]}: this pyshm reads version {pyshm.LAYOUT_VERSION}"
        else:
            try:
                info = pyshm.ShareMem.inspect(entry)
            except (OSError, pyshm.PyshmError, ValueError) as exc:
                row["error"] = str(exc)
            else:
                row.update(size=info["size"], pools=_kinds(info, "pool"), rings=_kinds(info, "ring"),
                           raw=_kinds(info, "raw"), members=len(info["members"]), live_members=_live(info))
        out.append(row)
    return out


def cmd_ls(args):
    rows = list_regions()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no pyshm regions in {DEV_SHM}")
        return 0
    table = []
    for r in rows:
        if r["error"]:
            table.append([r["name"], "-", r["layout_version"], "-", "-", "-", "-", r["error"]])
        else:
            table.append([r["name"], _size(r["size"]), r["layout_version"], r["pools"], r["rings"], r["raw"],
                          f"{r['live_members']}/{r['members']}", ""])
    print(_table(table, ["NAME", "SIZE", "LAYOUT", "POOLS", "RINGS", "RAW", "LIVE/MEMBERS", "NOTE"]))
    return 0


def _inspect_or_report(name):
    """ShareMem.inspect(name), or None with the reason printed on stderr."""
    try:
        return pyshm.ShareMem.inspect(name)
    except FileNotFoundError:
        print(f"pyshm: no region named {name!r} in {DEV_SHM}", file=sys.stderr)
    except (OSError, pyshm.PyshmError, ValueError) as exc:
        print(f"pyshm: {name}: {exc}", file=sys.stderr)
    return None


def format_info(info):
    lines = [
        f"region {info['name']}: {_size(info['size'])} for objects ({info['size']:,} bytes), "
        f"{info['free']:,} bytes free, layout version {info['layout_version']}",
        "",
    ]
    members = info["members"]
    if members:
        rows = [[m["index"], m["pid"], _alive_word(m["alive"]), m["holds"], "yes" if m["announcing"] else "no"]
                for m in members]
        lines.append(f"members ({_live(info)} alive of {len(members)}):")
        lines.append(_table(rows, ["ENTRY", "PID", "ALIVE", "HOLDS<=", "CLAIMING"]))
    else:
        lines.append("members: none")
    lines.append("")
    pools = [o for o in info["objects"] if o["kind"] == "pool" and not o["corrupt"]]
    rings = [o for o in info["objects"] if o["kind"] == "ring" and not o["corrupt"]]
    raws = [o for o in info["objects"] if o["kind"] == "raw" and not o["corrupt"]]
    bad = [o for o in info["objects"] if o["corrupt"] or o["kind"] == "unknown"]
    label = lambda o: o["name"] if o["name"] is not None else "-"  # noqa: E731
    if pools:
        lines.append("pools:")
        lines.append(_table([[label(o), o["offset"], o["count"], o["elt_size"], o["free_count"], o["held_count"],
                              o["in_ring_count"], o["held_by_dead"]] for o in pools],
                            ["NAME", "OFFSET", "BLOCKS", "SIZE", "FREE", "HELD", "IN_RING", "HELD_BY_DEAD"]))
    if rings:
        lines.append("rings:")
        lines.append(_table([[label(o), o["offset"], o["count"], o["used"], o["shutdown"]] for o in rings],
                            ["NAME", "OFFSET", "SLOTS", "USED", "STATE"]))
    if raws:
        lines.append("raw buffers:")
        lines.append(_table([[label(o), o["offset"], o["size"]] for o in raws], ["NAME", "OFFSET", "BYTES"]))
    if bad:
        lines.append("objects that do not validate:")
        lines.append(_table([[label(o), o["offset"], o["kind"]] for o in bad], ["NAME", "OFFSET", "KIND"]))
    if not info["objects"]:
        lines.append("objects: none")
    return "\n".join(lines)


def cmd_info(args):
    info = _inspect_or_report(args.name)
    if info is None:
        return 1
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def cmd_rm(args):
    bare = _bare(args.name)
    if not bare or "/" in bare or bare in (".", ".."):
        print(f"pyshm: {args.name!r} is not a region name", file=sys.stderr)
        return 2
    peek = _peek(os.path.join(DEV_SHM, bare))
    if peek is None:
        if not os.path.lexists(os.path.join(DEV_SHM, bare)):
            print(f"pyshm: no region named {args.name!r} in {DEV_SHM}", file=sys.stderr)
        else:
            print(f"pyshm: cannot read {args.name!r}", file=sys.stderr)
        return 1
    if not peek[0]:
        print(f"pyshm: {args.name!r} is not a pyshm region; not removed", file=sys.stderr)
        return 1
    if peek[1] != pyshm.LAYOUT_VERSION:
        if not args.force:
            print(f"pyshm: {args.name!r} has layout version {peek[1]} (this pyshm reads {pyshm.LAYOUT_VERSION}): "
                  "cannot tell whether a process uses it; --force removes it anyway", file=sys.stderr)
            return 1
    else:
        info = _inspect_or_report(bare)
        if info is None and not args.force:
            return 1
        users = [m for m in (info or {"members": []})["members"] if m["alive"] is not False]
        if users and not args.force:
            pids = ", ".join(f"{m['pid']}" + ("" if m["alive"] else " (liveness unknown)") for m in users)
            print(f"pyshm: region /{bare} is in use by {len(users)} live member(s) (pid {pids}); "
                  "not removed (--force removes the name anyway: processes that have it mapped keep using it)",
                  file=sys.stderr)
            return 1
    try:
        os.unlink(os.path.join(DEV_SHM, bare))
    except OSError as exc:
        print(f"pyshm: cannot remove /{bare}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"removed /{bare}")
    return 0


def cmd_demo(args):
    argv = ["--quick"] if args.quick else []
    if args.messages is not None:
        argv += ["--messages", str(args.messages)]
    return demo_main(argv)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyshm", description="Inspect and manage pyshm shared-memory regions.")
    parser.add_argument("--version", action="version", version=f"pyshm {pyshm.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("ls", help=f"list the pyshm regions in {DEV_SHM}")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(fn=cmd_ls)
    p = sub.add_parser("info", help="show what a region holds: members, pools, rings, raw buffers")
    p.add_argument("name", metavar="NAME", help="the region's name (with or without the leading '/')")
    p.add_argument("--json", action="store_true", help="print ShareMem.inspect(NAME) as JSON")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("rm", help="unlink a region (refused while a live process uses it)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--force", action="store_true", help="unlink even while processes use it")
    p.set_defaults(fn=cmd_rm)
    p = sub.add_parser("demo", help="pass blocks between two processes and compare with multiprocessing.Queue")
    p.add_argument("--quick", action="store_true", help="a short run (a second or two)")
    p.add_argument("--messages", type=int, metavar="N", help="64-byte messages to pass")
    p.set_defaults(fn=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
