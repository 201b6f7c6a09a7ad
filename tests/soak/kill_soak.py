#!/usr/bin/env python3
"""Random-kill soak test: processes SIGKILLed at random instants while pools and rings
are in full use, with everything they passed accounted for afterwards.

    python tests/soak/kill_soak.py --seconds 600 --seed 1
    python tests/soak/kill_soak.py --round-seed 123456789     # one round, as printed

No kill points: the extension is the ordinary build. The parent sends a plain
``os.kill(pid, SIGKILL)`` at random times, so a victim dies wherever it happens to be
(inside a pyshm call, in the interpreter between calls, writing its log, repairing for
others...).

Each round, with its own seed (derived from --seed, or given by --round-seed):

- a fresh region with one or two pools and one or two rings, random geometry (blocks of
  20 bytes to 4 KiB, pools of 1 to 200 blocks, rings of 1 to 64 slots), sometimes with
  the SP/SC flags (the topology then keeps the promise: one producer, one consumer of
  such a ring, one getter of such a pool; a pool with MEMPOOL_F_SP_PUT gets one putter
  besides the library's own repair and drain);
- forked producers, consumers and one supervisor. Producers and consumers each pick a
  style per incarnation: single or bulk calls; blocking with a short timeout, blocking
  without timeout (consumers' dequeue and producers' enqueue only: the parent's
  shutdown at the end wakes them), or non-blocking polling. The supervisor calls
  reclaim() now and then (lazily, or in an eager loop so that kills land inside it);
- a kill schedule: at random instants the parent kills a random worker (weighted by
  role), or two at once, or a worker and then, a few milliseconds later, the supervisor
  (which by then is often repairing what the first one left). Every victim is reaped
  and replaced by a fresh incarnation of the same role;
- sometimes a producer calls shutdown(immediate=True) on every ring in the middle: the
  round then ends early (consumers see ShutDown). Otherwise the parent shuts the rings
  down (gracefully) at the round's deadline, which is how everyone is told to stop.

Every message is stamped in its block with (producer, ring, sequence, pool), a payload
pattern and a crc32 of all of it. Producers log each message's intent before
enqueue and its confirmation after enqueue returned (only confirmed messages count as
sent); consumers log what they received before putting the block back. Logs are
per-process files opened O_APPEND, so a killed process's log survives.

At the end of the round, every child is reaped (survivors must exit 0; any child still
alive HANG_GUARD seconds after the deadline is a hang: its Python stack is dumped with
faulthandler, then it is killed); the parent calls reclaim(), drains every ring
(logging what it dequeues as deliveries), calls shutdown(immediate=True) to drain what
an immediate shutdown left, and checks:

- blocks lost: every block of every pool is free (free_count == count);
- duplicated: no message delivered twice;
- corrupt: no delivered block with a bad stamp, wrong payload, or on the wrong ring;
  no CorruptionError; phantom: no delivered message that no producer intended, or whose
  enqueue reported failure;
- fifo: for each consumer, the messages of one producer on one ring arrive in
  increasing sequence;
- lost: a confirmed message nobody delivered is excused only (a) by a consumer of its
  ring that died after the message's enqueue began (it may have claimed it), at most
  claim-size messages per dead consumer (the excess is lost), or (b) in rounds with an
  immediate shutdown, by being found intact in a free block at the end (the shutdown
  put it back) unless a later message of the same producer on the same ring was
  delivered before the shutdown began (then it had left the ring before), with a
  small allowance for drained blocks reused by producers that had not yet noticed the
  shutdown;
- stuck: after every kill, a delivery follows on every ring, more than FLOW_AFTER
  seconds after the victim's death and before the round's end (kills later than
  FLOW_WINDOW before the end are not checked). A liveness check bounded by the round,
  not a timing claim.
- bad exits: every child not killed by the parent exited with status 0;
- errors: no pyshm call of the parent's checks (reclaim, drain, cleanup) raised.

Prints one JSON line (see `summary` in main) and exits 0 only if lost, duplicated,
corrupt, phantom, fifo_violations, hangs, stuck_rounds, blocks_lost, bad_exits and
errors are all 0. The logs of failing rounds are kept (the summary names the directory).
Timing of the kills cannot be replayed: a round seed reproduces the round's geometry,
roles, styles and kill schedule, not the interleaving.
"""
import argparse
import bisect
import faulthandler
import json
import mmap
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field

from pyshm import (
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_SP_PUT,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    PyshmError,
    Ring,
    ShareMem,
    ShutDown,
)

HERE = os.path.abspath(__file__)

HANG_GUARD = 30.0  # a child alive this long after the round's deadline is hung
FLOW_WINDOW = 1.5  # kills closer than this to the round's end are not checked for flow
FLOW_AFTER = 0.25  # a delivery must come this long after the victim's death (repair done)
KILL_STOP = 0.2  # no kills in the last KILL_STOP seconds before the deadline
PUT_TRIES_AT_EXIT = 20
STATE_SLOTS = 1 << 16  # per worker, shared with the parent: "inside a pyshm call", reclaim() count

# ---- messages ---------------------------------------------------------------------------

HEAD = struct.Struct("<IIII")  # producer wid, ring, sequence, pool
CRC = struct.Struct("<I")
STAMP = HEAD.size + CRC.size  # 20: the smallest block size used
PAYLOAD_MAX = 64
TAIL = 8
PATTERN = bytes(range(256)) * 2


def _layout(elt):
    pl = max(0, min(elt - STAMP, PAYLOAD_MAX))
    tail = elt >= STAMP + pl + TAIL
    return pl, tail


def _expected(elt, wid, ring, seq, pool):
    head = HEAD.pack(wid & 0xFFFFFFFF, ring, seq & 0xFFFFFFFF, pool)
    k = (wid * 131 + seq * 7 + ring * 3 + pool) & 0xFF
    pl, has_tail = _layout(elt)
    pay = PATTERN[k:k + pl]
    tail = PATTERN[k ^ 0x5A:(k ^ 0x5A) + TAIL] if has_tail else b""
    crc = zlib.crc32(tail, zlib.crc32(pay, zlib.crc32(head)))
    return head + CRC.pack(crc) + pay, tail


def stamp(view, elt, wid, ring, seq, pool):
    body, tail = _expected(elt, wid, ring, seq, pool)
    view[0:len(body)] = body
    if tail:
        view[elt - TAIL:elt] = tail


def read_stamp(view, elt):
    """(wid, ring, seq, pool) if the block holds an intact message, else None."""
    pl, has_tail = _layout(elt)
    body = bytes(view[0:STAMP + pl])
    wid, ring, seq, pool = HEAD.unpack_from(body)
    if ring > 1 or pool > 1:
        return None
    exp_body, exp_tail = _expected(elt, wid, ring, seq, pool)
    if body != exp_body:
        return None
    if has_tail and bytes(view[elt - TAIL:elt]) != exp_tail:
        return None
    return wid, ring, seq, pool


def is_zero(view, elt):
    pl, _ = _layout(elt)
    return not any(bytes(view[0:STAMP + pl]))


# ---- round description ------------------------------------------------------------------


@dataclass
class Slot:
    sid: int
    role: str  # "producer", "consumer", "supervisor"
    rings: list = field(default_factory=list)  # producer: rings it feeds; consumer: [its ring]
    pools: list = field(default_factory=list)  # producer: pools it gets from
    may_put: bool = True  # producer: False when its pool has MEMPOOL_F_SP_PUT (not the putter)
    shutter: bool = False  # producer: calls shutdown(immediate=True) at ctx.shutdown_at


@dataclass
class Ctx:
    round_seed: int
    shm: object
    pools: list
    rings: list
    elts: list
    deadline: float
    shutdown_at: float  # or None
    logdir: str
    state: object  # mmap: state[2 * wid] == 1 while the worker is inside a pyshm call
    start: float = 0.0
    slots: list = field(default_factory=list)
    aim_at_shutdown: bool = False
    inject: frozenset = frozenset()  # faults planted on purpose to check the checker (--inject)


def choose_topology(rng):
    n_rings = rng.choice([1, 1, 2])
    n_pools = rng.choice([1, 2])
    ring_flags = []
    for _ in range(n_rings):
        f = 0
        if rng.random() < 0.25:
            f |= RING_F_SP_ENQ
        if rng.random() < 0.25:
            f |= RING_F_SC_DEQ
        ring_flags.append(f)
    slots = []

    def add(role, **kw):
        s = Slot(len(slots), role, **kw)
        slots.append(s)
        return s

    top = 3 if n_rings == 1 else 2
    producers = []
    for r in range(n_rings):
        k = 1 if ring_flags[r] & RING_F_SP_ENQ else rng.randint(1, top)
        producers += [add("producer", rings=[r]) for _ in range(k)]
    if n_rings == 2 and not any(f & RING_F_SP_ENQ for f in ring_flags) and rng.random() < 0.5:
        rng.choice(producers).rings = [0, 1]
    for p in producers:
        p.pools = [0] if n_pools == 1 else rng.choice([[0], [1], [0, 1]])
    for pool in range(n_pools):  # every pool is used
        if not any(pool in p.pools for p in producers):
            rng.choice(producers).pools.append(pool)
    consumers = []
    for r in range(n_rings):
        k = 1 if ring_flags[r] & RING_F_SC_DEQ else rng.randint(1, top)
        consumers += [add("consumer", rings=[r]) for _ in range(k)]
    add("supervisor")
    pool_flags = []
    for pool in range(n_pools):
        users = [p for p in producers if pool in p.pools]
        f = 0
        if len(users) == 1 and rng.random() < 0.4:
            f |= MEMPOOL_F_SC_GET
        # One putter: the only consumer of the only ring that the pool's only producer
        # feeds (that producer then never puts; what it holds at the end, reclaim returns).
        if len(users) == 1 and len(users[0].rings) == 1 and rng.random() < 0.4:
            r = users[0].rings[0]
            if sum(1 for c in consumers if c.rings == [r]) == 1:
                f |= MEMPOOL_F_SP_PUT
                users[0].may_put = False
        pool_flags.append(f)
    geometry = {
        "pools": [(rng.choice([1, 2, 3, 4, 7, 8, 16, 32, 64, 200]),
                   rng.choice([20, 24, 40, 64, 100, 256, 1024, 4096]), pool_flags[p]) for p in range(n_pools)],
        "rings": [(rng.choice([1, 2, 3, 4, 8, 16, 33, 64]), ring_flags[r]) for r in range(n_rings)],
    }
    return slots, geometry


def stride(elt):
    return (elt + 7) // 8 * 8 if elt < 64 else (elt + 63) // 64 * 64


def choose_style(rng, slot):
    if slot.role == "supervisor":
        eager = rng.random() < 0.35
        period = rng.choice([0.0, rng.uniform(0.0, 0.001)]) if eager else rng.uniform(0.02, 0.3)
        return {"eager": eager, "period": period}
    bulk = rng.random() < 0.4
    wait = rng.choices(["short", "none", "poll"], [0.45, 0.2, 0.35])[0]
    return {
        "bulk": bulk,
        "n": rng.randint(2, 16 if slot.role == "consumer" else 8) if bulk else 1,
        "wait": wait,  # producers: "none" applies to enqueue; their get waits "short"
        "timeout": rng.uniform(0.005, 0.05),
        "poll_sleep": rng.choice([0.0, 0.0002, 0.001, 0.003]),
        "put_many": bulk and rng.random() < 0.5,
    }


# ---- children ---------------------------------------------------------------------------


class Log:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, text):
        os.write(self.fd, text.encode())


def now():
    return time.monotonic()


def wait_kwargs(style, for_get=False):
    w = style["wait"]
    if w == "poll":
        return {}
    if w == "none" and not for_get:
        return {"block": True}
    return {"block": True, "timeout": style["timeout"]}


def pool_of(ctx, view, hint):
    """Put `view` back into its pool (trying `hint` first); raises PyshmError if the free
    queue stays blocked; ValueError if no pool takes it."""
    order = [hint] + [p for p in range(len(ctx.pools)) if p != hint] if hint is not None else range(len(ctx.pools))
    last = None
    for p in order:
        try:
            ctx.pools[p].put(view)
            return p
        except ValueError as exc:
            last = exc
    raise last


def producer(ctx, slot, wid, style, rng, log):
    st, me = ctx.state, 2 * wid % STATE_SLOTS
    seq = 0
    held = []  # (pool index, view): blocks to give back
    kw_get = wait_kwargs(style, for_get=True)
    kw_enq = wait_kwargs(style)
    rings = ctx.rings
    while True:
        t = now()
        if t >= ctx.deadline:
            break
        if slot.shutter and t >= ctx.shutdown_at and not all(r.is_shutdown for r in rings):
            if ctx.aim_at_shutdown:
                # Tell the parent, which then aims a kill at what follows; go on when it
                # answers (or after 50 ms): both then run at once, so its kill lands
                # a few microseconds in.
                st[me] = 3
                limit = now() + 0.05
                while st[me + 1] != 0xAA and now() < limit:
                    pass
            st[me] = 2
            log.write(f"S {now():.6f}\n")
            for r in rings:
                r.shutdown(immediate=True)
            st[me] = 0
            log.write(f"T {now():.6f}\n")
            continue
        open_rings = [r for r in slot.rings if not rings[r].is_shutdown]
        if not open_rings:
            break
        if held and slot.may_put:
            p, v = held.pop()
            try:
                st[me] = 1
                ctx.pools[p].put(v)
            except PyshmError:
                held.append((p, v))
                log.write("P 1\n")
                time.sleep(0.001)
            finally:
                st[me] = 0
            continue
        p = rng.choice(slot.pools)
        r = rng.choice(open_rings)
        n = min(style["n"], rings[r].count)
        try:
            st[me] = 1
            if style["bulk"]:
                views = ctx.pools[p].get_many(n, **kw_get)
            else:
                views = [ctx.pools[p].get(**kw_get)]
        except EmptyError:
            st[me] = 0
            if style["wait"] == "poll" and style["poll_sleep"]:
                time.sleep(style["poll_sleep"])
            continue
        st[me] = 0
        of = [p] * len(views)  # the pool of each view
        if style["bulk"] and len(slot.pools) > 1 and len(views) < n and rng.random() < 0.5:
            # A batch mixing blocks of both pools (a ring carries any pool's blocks).
            q = slot.pools[0] if p != slot.pools[0] else slot.pools[1]
            try:
                st[me] = 1
                more = ctx.pools[q].get_many(n - len(views))
                views += more
                of += [q] * len(more)
            except EmptyError:
                pass
            finally:
                st[me] = 0
        for i, v in enumerate(views):
            stamp(v, ctx.elts[of[i]], wid, r, seq + i, of[i])
        if "corrupt" in ctx.inject and rng.random() < 0.002:
            views[0][16] ^= 0x01  # the crc
        k = len(views)
        t = now()
        log.write("".join(f"I {r} {seq + i} {of[i]} {t:.6f}\n" for i in range(k)))
        outcome = None
        while outcome is None:
            try:
                st[me] = 1
                if style["bulk"] and (k > 1 or rng.random() < 0.5):
                    rings[r].enqueue_many(views, **kw_enq)
                else:
                    rings[r].enqueue(views[0], **kw_enq)
                st[me] = 0
                outcome = "C"
            except FullError:
                st[me] = 0
                if now() >= ctx.deadline:
                    outcome = "A"
                elif style["wait"] == "poll" and style["poll_sleep"]:
                    time.sleep(style["poll_sleep"])
            except ShutDown:
                st[me] = 0
                outcome = "A"
        t = now()
        log.write("".join(f"{outcome} {r} {seq + i} {t:.6f}\n" for i in range(k)))
        if outcome == "A":
            held += list(zip(of, views))
        seq += k
    # Give back what is left; a producer that may not put keeps it (reclaim returns it).
    tries = 0
    while held and slot.may_put and tries < PUT_TRIES_AT_EXIT:
        p, v = held[-1]
        try:
            ctx.pools[p].put(v)
            held.pop()
        except PyshmError:
            tries += 1
    if held:
        log.write(f"H {len(held)}\n")
    return 0


def consumer(ctx, slot, wid, style, rng, log):
    st, me = ctx.state, 2 * wid % STATE_SLOTS
    r = slot.rings[0]
    ring = ctx.rings[r]
    held = []  # (hint, view)
    kw = wait_kwargs(style)

    def give_back(batch):
        # batch: [(pool hint, view)]
        if style["put_many"] and len(batch) > 1:
            rest = []
            for h in sorted({h for h, _ in batch if h is not None}):
                group = [(g, v) for g, v in batch if g == h]
                try:
                    st[me] = 1
                    ctx.pools[h].put_many([v for _, v in group])
                except PyshmError:
                    held.extend(group)
                    log.write("P 1\n")
                except ValueError:
                    rest += group  # some other pool: one by one below, which reports it
                finally:
                    st[me] = 0
            batch = rest + [(h, v) for h, v in batch if h is None]
        for h, v in batch:
            try:
                st[me] = 1
                got = pool_of(ctx, v, h)
                if h is not None and got != h:
                    log.write(f"X {now():.6f} wrong-pool stamp says {h}, block is of {got}\n")
            except PyshmError:
                held.append((h, v))
                log.write("P 1\n")
            except ValueError as exc:
                log.write(f"X {now():.6f} put refused: {exc}\n")
                v.release()
            finally:
                st[me] = 0

    inject = ctx.inject
    reordered = None
    while True:
        if held:
            h, v = held.pop()
            give_back([(h, v)])
        if "stuck" in inject and now() > ctx.start + 1.0:
            while not ring.is_shutdown:
                time.sleep(0.01)
        try:
            st[me] = 1
            if style["bulk"]:
                views = ring.dequeue_many(style["n"], **kw)
            else:
                views = [ring.dequeue(**kw)]
            st[me] = 0
        except EmptyError:
            st[me] = 0
            if style["wait"] == "poll" and style["poll_sleep"]:
                time.sleep(style["poll_sleep"])
            continue
        except ShutDown:
            st[me] = 0
            log.write(f"E {now():.6f}\n")
            if "hang" in inject and slot.sid == min(s.sid for s in ctx.slots if s.role == "consumer"):
                time.sleep(3600)
            break
        except CorruptionError as exc:
            st[me] = 0
            log.write(f"X {now():.6f} CorruptionError: {exc}\n")
            continue
        t = now()
        lines = []
        batch = []
        for v in views:
            item = None
            try:
                elt = len(v)
                item = read_stamp(v, elt) if elt >= STAMP else None
            except Exception as exc:  # noqa: BLE001 - report anything odd as corruption
                lines.append(f"X {t:.6f} unreadable block: {exc!r}\n")
            if item is None:
                zero = len(v) >= STAMP and is_zero(v, len(v))
                lines.append(f"X {t:.6f} bad stamp (len {len(v)}, zero {zero}): {bytes(v[:24]).hex()}\n")
                batch.append((None, v))
            else:
                line = f"D {item[0]} {item[1]} {item[2]} {item[3]} {t:.6f}\n"
                if inject:
                    x = rng.random()
                    if "lose" in inject and x < 0.1:
                        line = ""
                    elif "dup" in inject and x < 0.12:
                        line += line
                    elif "reorder" in inject and x < 0.15:
                        if reordered is None:
                            reordered, line = line, ""
                        else:
                            line, reordered = line + reordered, None
                lines.append(line)
                batch.append((item[3], v))
        log.write("".join(lines))
        give_back(batch)
    tries = 0
    while held and tries < PUT_TRIES_AT_EXIT:
        h, v = held[-1]
        try:
            pool_of(ctx, v, h)
            held.pop()
        except PyshmError:
            tries += 1
        except ValueError:
            held.pop()
    if held:
        log.write(f"H {len(held)}\n")
    return 0


def supervisor(ctx, slot, wid, style, rng, log):
    st, me = ctx.state, 2 * wid % STATE_SLOTS
    while now() < ctx.deadline and not all(r.is_shutdown for r in ctx.rings):
        if style["period"]:
            time.sleep(style["period"])
        pool = rng.choice(ctx.pools)
        t0 = now()
        st[me + 1] = (st[me + 1] + 1) & 0xFF
        st[me] = 1
        n = pool.reclaim()
        st[me] = 0
        if n or not style["eager"]:
            log.write(f"R {t0:.6f} {n} {now() - t0:.6f}\n")
    return 0


ROLES = {"producer": producer, "consumer": consumer, "supervisor": supervisor}


def spawn(ctx, slot, wid, style, seed):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        err = os.open(os.path.join(ctx.logdir, f"w{wid}.err"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(err, 2)
        os.close(err)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        faulthandler.enable(file=sys.stderr, all_threads=True)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        log = Log(os.path.join(ctx.logdir, f"w{wid}.log"))
        code = ROLES[slot.role](ctx, slot, wid, style, random.Random(seed), log)
    except BaseException:  # report and fail; never return into the parent's code
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
        code = 1
    finally:
        os._exit(code)


# ---- the parent -------------------------------------------------------------------------


@dataclass
class Worker:
    wid: int
    slot: Slot
    style: dict
    pid: int
    started: float
    status: int = None  # exit code, or -signal
    ended: float = None
    killed_at: float = None  # when the parent sent SIGKILL
    dead_at: float = None  # when the parent saw it dead

    @property
    def claim(self):
        return self.style.get("n", 1)


def exit_status(status):
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        data = f.read()
    lines = data.split("\n")
    return [ln.split() for ln in lines[:-1] if ln]  # the last piece has no newline: cut short


def tail(path, n=2000):
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()[-n:]


class Round:
    def __init__(self, round_seed, workdir, opts):
        self.seed = round_seed
        self.rng = random.Random(round_seed)
        self.opts = opts
        self.logdir = os.path.join(workdir, f"round-{round_seed}")
        os.makedirs(self.logdir)
        self.r = {
            "kills": {"producer": 0, "consumer": 0, "supervisor": 0},
            "kills_in_call": {"producer": 0, "consumer": 0, "supervisor": 0},
            "kill_events": 0, "double_kills": 0, "worker_then_supervisor": 0, "newborn_kills": 0,
            "sent": 0, "delivered": 0, "delivered_by_parent": 0, "intent_only_delivered": 0,
            "lost": 0, "duplicated": 0, "corrupt": 0, "phantom": 0, "fifo_violations": 0,
            "hangs": 0, "stuck": 0, "blocks_lost": 0, "bad_exits": 0,
            "consumer_deaths": 0, "max_claim": 0, "undelivered": 0, "excused_by_consumer_death": 0,
            "dropped_by_shutdown": 0, "shutdown": 0, "reclaimed_by_supervisors": 0,
            "reclaimed_at_end": 0, "extra_reclaims_needed": 0, "flow_checked": 0,
            "max_flow_gap": 0.0, "put_refusals": 0, "exited_holding": 0, "workers": 0, "errors": 0,
            "shutter_kills": 0, "shutdowns_interrupted": 0,
        }
        self.failures = []
        self.notes = []

    def fail(self, what):
        if len(self.failures) < 40:
            self.failures.append(what)
        elif len(self.failures) == 40:
            self.failures.append("... (more failures in this round not listed)")

    # -- setup ----------------------------------------------------------------------------

    def build(self, length):
        rng = self.rng
        self.slots, self.geometry = choose_topology(rng)
        need = 0
        for count, elt, _ in self.geometry["pools"]:
            need += count * (stride(elt) + 32) + 4096
        for count, _ in self.geometry["rings"]:
            need += 16 * count + 4096
        self.shm = ShareMem(need + (256 << 10))
        self.pools = [Mempool(c, e, f, shm=self.shm) for c, e, f in self.geometry["pools"]]
        self.rings = [Ring(c, f, shm=self.shm) for c, f in self.geometry["rings"]]
        self.state = mmap.mmap(-1, STATE_SLOTS)
        self.start = now()
        self.deadline = self.start + length
        shutdown_at = None
        self.kill_shutter = False
        if rng.random() < self.opts.shutdown_prob:
            rng.choice([s for s in self.slots if s.role == "producer"]).shutter = True
            shutdown_at = self.start + rng.uniform(0.3, max(0.4, length - 0.3))
            self.kill_shutter = rng.random() < 0.5  # aim a kill inside shutdown(immediate=True)
        self.ctx = Ctx(round_seed=self.seed, shm=self.shm, pools=self.pools, rings=self.rings,
                       elts=[e for _, e, _ in self.geometry["pools"]], deadline=self.deadline,
                       shutdown_at=shutdown_at, logdir=self.logdir, state=self.state, start=self.start,
                       slots=self.slots, inject=frozenset(self.opts.inject), aim_at_shutdown=self.kill_shutter)
        self.kill_mean = rng.choice([rng.uniform(0.02, 0.08), rng.uniform(0.08, 0.4), rng.uniform(0.08, 0.4)])
        self.workers = {}
        self.alive = {}  # pid -> Worker
        self.next_wid = 1
        self.kills = []  # kill events: {"t", "dead", "victims": [(role, wid, in_call)]}

    def start_worker(self, slot):
        style = choose_style(self.rng, slot)
        wid = self.next_wid
        self.next_wid += 1
        pid = spawn(self.ctx, slot, wid, style, self.rng.getrandbits(64))
        w = Worker(wid, slot, style, pid, now())
        self.workers[wid] = w
        self.alive[pid] = w
        self.r["workers"] += 1
        return w

    # -- the round ------------------------------------------------------------------------

    def reap_one(self, w, status):
        w.status = exit_status(status)
        w.ended = now()
        self.alive.pop(w.pid, None)

    def check_exit(self, w, expected_early):
        if w.status != 0:
            self.r["bad_exits"] += 1
            self.fail(f"{w.slot.role} w{w.wid} (pid {w.pid}) exited with status {w.status}: "
                      f"{tail(os.path.join(self.logdir, f'w{w.wid}.err'))}")
        elif not expected_early:
            self.r["bad_exits"] += 1
            self.fail(f"{w.slot.role} w{w.wid} exited before the round's end with nothing shut down")

    def any_shut(self):
        return any(r.is_shutdown for r in self.rings)

    def wait_dead(self, ws):
        for w in ws:
            limit = now() + 10.0
            while True:
                cid, status = os.waitpid(w.pid, os.WNOHANG)
                if cid == w.pid:
                    break
                if now() > limit:  # SIGKILL not delivered in 10 s: a kernel-level hang
                    self.r["hangs"] += 1
                    self.fail(f"w{w.wid} (pid {w.pid}) still alive 10 s after SIGKILL")
                    cid, status = os.waitpid(w.pid, 0)
                    break
                time.sleep(0.0005)
            self.reap_one(w, status)
            w.dead_at = now()
            if w.status != -signal.SIGKILL:
                # It ended on its own just before the kill.
                w.killed_at = None
                self.check_exit(w, self.any_shut() or now() >= self.deadline - 0.05)

    def _sigkill(self, w):
        in_call = self.state[2 * w.wid % STATE_SLOTS]
        t = now()
        os.kill(w.pid, signal.SIGKILL)
        w.killed_at = t
        return t, in_call

    def kill(self, ws, how="at_once"):
        """SIGKILL ws and reap them, then schedule their replacements. `how`:
        - "at_once": all of ws, one right after the other;
        - "then_supervisor": ws is [worker, supervisor]: the supervisor dies once it has
          started a reclaim() after the worker's death (or 50 ms later), a random 0-300 us
          into it: often while it repairs for the worker;
        - "newborn": ws is [worker]: once it is dead its replacement starts at once and is
          killed 0-3 ms later (in its interpreter's fork aftermath, joining the region's
          member table, or in its first calls); then it is replaced again."""
        victims = []
        if how == "newborn":
            w = ws[0]
            t0, in_call = self._sigkill(w)
            victims.append((w, in_call))
            self.wait_dead([w])
            nw = self.start_worker(w.slot)
            until = now() + self.rng.uniform(0.0, 0.003)
            while now() < until:
                pass
            _, in_call = self._sigkill(nw)
            victims.append((nw, in_call))
            self.wait_dead([nw])
        elif how == "then_supervisor":
            w, sup = ws
            t0, in_call = self._sigkill(w)
            victims.append((w, in_call))
            self.wait_dead([w])
            at = 2 * sup.wid % STATE_SLOTS
            c0 = self.state[at + 1]
            limit = now() + 0.05
            while now() < limit and not (self.state[at + 1] != c0 and self.state[at]):
                pass
            until = now() + self.rng.uniform(0.0, 0.0003)
            while now() < until:
                pass
            _, in_call = self._sigkill(sup)
            victims.append((sup, in_call))
            self.wait_dead([sup])
        else:
            t0 = None
            for w in ws:
                t, in_call = self._sigkill(w)
                t0 = t if t0 is None else t0
                victims.append((w, in_call))
            self.wait_dead(ws)
        event = {"t": t0, "dead": now(), "victims": []}
        for w, in_call in victims:
            if w.killed_at is None:
                continue
            role = w.slot.role
            self.r["kills"][role] += 1
            self.r["kills_in_call"][role] += bool(in_call)
            event["victims"].append((role, w.wid, in_call))
            if role == "consumer":
                self.r["consumer_deaths"] += 1
                self.r["max_claim"] = max(self.r["max_claim"], w.claim)
        if event["victims"]:
            self.kills.append(event)
            self.r["kill_events"] += 1
        for slot in {w.slot.sid: w.slot for w, _ in victims}.values():
            self.pending.append((now() + self.rng.uniform(0.0, 0.03), slot))

    def kill_in_shutdown(self):
        """Kill the producer that shuts the rings down a random 0-40 us after it starts its
        shutdown(immediate=True) calls (whose drain puts the queued blocks back)."""
        shutter = [w for w in self.alive.values() if w.slot.shutter]
        if not shutter:
            return
        w = shutter[0]
        at = 2 * w.wid % STATE_SLOTS
        limit = now() + 0.2
        while now() < limit and self.state[at] != 3:
            pass
        if self.state[at] != 3:
            return
        self.state[at + 1] = 0xAA
        until = now() + self.rng.uniform(0.0, 0.00004)
        while now() < until:
            pass
        self.kill([w])
        if w.killed_at is not None:
            self.r["shutter_kills"] += 1
            # Interrupted: a ring still open, or still holding entries the drain did not reach.
            self.r["shutdowns_interrupted"] += any(not r.is_shutdown or len(r) for r in self.rings)

    def pick_victims(self):
        """(workers, how): see kill()."""
        rng = self.rng
        alive = list(self.alive.values())
        if not alive:
            return [], "at_once"
        sup = [w for w in alive if w.slot.role == "supervisor"]
        others = [w for w in alive if w.slot.role != "supervisor"]
        x = rng.random()
        if x < 0.15 and len(alive) >= 2:
            self.r["double_kills"] += 1
            return rng.sample(alive, 2), "at_once"
        if x < 0.30 and sup and others:
            self.r["worker_then_supervisor"] += 1
            return [rng.choice(others), sup[0]], "then_supervisor"
        weights = [0.12 if w.slot.role == "supervisor" else 1.0 for w in alive]
        if x < 0.40:
            self.r["newborn_kills"] += 1
            return rng.choices(alive, weights)[:1], "newborn"
        return rng.choices(alive, weights)[:1], "at_once"

    def run(self, length):
        self.build(length)
        self.pending = []
        for s in self.slots:
            self.start_worker(s)
        shut_seen = None
        next_kill = self.start + self.rng.uniform(0.05, 0.3)
        while True:
            t = now()
            for pid, w in list(self.alive.items()):
                cid, status = os.waitpid(pid, os.WNOHANG)
                if cid == pid:
                    self.reap_one(w, status)
                    early_ok = self.any_shut() or t >= self.deadline - 0.05
                    self.check_exit(w, early_ok)
                    if not early_ok and t < self.deadline:
                        self.pending.append((t, w.slot))
            if shut_seen is None and self.any_shut():
                shut_seen = t
            if t >= self.deadline:
                break
            if shut_seen is not None and not self.alive and not self.pending:
                break
            due = [p for p in self.pending if p[0] <= t]
            if due:
                self.pending = [p for p in self.pending if p[0] > t]
                for _, slot in due:
                    self.start_worker(slot)
            if self.kill_shutter and t >= self.ctx.shutdown_at - 0.002:
                self.kill_shutter = False
                self.kill_in_shutdown()
            if shut_seen is None and t >= next_kill and t < self.deadline - KILL_STOP:
                ws, how = self.pick_victims()
                if ws:
                    self.kill(ws, how)
                next_kill = now() + self.rng.expovariate(1.0 / self.kill_mean)
            time.sleep(0.002)
        # Stop: a graceful shutdown wakes every waiter; each child then ends by itself.
        self.stop_time = now()
        for r in self.rings:
            r.shutdown()
        limit = max(self.deadline, self.stop_time) + self.opts.hang_guard
        while self.alive:
            for pid, w in list(self.alive.items()):
                cid, status = os.waitpid(pid, os.WNOHANG)
                if cid == pid:
                    self.reap_one(w, status)
                    self.check_exit(w, True)
            if self.alive and now() > limit:
                for pid, w in list(self.alive.items()):
                    os.kill(pid, signal.SIGUSR1)  # faulthandler: dump its Python stack
                time.sleep(1.0)
                for pid, w in list(self.alive.items()):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    self.r["hangs"] += 1
                    self.fail(f"hang: {w.slot.role} w{w.wid} (pid {pid}, style {w.style}) still running "
                              f"{self.opts.hang_guard:g} s after the round's end; stack:\n"
                              f"{tail(os.path.join(self.logdir, f'w{w.wid}.err'), 4000)}")
                    self.alive.pop(pid)
                break
            time.sleep(0.005)
        try:
            self.verify()
        except Exception:  # noqa: BLE001 - a pyshm call failing in the parent is a finding
            self.r["errors"] += 1
            self.fail(f"the parent's checks raised:\n{traceback.format_exc()}")
        try:
            self.teardown()
        except Exception:  # noqa: BLE001
            self.r["errors"] += 1
            self.fail(f"cleanup raised:\n{traceback.format_exc()}")
        return self.r, self.failures, self.notes

    # -- after the round ------------------------------------------------------------------

    def put_back(self, view, hint):
        try:
            return pool_of(self.ctx, view, hint)
        except (ValueError, PyshmError) as exc:
            self.fail(f"parent could not put back a drained block: {exc!r}")
            view.release()
            return None

    def verify(self):
        r = self.r
        pools, rings = self.pools, self.rings
        r["reclaimed_at_end"] = pools[0].reclaim()
        parent_log = []
        for ri, ring in enumerate(rings):
            for _ in range(100000):
                try:
                    views = ring.dequeue_many(64)
                except (EmptyError, ShutDown):
                    break
                except CorruptionError as exc:
                    r["corrupt"] += 1
                    self.fail(f"parent drain of ring {ri}: CorruptionError {exc}")
                    continue
                t = now()
                for v in views:
                    item = read_stamp(v, len(v)) if len(v) >= STAMP else None
                    if item is None:
                        r["corrupt"] += 1
                        self.fail(f"parent drain of ring {ri}: bad stamp {bytes(v[:24]).hex()}")
                        self.put_back(v, None)
                    else:
                        parent_log.append((item[0], item[1], item[2], t, ri))
                        self.put_back(v, item[3])
            ring.shutdown(immediate=True)  # puts back what an immediate shutdown left queued
            if len(ring):
                self.fail(f"ring {ri} still holds {len(ring)} entries after the drain")
        short = sum(p.count - p.free_count for p in pools)
        extra = 0
        while short and extra < 5:
            extra += 1
            time.sleep(0.05)
            r["reclaimed_at_end"] += pools[0].reclaim()
            short = sum(p.count - p.free_count for p in pools)
        if extra and not short:
            r["extra_reclaims_needed"] = extra
            self.notes.append(f"blocks were missing after the first reclaim(); all back after {extra} more")
        if short:
            r["blocks_lost"] = short
            self.fail(f"blocks lost: {[(p.count, p.free_count) for p in pools]} (count, free) after reclaim and drain")
        # What every free block holds now (for messages an immediate shutdown put back).
        self.block_stamps = set()
        self.block_other = 0
        for pi, pool in enumerate(pools):
            views = []
            while True:
                try:
                    views += pool.get_many(pool.count)
                except EmptyError:
                    break
            for v in views:
                item = read_stamp(v, len(v))
                if item is not None:
                    self.block_stamps.add((item[0], item[2]))
                elif not is_zero(v, len(v)):
                    self.block_other += 1
            if views:
                pool.put_many(views)
        self.analyse(parent_log)

    def analyse(self, parent_log):
        r = self.r
        intents, confirmed, aborted = {}, set(), set()
        shut_start = None
        deliveries = []  # per consumer: [(pwid, ring, seq, t, ring_consumed)]
        dead_consumers = {}  # ring -> [(death time, claim)]
        for w in self.workers.values():
            lines = read_lines(os.path.join(self.logdir, f"w{w.wid}.log"))
            role = w.slot.role
            for ln in lines:
                tag = ln[0]
                if tag == "P":
                    r["put_refusals"] += 1
                elif tag == "H":
                    r["exited_holding"] += int(ln[1])
            if role == "producer":
                for ln in lines:
                    tag = ln[0]
                    if tag == "I":
                        intents[(w.wid, int(ln[2]))] = (int(ln[1]), float(ln[4]))
                    elif tag == "C":
                        confirmed.add((w.wid, int(ln[2])))
                    elif tag == "A":
                        aborted.add((w.wid, int(ln[2])))
                    elif tag == "S":
                        t = float(ln[1])
                        shut_start = t if shut_start is None else min(shut_start, t)
            elif role == "consumer":
                ring = w.slot.rings[0]
                mine = []
                for ln in lines:
                    if ln[0] == "D":
                        mine.append((int(ln[1]), int(ln[2]), int(ln[3]), float(ln[5]), ring))
                    elif ln[0] == "X":
                        r["corrupt"] += 1
                        self.fail(f"consumer w{w.wid} on ring {ring}: {' '.join(ln[2:])}")
                deliveries.append((f"w{w.wid}", mine))
                if w.killed_at is not None or w.status != 0:
                    dead_consumers.setdefault(ring, []).append((w.dead_at or w.ended, w.claim))
            elif role == "supervisor":
                for ln in lines:
                    if ln[0] == "R":
                        r["reclaimed_by_supervisors"] += int(ln[2])
        if shut_start is not None:
            r["shutdown"] = 1
        deliveries.append(("parent", parent_log))
        r["sent"] = len(confirmed)

        count = {}
        last_before_shut = {}  # (pwid, ring) -> highest seq delivered before the shutdown began
        for who, mine in deliveries:
            last = {}
            for pwid, ring, seq, t, consumed in mine:
                key = (pwid, seq)
                count[key] = count.get(key, 0) + 1
                if ring != consumed:
                    r["corrupt"] += 1
                    self.fail(f"{who}: message {key} of ring {ring} dequeued from ring {consumed}")
                if key not in intents:
                    r["phantom"] += 1
                    self.fail(f"{who}: delivered {key} on ring {ring}, which no producer intended")
                elif key in aborted:
                    r["phantom"] += 1
                    self.fail(f"{who}: delivered {key}, whose enqueue reported failure (Full/ShutDown)")
                elif key not in confirmed:
                    r["intent_only_delivered"] += 1
                lk = (pwid, ring)
                if lk in last and seq <= last[lk]:
                    r["fifo_violations"] += 1
                    self.fail(f"{who}: FIFO: {key} on ring {ring} after seq {last[lk]} of the same producer")
                last[lk] = max(seq, last.get(lk, -1))
                if shut_start is None or t < shut_start:
                    last_before_shut[lk] = max(seq, last_before_shut.get(lk, -1))
        r["delivered"] = len(count)
        r["delivered_by_parent"] = len(parent_log)
        dups = {k: c for k, c in count.items() if c > 1}
        if dups:
            r["duplicated"] += sum(c - 1 for c in dups.values())
            self.fail(f"duplicated: {sorted(dups.items())[:10]}")

        # Lost: confirmed, never delivered, not excused.
        excused = {}
        bound = {ring: sum(c for _, c in v) for ring, v in dead_consumers.items()}
        unexplained_shut = []
        lost = []
        for key in sorted(confirmed):
            if key in count:
                continue
            r["undelivered"] += 1
            ring, t_int = intents.get(key, (None, 0.0))
            if ring is None:
                self.fail(f"message {key} confirmed without an intent line")
                continue
            overtaken = last_before_shut.get((key[0], ring), -1) > key[1]
            if shut_start is not None and not overtaken and key in self.block_stamps:
                r["dropped_by_shutdown"] += 1
                continue
            if any(d > t_int for d, _ in dead_consumers.get(ring, [])):
                excused[ring] = excused.get(ring, 0) + 1
                continue
            if shut_start is not None and not overtaken:
                unexplained_shut.append(key)
                continue
            lost.append(key)
        for ring, n in excused.items():
            r["excused_by_consumer_death"] += min(n, bound.get(ring, 0))
            if n > bound.get(ring, 0):
                r["lost"] += n - bound[ring]
                self.fail(f"lost: ring {ring}: {n} undelivered messages for {len(dead_consumers[ring])} dead "
                          f"consumers that could claim {bound[ring]} in all")
        # Drained blocks that a producer got again before it saw the shutdown hold its new
        # stamp (intended after the shutdown began, or not logged at all if it was killed
        # first), or a torn one: each may have held one of the messages not found.
        allowance = self.block_other + sum(
            1 for k in self.block_stamps
            if k not in confirmed and (k not in intents or intents[k][1] >= (shut_start or 0.0)))
        if len(unexplained_shut) > allowance:
            extra = len(unexplained_shut) - allowance
            r["lost"] += extra
            self.fail(f"lost: {extra} confirmed messages neither delivered nor put back by the shutdown: "
                      f"{unexplained_shut[:10]}")
        else:
            r["dropped_by_shutdown"] += len(unexplained_shut)
        if lost:
            r["lost"] += len(lost)
            self.fail(f"lost: {len(lost)} confirmed messages never delivered, no consumer of their ring died "
                      f"after they were enqueued: {lost[:10]} (intents {[intents[k] for k in lost[:3]]})")

        # Flow: after each kill, deliveries on every ring.
        times = {ring: [] for ring in range(len(self.rings))}
        for who, mine in deliveries:
            if who == "parent":
                continue
            for _, ring, _, t, consumed in mine:
                times[consumed].append(t)
        for v in times.values():
            v.sort()
        end = self.deadline if shut_start is None else min(self.deadline, shut_start)
        stuck = []
        for ev in self.kills:
            if ev["t"] > end - FLOW_WINDOW:
                continue
            r["flow_checked"] += 1
            for ring, ts in times.items():
                i = bisect.bisect_right(ts, ev["dead"] + FLOW_AFTER)
                first = bisect.bisect_right(ts, ev["t"])
                if first < len(ts):
                    r["max_flow_gap"] = max(r["max_flow_gap"], ts[first] - ev["t"])
                if i >= len(ts) or ts[i] > end:
                    nxt = ts[first] - ev["t"] if first < len(ts) else None
                    stuck.append((round(ev["t"] - self.start, 3), ring, ev["victims"], nxt))
        if stuck:
            r["stuck"] = 1
            self.fail(f"stuck: no delivery after kill (t from round start, ring, victims, next delivery after): "
                      f"{stuck[:5]} (round end at {end - self.start:.3f})")

    def teardown(self):
        for x in self.rings + self.pools:
            x.cleanup()
        self.shm.cleanup()
        self.state.close()

    def describe(self):
        return {"geometry": self.geometry,
                "slots": [(s.role, s.rings, s.pools, s.may_put, s.shutter) for s in self.slots]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("PYSHM_SOAK_SECONDS", "60")),
                    help="time budget (default: $PYSHM_SOAK_SECONDS or 60)")
    ap.add_argument("--seed", type=int, default=None, help="master seed (default: random, printed)")
    ap.add_argument("--round-seed", type=int, default=None, help="run exactly one round with this seed")
    ap.add_argument("--min-round", type=float, default=3.0)
    ap.add_argument("--max-round", type=float, default=7.0)
    ap.add_argument("--shutdown-prob", type=float, default=0.2)
    ap.add_argument("--hang-guard", type=float, default=HANG_GUARD,
                    help="a child still running this long after its round's end is hung (default %(default)s)")
    ap.add_argument("--inject", default="", help="comma-separated faults to plant in the workers, to check "
                    "that the checks catch them: lose, dup, reorder, corrupt, stuck, hang")
    ap.add_argument("--keep-logs", default=None, help="directory for the logs of failing rounds")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per round on stderr")
    opts = ap.parse_args(argv)
    opts.inject = [x for x in opts.inject.split(",") if x]
    unknown = set(opts.inject) - {"lose", "dup", "reorder", "corrupt", "stuck", "hang"}
    if unknown:
        ap.error(f"unknown --inject {sorted(unknown)}")
    seed = opts.seed if opts.seed is not None else random.SystemRandom().getrandbits(32)
    master = random.Random(seed)
    keep = opts.keep_logs or tempfile.mkdtemp(prefix="pyshm-soak-failed-")
    summary = {
        "seed": seed, "seconds": opts.seconds, "rounds": 0,
        "kills": {"producer": 0, "consumer": 0, "supervisor": 0, "total": 0},
        "kills_in_call": {"producer": 0, "consumer": 0, "supervisor": 0},
        "kill_events": 0, "double_kills": 0, "worker_then_supervisor": 0, "newborn_kills": 0,
        "shutdown_rounds": 0,
        "sent": 0, "delivered": 0, "lost": 0, "duplicated": 0, "corrupt": 0, "phantom": 0,
        "fifo_violations": 0, "hangs": 0, "stuck_rounds": 0, "blocks_lost": 0, "bad_exits": 0, "errors": 0,
        "undelivered": 0, "excused_by_consumer_death": 0, "dropped_by_shutdown": 0,
        "intent_only_delivered": 0, "consumer_deaths": 0, "max_claim": 0,
        "reclaimed_by_supervisors": 0, "reclaimed_at_end": 0, "extra_reclaims_needed": 0,
        "flow_checked_kills": 0, "max_flow_gap_s": 0.0, "put_refusals": 0, "exited_holding": 0,
        "workers_started": 0, "shutter_kills": 0, "shutdowns_interrupted": 0,
        "failing_rounds": [], "logs": None,
    }
    t_start = now()
    with tempfile.TemporaryDirectory(prefix="pyshm-soak-") as work:
        while True:
            if opts.round_seed is not None:
                if summary["rounds"]:
                    break
                round_seed = opts.round_seed
                length = random.Random(round_seed ^ 0x5EED).uniform(opts.min_round, opts.max_round)
            else:
                left = opts.seconds - (now() - t_start)
                if summary["rounds"] and left < min(opts.min_round, 2.0) + 0.5:
                    break
                round_seed = master.getrandbits(48)
                length = random.Random(round_seed ^ 0x5EED).uniform(opts.min_round, opts.max_round)
                length = max(2.0, min(length, left - 0.5))
            rd = Round(round_seed, work, opts)
            res, failures, notes = rd.run(length)
            summary["rounds"] += 1
            for role in ("producer", "consumer", "supervisor"):
                summary["kills"][role] += res["kills"][role]
                summary["kills"]["total"] += res["kills"][role]
                summary["kills_in_call"][role] += res["kills_in_call"][role]
            for k in ("kill_events", "double_kills", "worker_then_supervisor", "newborn_kills", "sent", "delivered", "lost",
                      "duplicated", "corrupt", "phantom", "fifo_violations", "hangs", "blocks_lost",
                      "bad_exits", "errors", "undelivered", "excused_by_consumer_death", "dropped_by_shutdown",
                      "intent_only_delivered", "consumer_deaths", "reclaimed_by_supervisors",
                      "reclaimed_at_end", "extra_reclaims_needed", "put_refusals", "exited_holding",
                      "shutter_kills", "shutdowns_interrupted"):
                summary[k] += res[k]
            summary["workers_started"] += res["workers"]
            summary["shutdown_rounds"] += res["shutdown"]
            summary["stuck_rounds"] += res["stuck"]
            summary["flow_checked_kills"] += res["flow_checked"]
            summary["max_claim"] = max(summary["max_claim"], res["max_claim"])
            summary["max_flow_gap_s"] = round(max(summary["max_flow_gap_s"], res["max_flow_gap"]), 3)
            bad = any(res[k] for k in ("lost", "duplicated", "corrupt", "phantom", "fifo_violations", "hangs",
                                       "stuck", "blocks_lost", "bad_exits", "errors"))
            if opts.verbose:
                print(f"round {summary['rounds']} seed {round_seed} len {length:.1f}s: "
                      f"kills {sum(res['kills'].values())} sent {res['sent']} delivered {res['delivered']} "
                      f"lost {res['lost']} dup {res['duplicated']} corrupt {res['corrupt']} "
                      f"stuck {res['stuck']} hangs {res['hangs']} shutdown {res['shutdown']}"
                      f"{' FAIL' if bad else ''}", file=sys.stderr, flush=True)
            if bad or failures or (notes and opts.verbose):
                for f in failures + notes:
                    print(f"round seed {round_seed}: {f}", file=sys.stderr, flush=True)
            if bad:
                dest = os.path.join(keep, f"round-{round_seed}")
                shutil.copytree(rd.logdir, dest)
                with open(os.path.join(dest, "round.json"), "w") as f:
                    json.dump({"round_seed": round_seed, "length": length, "result": res,
                               "failures": failures, **rd.describe()}, f, indent=1, default=str)
                summary["failing_rounds"].append({
                    "round_seed": round_seed,
                    "reproduce": f"python {os.path.relpath(HERE)} --round-seed {round_seed}",
                    "what": [f.splitlines()[0][:300] for f in failures][:8],
                })
                summary["logs"] = keep
            shutil.rmtree(rd.logdir, ignore_errors=True)
    if not summary["failing_rounds"] and opts.keep_logs is None:
        shutil.rmtree(keep, ignore_errors=True)
    summary["elapsed_s"] = round(now() - t_start, 1)
    summary["reproduce"] = f"python {os.path.relpath(HERE)} --seconds {opts.seconds:g} --seed {seed}"
    print(json.dumps(summary), flush=True)
    must_be_zero = ("lost", "duplicated", "corrupt", "phantom", "fifo_violations", "hangs", "stuck_rounds",
                    "blocks_lost", "bad_exits", "errors")
    return 0 if all(summary[k] == 0 for k in must_be_zero) else 1


if __name__ == "__main__":
    sys.exit(main())
