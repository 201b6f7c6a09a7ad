#!/usr/bin/env python3
"""Write the seed corpus of tests/fuzz/fuzz_core.c: small programs, one per file.

    python3 tests/fuzz/make_corpus.py [DIR]     (default: tests/fuzz/corpus beside this file)

Each seed is a program in the harness's input format (see the comment at the top of
fuzz_core.c): a u16 region size code, then operations, each an opcode byte and its
arguments. The programs start the fuzzer at the interesting states: every operation in a
clean region (checked against the harness's model), members that die at every step of a
get, put, enqueue or dequeue and the repairs after them, members stalled in the way of
others, queues moved to just below 2^64, regions that fit exactly, and each kind of
corrupting write followed by the operations that read what it wrote. The output is
deterministic, so the committed corpus can be regenerated and diffed.
"""
import os
import struct
import sys

# Opcodes: the order of the OP_ enum in fuzz_core.c.
(POOL_CREATE, RING_CREATE, RAW_CREATE, GET, PUT, ENQ, DEQ, DRAIN, SHUTDOWN, FIND_NAMED, TABLE_FIND,
 POOL_ATTACH, RING_ATTACH, RAW_ATTACH, REOPEN_S2, REPAIR, BLOCK_WRITE, RAW_WRITE, COUNTS, GHOST_NEW,
 GHOST_GET, GHOST_STEP, GHOST_END, FAST_FORWARD, W_REGION_HDR, W_MEMBER, W_OBJ_HDR, W_POOL_GEOM,
 W_RING_HDR, W_RAW_HDR, W_COUNTER, W_SLOT, W_STATE, W_RAW, W_FORGE_POOL, W_FORGE_RING) = range(36)

# Names: the harness's names[] table.
NO_NAME, EMPTY, N0, N1, N2, N3, N4, N5, TOO_LONG = range(9)
S1, S2 = 0, 1
# Put / enqueue variants (| ANYONES: blocks held by any member, not only the actor's).
AS_HELD, STALE_DOWN, STALE_UP, OUT_OF_RANGE, OTHER_POOL, TWICE = range(6)
ANYONES = 0x40
# Ghost steps (bit 3 of the kind byte: on a Ring; bit 4: the consumers' side).
G_GET, G_PUT, G_ENQ, G_DEQ, G_ANNOUNCE, G_MIDWRITE = range(6)
STALL, DIE = 0, 1

MIN_REGION = 4096
OBJECTS_OFFSET = 64 + 64 + 256 * 128


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def size_code(size):
    """The u16 that gives a region of `size` bytes (4096 + v, or 4096 + 64 v' above 36863)."""
    v = size - MIN_REGION
    assert v >= 0
    if v < 32768:
        return u16(v)
    assert v % 64 == 0
    return u16(32768 + v // 64)


# ---- value specs (pick_value) and known offsets (known_offset) ---------------------------
def known(sel, k=0, i=0):
    """sel 0 object, 1 block i of pool k, 2 ring k, 3 end - 64 k, 4 pool part i%3, 5 carve end,
    6 member entry k, 7 a queue's id (i odd: a Ring's)."""
    return u8(sel) + u8(k) + u8(i)


def v_small(v):
    return u8(0) + u8(v)


def v_u64(v):
    return u8(1) + u64(v)


def v_known(sel, k=0, i=0, delta=0):
    return u8(2) + known(sel, k, i) + u8(delta)


def v_delta(d):
    return u8(3) + u16(d)


def v_special(k):
    return u8(4) + u8(k)


def v_state(gen_delta, kind):
    return u8(5) + u8(gen_delta) + u8(kind)


def v_seq(delta):
    return u8(6) + u8(delta)


def v_u32(v):
    return u8(7) + u32(v)


# ---- operations -------------------------------------------------------------------------
def pool_create(count, elt, flags=0, name=NO_NAME, space=S1):
    return u8(POOL_CREATE) + u8(space) + u16(count - 1) + u16(elt - 1) + u8(flags) + u8(name)


def ring_create(cap, flags=0, name=NO_NAME, space=S1):
    return u8(RING_CREATE) + u8(space) + u16(cap - 1) + u8(flags) + u8(name)


def raw_create(size, name=NO_NAME, space=S1):
    return u8(RAW_CREATE) + u8(space) + u16(size - 1) + u8(name)


def pool(space=S1, index=0):
    return u8(space | index << 1)


def get(p=0, actor=S1, n=1, space=S1):
    return u8(GET) + pool(space, p) + u8(actor) + u8(n)


def put(n=1, start=0, variant=AS_HELD, actor=S1, at=0):
    return u8(PUT) + u8(actor) + u8(n) + u8(start) + u8(variant | (at & 7) << 3)


def enq(ring=0, n=1, start=0, variant=AS_HELD, actor=S1, at=0):
    return u8(ENQ) + u8(ring) + u8(actor) + u8(n) + u8(start) + u8(variant | (at & 7) << 3)


def deq(ring=0, n=1, actor=S1, min_size=0):
    return u8(DEQ) + u8(ring) + u8(actor) + u8(n) + u16(min_size * 2 + 1 if min_size else 0)


def drain(ring=0, actor=S1):
    return u8(DRAIN) + u8(ring) + u8(actor)


def shutdown(ring=0, immediate=0):
    return u8(SHUTDOWN) + u8(ring) + u8(immediate)


def find_named(name, space=S1):
    return u8(FIND_NAMED) + u8(space) + u8(name)


def table_find(value, base=known(1), space=S1):
    return u8(TABLE_FIND) + u8(space) + base + value


def pool_attach(value, base=known(0), space=S1, add=1):
    return u8(POOL_ATTACH) + u8(space) + base + value + u8(add)


def ring_attach(value, base=known(2), space=S1):
    return u8(RING_ATTACH) + u8(space) + base + value


def raw_attach(value, base=known(0), space=S1):
    return u8(RAW_ATTACH) + u8(space) + base + value


def reopen():
    return u8(REOPEN_S2)


def repair(space=S1, only_after=0):
    return u8(REPAIR) + u8(space) + u8(only_after)


def block_write(sel=0, at=0, length=16, byte=0xAB):
    return u8(BLOCK_WRITE) + u8(sel) + u16(at) + u8(length) + u8(byte)


def raw_write(sel=0, at=0, length=16, byte=0xCD):
    return u8(RAW_WRITE) + u8(sel) + u16(at) + u8(length) + u8(byte)


def counts():
    return u8(COUNTS)


def ghost_new():
    return u8(GHOST_NEW)


def ghost_get(g=0, p=0, n=1, space=S1):
    return u8(GHOST_GET) + u8(g) + pool(space, p) + u8(n)


def ghost_step(kind, target=0, n=1, progress=0, then=DIE, g=0, space=S1, dequeue_side=False, on_ring=False):
    """kind G_*: G_GET / G_PUT on pool `target`, G_ENQ / G_DEQ on Ring `target`, G_ANNOUNCE on
    pool `target` (or Ring, on_ring). n: positions (1 + n % capacity); progress: the step reached."""
    k = kind | (8 if on_ring else 0) | (16 if dequeue_side else 0)
    sel = u8(target) if kind in (G_ENQ, G_DEQ) or (kind >= G_ANNOUNCE and on_ring) else pool(space, target)
    return u8(GHOST_STEP) + u8(g) + u8(k) + u8(n - 1) + u8(progress) + u8(then) + sel


def ghost_end(g=0, killed=1):
    return u8(GHOST_END) + u8(g) + u8(killed)


def fast_forward(ring=None, p=0, k=3):
    if ring is not None:
        return u8(FAST_FORWARD) + u8(1) + u16(k) + u8(ring)
    return u8(FAST_FORWARD) + u8(0) + u16(k) + pool(S1, p)


# Region header fields: magic, layout_version, header_size, size, carve_end, objects_head, reserved.
def w_region(field, value):
    return u8(W_REGION_HDR) + u8(field) + value


# Member entry fields: owner, ann_seq, what, pos, n, held, pid, pidns, pidfs.
def w_member(entry, field, value=b"", owner=None, pid=None):
    if field == 0:
        if owner is not None:
            return u8(W_MEMBER) + u8(entry) + u8(0) + u8(1) + u8(owner[0]) + u8(owner[1])
        return u8(W_MEMBER) + u8(entry) + u8(0) + u8(0) + value
    if field == 6:
        if pid is not None:
            return u8(W_MEMBER) + u8(entry) + u8(6) + u8(1) + u8(pid)
        return u8(W_MEMBER) + u8(entry) + u8(6) + u8(0) + value
    return u8(W_MEMBER) + u8(entry) + u8(field) + value


# Object header fields: magic, kind, layout_version, size, next, name byte.
def w_obj(obj, field, value):
    return u8(W_OBJ_HDR) + u8(field) + u8(obj << 1) + value


def w_obj_name(obj, i, c):
    return u8(W_OBJ_HDR) + u8(5) + u8(obj << 1) + u8(i) + u8(c)


# Pool geometry: count, elt_size, stride, flags, slots, states, holders, data.
def w_geom(obj, field, value):
    return u8(W_POOL_GEOM) + u8(field) + u8(obj << 1) + value


# Ring header: capacity, flags, slots_offset, shutdown.
def w_ring(obj, field, value):
    return u8(W_RING_HDR) + u8(field) + u8(obj << 1) + value


def w_raw_hdr(obj, field, value):
    return u8(W_RAW_HDR) + u8(field) + u8(obj << 1) + value


def queue(ring=None, p=0):
    return u8(1) + u8(ring) if ring is not None else u8(0) + pool(S1, p)


# Counters: enq_pos, deq_pos, not_empty.epoch, not_empty.marker, not_full.epoch, not_full.marker.
def w_counter(q, field, value):
    return u8(W_COUNTER) + q + u8(field) + value


def w_slot(q, slot, value_field, value):
    """value_field 0: seq, 1: value."""
    return u8(W_SLOT) + q + u16(slot) + u8(value_field) + value


def w_state(p, index, holder, value):
    return u8(W_STATE) + pool(S1, p) + u16(index) + u8(1 if holder else 0) + value


def w_raw(at, data):
    return u8(W_RAW) + u32(at) + u8(len(data) - 1) + bytes(data)


def forge_pool(count, elt, at=None, base=None, flags=0, opts=3, name=NO_NAME, count_scale=0, elt_scale=0):
    """A consistent pool header at value spec `at` over known offset `base` (default: the
    carve end, past every real object). opts 1: push on the object list, 2: zero its queue
    (a fresh full pool), 8: claim a size that just fits the region. A scale byte s with
    s % 4 == 3 shifts the number left by s / 4 % 30."""
    at = v_delta(0) if at is None else at
    base = known(5) if base is None else base
    return (u8(W_FORGE_POOL) + base + at + u16(count) + u8(count_scale) + u16(elt) + u8(elt_scale) + u8(flags)
            + u8(opts) + u8(name))


def forge_ring(cap, at=None, base=None, flags=0, opts=3, name=NO_NAME, cap_scale=0):
    """A consistent Ring header; opts 1: push on the list, 2: empty, 4: shut down, 8: as for pools."""
    at = v_delta(0) if at is None else at
    base = known(5) if base is None else base
    return u8(W_FORGE_RING) + base + at + u16(cap) + u8(cap_scale) + u8(flags) + u8(opts) + u8(name)


def program(size, *ops):
    return size_code(size) + b"".join(ops)


# ---- the seeds --------------------------------------------------------------------------
def setup():
    """Two pools (one named, one with both flags) and a named Ring of 8."""
    return pool_create(8, 64, 0, N0) + pool_create(4, 24, 3, N1) + ring_create(8, 0, N2)


def traffic():
    """A round of everything a clean program does after setup()."""
    return b"".join([
        get(0), get(0), get(0, S2, 3), enq(0, 1), enq(0, 1, 1), enq(0, 3, 0),
        deq(0, 1, S1), deq(0, 1, S2), deq(0, 4, S2), put(1), put(4, 0, AS_HELD, S2),
        get(1), enq(0, 1), drain(0, S2), counts(),
    ])


BIG = 1 << 16


def clean_seeds(s):
    s["clean-pool-get-put"] = program(MIN_REGION, pool_create(4, 32), get(), get(), put(), put(), get(0, S1, 4),
                                      get(), put(1, 0, STALE_DOWN), put(1, 0, STALE_UP), put(1, 0, OUT_OF_RANGE),
                                      put(1, 0, ANYONES, S2), put(4), counts())
    s["clean-pool-bursts"] = program(BIG, pool_create(100, 8), get(0, S1, 70), put(79), get(0, S1, 0), put(0),
                                     get(0, S1, 79), put(30, 3, STALE_DOWN, S1, 7), put(30, 0, OTHER_POOL),
                                     put(79), pool_create(3, 8), get(1), get(0), put(2, 0, OTHER_POOL))
    s["clean-ring-pass"] = program(BIG, setup(), traffic(), traffic())
    s["clean-ring-full"] = program(BIG, pool_create(8, 16), ring_create(2), get(0, S1, 8), enq(0, 1), enq(0, 1, 1),
                                   enq(0, 1, 2), enq(0, 3, 3), deq(0), enq(0, 2, 2), deq(0, 2), ring_create(1),
                                   enq(1, 1, 4), enq(1, 1, 5), deq(1), deq(1))
    s["clean-ring-min-size"] = program(BIG, pool_create(4, 16), pool_create(4, 256), ring_create(8),
                                       get(0), get(1), enq(0, 1), enq(0, 1, 1), deq(0, 1, S1, 100), deq(0, 1, S1, 16),
                                       deq(0, 1, S2, 300), deq(0, 1, S2, 256), put(2))
    s["clean-ring-refusals"] = program(BIG, setup(), get(0, S1, 3), enq(0, 3, 0, STALE_UP), enq(0, 2, 0, OUT_OF_RANGE),
                                       enq(0, 1, 0, ANYONES, S2), enq(0, 3), enq(0, 3, 0, STALE_DOWN), deq(0, 8, S2),
                                       put(3, 0, AS_HELD, S1), put(3, 0, AS_HELD, S2))
    s["clean-shutdown-graceful"] = program(BIG, setup(), get(0), get(0), enq(0, 1), shutdown(0, 0), enq(0, 1, 1),
                                           deq(0), deq(0), deq(0, 8), shutdown(0, 1), shutdown(0, 0), drain(0))
    s["clean-shutdown-now"] = program(BIG, setup(), get(0, S1, 4), enq(0, 4), shutdown(0, 1), deq(0),
                                      deq(0, 0, S2), drain(0, S2), counts())
    s["clean-names"] = program(BIG, pool_create(2, 8, 0, N0), pool_create(2, 8, 0, N0), ring_create(2, 0, N0),
                               ring_create(2, 0, N1), raw_create(10, N2), raw_create(10, N1),
                               pool_create(2, 8, 0, TOO_LONG), pool_create(2, 8, 0, EMPTY), find_named(N0),
                               find_named(N1, S2), find_named(N2), find_named(EMPTY), find_named(TOO_LONG), reopen(),
                               find_named(N1, S2), find_named(N3))
    s["clean-bad-flags"] = program(MIN_REGION, pool_create(2, 8, 0x84), ring_create(2, 0x88), pool_create(2, 8, 3),
                                   ring_create(2, 3))
    s["clean-table-find"] = program(BIG, pool_create(8, 40), pool_create(3, 100), table_find(v_small(0)),
                                    table_find(v_known(1, 0, 3, 0)), table_find(v_known(1, 1, 2, 0), space=S2),
                                    table_find(v_known(1, 0, 3, 1)), table_find(v_known(1, 0, 7, 48)),
                                    table_find(v_known(0, 0, 0, 0)), table_find(v_u64(1 << 63), space=S2),
                                    table_find(v_special(6)), table_find(v_known(4, 0, 1, 0)))
    s["clean-attach"] = program(BIG, pool_create(8, 40), ring_create(4), raw_create(100), pool_attach(v_known(0, 0)),
                                pool_attach(v_known(0, 1), space=S2), pool_attach(v_known(0, 0, 0, 64)),
                                pool_attach(v_known(0, 0, 0, 1)), ring_attach(v_known(2)),
                                ring_attach(v_known(2, 0, 0, 64), space=S2), ring_attach(v_known(0, 0)),
                                raw_attach(v_known(0, 2)), raw_attach(v_known(0, 1)), pool_attach(v_special(7)),
                                ring_attach(v_special(6)), get(0), put(1))
    s["clean-reopen-walk"] = program(BIG, pool_create(8, 40), reopen(), pool_create(4, 200, 0, NO_NAME, S2),
                                     ring_create(4, 0, NO_NAME, S2), get(1, S2, 1, S2), get(0), enq(0, 1), enq(0, 1, 1),
                                     deq(0, 1, S2), deq(0, 1, S1), reopen(), deq(0, 2, S2), enq(0, 1), reopen(),
                                     drain(0, S2), counts())
    s["clean-block-and-raw-writes"] = program(BIG, pool_create(2, 200), raw_create(300), get(), block_write(0, 0, 63),
                                              block_write(0, 190, 63, 0xFF), raw_write(0, 0, 63), raw_write(0, 290, 63),
                                              put(), get(), get())
    s["clean-fast-forward"] = program(BIG, pool_create(8, 16), ring_create(4), fast_forward(None, 0, 5),
                                      fast_forward(0, 0, 2), get(0, S1, 3), enq(0, 3), deq(0, 2), enq(0, 2, 0),
                                      deq(0, 4, S2), put(5), get(0, S1, 8), put(8), get(0, S1, 8), enq(0, 4), deq(0, 4),
                                      put(8))
    s["clean-s2-leaves-holding"] = program(BIG, setup(), get(0, S2, 3), get(1, S2, 1), enq(0, 1, 0, AS_HELD, S2),
                                           reopen(), put(1, 0, ANYONES), repair(S1, 1), repair(S1, 0), deq(0), put(2),
                                           get(0, S1, 8), put(8))
    s["tiny-min-region"] = program(MIN_REGION, pool_create(1, 1), ring_create(1), raw_create(1), find_named(EMPTY),
                                   reopen(), table_find(v_small(64)), pool_create(200, 8), get(), enq(0, 1), deq(0))
    # A pool that fills the region exactly (448 bytes of header and queue, one block of
    # 3648), then nothing fits; one byte more does not fit at all.
    s["tiny-exact-pool"] = program(MIN_REGION, pool_create(1, 3648), get(), put(), pool_create(1, 1), raw_create(1))
    s["tiny-one-short"] = program(MIN_REGION, pool_create(1, 3649), ring_create(1))
    s["big-region"] = program(1 << 20, pool_create(256, 8), pool_create(10, 2048), ring_create(128),
                              get(0, S1, 79), enq(0, 79), drain(0), get(0, S1, 79), enq(0, 64), deq(0, 79, S2),
                              counts())


def ghost_seeds(s):
    """Members that stop at each step of an operation, die or stall, and the repairs."""
    base = setup()
    after = repair(S1, 1) + repair(S2, 0) + traffic() + get(0, S1, 8) + put(8)
    for progress in range(0, 7):  # get of 3: claimed, took 1..3, released 1..3
        s["ghost-get-%d" % progress] = program(BIG, base, ghost_new(), ghost_step(G_GET, 0, 3, progress), after)
    for progress in range(0, 10):  # put of 3: claimed, staged 1..3, moved 1..3, published 1..3
        s["ghost-put-%d" % progress] = program(BIG, base, ghost_new(), ghost_get(0, 0, 4),
                                               ghost_step(G_PUT, 0, 3, progress), after)
    for progress in (0, 1, 2, 3, 4, 6):  # enqueue of 2
        s["ghost-enqueue-%d" % progress] = program(BIG, base, ghost_new(), ghost_get(0, 0, 2), ghost_get(0, 1, 1),
                                                   ghost_step(G_ENQ, 0, 2, progress), after)
    for progress in (0, 1, 3, 4, 6):  # dequeue of 3
        s["ghost-dequeue-%d" % progress] = program(BIG, base, get(0, S1, 3), enq(0, 3), ghost_new(),
                                                   ghost_step(G_DEQ, 0, 3, progress), after)
    # A ghost that stalls mid-get blocks puts into that free queue until it dies.
    s["ghost-stalled-get"] = program(BIG, pool_create(2, 16), ring_create(4), get(), ghost_new(),
                                     ghost_step(G_GET, 0, 1, 0, STALL), put(), get(), put(), repair(), ghost_end(0),
                                     repair(S2, 1), put(), get(0, S1, 2), put(2))
    s["ghost-stalled-put"] = program(BIG, setup(), ghost_new(), ghost_get(0, 0, 3), ghost_step(G_PUT, 0, 2, 2, STALL),
                                     get(0, S1, 8), repair(), ghost_end(0), repair(), get(0, S1, 8), put(8))
    s["ghost-stalled-enqueue"] = program(BIG, setup(), ghost_new(), ghost_get(0, 0, 2), get(0, S1, 2),
                                         ghost_step(G_ENQ, 0, 2, 1, STALL), enq(0, 2), deq(0, 4), ghost_end(0),
                                         repair(S2), deq(0, 4), deq(0, 4), put(4))
    # A dead ghost lost the race for a position to a stalled (live) one: pending, then done.
    s["ghost-lost-race"] = program(BIG, setup(), ghost_new(), ghost_step(G_ANNOUNCE, 0, 1, 2, STALL, on_ring=True),
                                   ghost_new(), ghost_get(1, 0, 1), ghost_step(G_ENQ, 0, 1, 0, DIE, g=1), repair(),
                                   ghost_end(0), repair(), deq(0), traffic())
    s["ghost-announce-dead"] = program(BIG, setup(), ghost_new(), ghost_step(G_ANNOUNCE, 0, 2, 1, DIE),
                                       ghost_new(), ghost_step(G_ANNOUNCE, 1, 1, 4, DIE, dequeue_side=True), repair(),
                                       traffic())
    s["ghost-several"] = program(BIG, setup(), get(0, S1, 2), enq(0, 2), ghost_new(), ghost_get(0, 0, 2),
                                 ghost_new(), ghost_get(1, 1, 2), ghost_new(), ghost_new(),
                                 ghost_step(G_PUT, 0, 2, 1, DIE, g=0), ghost_step(G_ENQ, 0, 2, 3, DIE, g=1),
                                 ghost_step(G_DEQ, 0, 2, 1, DIE, g=2), ghost_step(G_GET, 0, 3, 2, DIE, g=3),
                                 repair(S2), traffic(), get(0, S1, 8), put(8))
    # Killed between the two stores of its announcement's seqlock: it claimed nothing.
    s["ghost-dies-mid-announcement"] = program(BIG, setup(), ghost_new(), ghost_get(0, 0, 2),
                                               ghost_step(G_MIDWRITE, 0, 2, 3, DIE, on_ring=True), repair(),
                                               traffic(), ghost_new(), ghost_step(G_MIDWRITE, 0, 1, 7, DIE), ghost_new(),
                                               ghost_step(G_MIDWRITE, 0, 1, 0, DIE, g=1), repair(S2), ghost_new(),
                                               ghost_new(), traffic())
    s["ghost-leaves-cleanly"] = program(BIG, setup(), ghost_new(), ghost_get(0, 0, 2), ghost_end(0, 0), repair(),
                                        ghost_new(), ghost_end(0, 0), repair(S1, 1), traffic())
    s["ghost-near-wrap"] = program(BIG, pool_create(8, 16), ring_create(8), fast_forward(None, 0, 1),
                                   fast_forward(0, 0, 3), get(0, S1, 4), enq(0, 4), ghost_new(),
                                   ghost_step(G_DEQ, 0, 3, 4, DIE), ghost_new(), ghost_get(0, 0, 2),
                                   ghost_step(G_PUT, 0, 2, 3, DIE), repair(), deq(0, 8), put(8), get(0, S1, 8), put(8))
    # A get that dies with the consumers' head just past the wrap: the blocks it took
    # are found (the pool is lapped), whether it or the repair took them.
    s["ghost-get-across-wrap"] = program(BIG, pool_create(8, 16), fast_forward(None, 0, 0), ghost_new(),
                                         ghost_step(G_GET, 0, 3, 3, DIE), repair(), get(0, S1, 8), put(8))
    s["ghost-returns-then-get"] = program(BIG, pool_create(8, 16), ghost_new(), ghost_get(0, 0, 5), ghost_end(0),
                                          repair(), get(0, S1, 8), put(3), ghost_new(), ghost_step(G_GET, 0, 4, 2, DIE),
                                          repair(), get(0, S1, 8), put(8))


def corruption_seeds(s):
    """Each kind of corrupting write, then the operations that read what it wrote."""
    after = traffic() + reopen() + table_find(v_known(1, 0, 1)) + find_named(N1, S2) + repair() + drain(0, S2)
    values = [v_small(0), v_special(6), v_delta(64), v_known(5, 0, 0, 64), v_u64(1 << 40), v_special(1), v_u32(1)]
    for field, name in enumerate(["magic", "version", "header-size", "size", "carve-end", "objects-head", "reserved"]):
        s["corrupt-region-%s" % name] = program(BIG, setup(), get(0), w_region(field, values[field]), reopen(), after,
                                                pool_create(2, 8, 0, N3), ring_create(2, 0, N4))
    s["corrupt-carve-end-rewind"] = program(BIG, setup(), get(0), get(0), enq(0, 1), w_region(4, v_known(0, 0, 0, 0)),
                                            pool_create(4, 8), ring_create(4), get(3), after)
    s["corrupt-objects-cycle"] = program(BIG, setup(), w_obj(0, 4, v_known(0, 0)), w_region(5, v_known(0, 1)),
                                         reopen(), find_named(N5, S2), table_find(v_small(8), space=S2), after)
    for field, name in enumerate(["magic", "kind", "version", "size", "next"]):
        s["corrupt-object-%s" % name] = program(BIG, setup(), get(0), enq(0, 1),
                                                w_obj(1, field, v_state(1, 2) if field < 3 else v_delta(64)), reopen(),
                                                pool_attach(v_known(0, 1), space=S2), ring_attach(v_known(0, 2), space=S2),
                                                after)
    s["corrupt-object-name"] = program(BIG, setup(), w_obj_name(0, 0, 2), w_obj_name(2, 63, 1), find_named(N0, S2),
                                       reopen(), find_named(N2, S2), after)
    for field, name in enumerate(["count", "elt-size", "stride", "flags", "slots", "states", "holders", "data"]):
        s["corrupt-pool-%s" % name] = program(BIG, setup(), get(0), enq(0, 1), w_geom(0, field, v_delta(1)),
                                              w_geom(1, field, v_special(6)), reopen(), pool_attach(v_known(0, 0)),
                                              after)
    for field, name in enumerate(["capacity", "flags", "slots", "shutdown"]):
        s["corrupt-ring-%s" % name] = program(BIG, setup(), get(0), enq(0, 1), w_ring(2, field, v_delta(1)), reopen(),
                                              ring_attach(v_known(2), space=S2), deq(1, 1, S2), after)
    s["corrupt-raw-header"] = program(BIG, raw_create(100), raw_create(8), w_raw_hdr(0, 0, v_delta(1)),
                                      w_raw_hdr(1, 1, v_delta(64)), raw_attach(v_known(0, 0)), raw_attach(v_known(0, 1)),
                                      raw_write(0, 99, 60), raw_write(1, 7, 60))
    s["corrupt-free-queue-counters"] = program(BIG, pool_create(4, 8), get(), w_counter(queue(None, 0), 1, v_delta(3)),
                                               get(), get(0, S1, 9), w_counter(queue(None, 0), 0, v_u64(1 << 63)),
                                               put(1), get(), w_counter(queue(None, 0), 3, v_small(5)), put(3))
    s["corrupt-free-queue-slot"] = program(BIG, pool_create(4, 8), w_slot(queue(None, 0), 0, 1, v_u64(1 << 40)),
                                           w_slot(queue(None, 0), 1, 1, v_small(3)), get(), get(), get(0, S1, 4),
                                           w_slot(queue(None, 0), 2, 0, v_seq(8)), put(4), get())
    s["corrupt-ring-slot-offset"] = program(BIG, setup(), get(0), get(0), enq(0, 1), enq(0, 1, 1),
                                            w_slot(queue(0), 0, 1, v_known(1, 0, 2, 8)),
                                            w_slot(queue(0), 1, 1, v_known(1, 1, 1, 0)), deq(0, 1, S2), deq(0),
                                            get(1), enq(0, 1), w_slot(queue(0), 2, 1, v_known(0, 0)), deq(0, 8))
    for d, name in ((1, "filling"), (2, "staged"), (3, "full"), (4, "draining"), (5, "next-lap"), (0xF8, "lap-behind"),
                    (0x40, "laps-ahead")):
        s["corrupt-ring-seq-%s" % name] = program(BIG, setup(), get(0), enq(0, 1), w_slot(queue(0), 1, 0, v_seq(d)),
                                                  w_slot(queue(0), 1, 1, v_known(1, 0, 0)), deq(0, 5), deq(0),
                                                  enq(0, 1), ghost_new(), ghost_step(G_DEQ, 0, 1, 1), repair(), drain(0))
    s["corrupt-ring-counters"] = program(BIG, setup(), get(0), enq(0, 1), w_counter(queue(0), 1, v_delta(0xFFFF)),
                                         deq(0), w_counter(queue(0), 3, v_small(3)), enq(0, 1), deq(0),
                                         w_counter(queue(0), 0, v_special(6)), enq(0, 3), drain(0))
    s["corrupt-block-states"] = program(BIG, setup(), get(0), get(0), enq(0, 1), w_state(0, 0, False, v_state(0, 0)),
                                        w_state(0, 1, False, v_state(5, 1)), w_state(0, 2, False, v_state(0, 2)),
                                        deq(0), put(1), get(0, S1, 8), put(8), enq(0, 8), drain(0))
    s["corrupt-holders"] = program(BIG, pool_create(4, 8), get(), get(), ghost_new(), ghost_get(0, 0, 1), ghost_end(0),
                                   w_state(0, 0, True, v_small(0)), w_state(0, 1, True, v_known(6, 0, 0)),
                                   repair(), get(), repair(), put(1), put(1))
    # Member entries a hostile process wrote: owners that look dead, announcements of
    # claims on real queues, held counts, identities.
    s["corrupt-member-dead-owner"] = program(BIG, setup(), get(0, S1, 2), enq(0, 2), w_member(5, 0, owner=(3, 1)),
                                             w_member(5, 2, v_known(7, 0, 1, 1)), w_member(5, 4, v_small(2)),
                                             repair(), w_member(6, 0, owner=(1, 1)), w_member(6, 2, v_known(7, 0, 0, 2)),
                                             w_member(6, 3, v_small(1)), w_member(6, 4, v_small(3)),
                                             w_member(6, 5, v_small(9)), repair(S2), traffic())
    s["corrupt-member-nolock"] = program(BIG, setup(), w_member(3, 0, owner=(2, 7)), w_member(3, 6, pid=0),
                                         w_member(4, 0, owner=(2, 7)), w_member(4, 6, pid=2),
                                         w_member(7, 0, owner=(9, 3)), w_member(7, 6, v_u64(4000000)), repair(),
                                         repair(S1, 1), counts(), traffic())
    s["corrupt-member-odd-seq"] = program(BIG, setup(), ghost_new(), ghost_step(G_GET, 0, 2, 0, STALL),
                                          w_member(0, 1, v_delta(1)), w_member(1, 1, v_delta(1)), get(0), put(1),
                                          ghost_end(0), repair(), traffic())
    s["corrupt-member-own-entry"] = program(BIG, setup(), get(0), w_member(0, 0, v_small(0)), get(0), put(2),
                                            w_member(0, 5, v_special(6)), reopen(), repair(S2), traffic())
    s["corrupt-raw-forged-magic"] = program(BIG, pool_create(2, 1024), get(),
                                            w_raw(OBJECTS_OFFSET + 512, list(struct.pack("<Q", 0x3154434a424f5350))),
                                            pool_attach(v_known(1, 0, 0)), pool_attach(v_known(1, 0, 1)), get(),
                                            reopen(), table_find(v_small(0), space=S2))
    s["corrupt-raw-member-table"] = program(BIG, setup(), get(0), w_raw(64, [0xFF] * 16), w_raw(128, [7, 0, 0, 0, 0, 0, 0, 0]),
                                            repair(), reopen(), get(0, S2), traffic())
    # Forged objects: consistent headers at chosen places, linked into the object list.
    s["forge-pool-past-end"] = program(BIG, pool_create(2, 8), forge_pool(4, 8), forge_pool(100, 64, at=v_delta(1024)),
                                       reopen(), table_find(v_known(1, 0, 1), space=S2), find_named(NO_NAME, S2),
                                       pool_attach(v_known(5), space=S2), get(1), get(1), put(1))
    s["forge-pool-overlapping"] = program(BIG, setup(), get(0), get(0), enq(0, 1),
                                          forge_pool(4, 8, at=v_known(1, 0, 2, 0), name=N5), reopen(),
                                          find_named(N5, S2), pool_attach(v_known(1, 0, 2, 0), space=S2),
                                          pool_attach(v_known(1, 0, 2, 0)), get(3), enq(0, 1), deq(0, 1, S2),
                                          deq(0, 8), drain(0, S2), repair())
    s["forge-pool-huge"] = program(BIG, setup(), forge_pool(1, 64, opts=1, elt_scale=4 * 10 + 3),
                                   forge_pool(3, 64, at=v_delta(64), opts=1, count_scale=4 * 12 + 3), reopen(),
                                   table_find(v_known(5, 0, 0, 0), space=S2), pool_attach(v_known(5)),
                                   find_named(NO_NAME, S2), repair())
    s["forge-pool-in-block"] = program(BIG, pool_create(2, 4096), ring_create(4), get(0),
                                       forge_pool(8, 8, at=v_known(1, 0, 0, 0), opts=2), pool_attach(v_known(1, 0, 0, 0)),
                                       get(1), get(1), enq(0, 1, 1), deq(0, 1, S2), deq(0), put(1), drain(0), repair())
    s["forge-size-lie"] = program(BIG, pool_create(2, 8), ring_create(2), forge_pool(1000, 64, opts=11),
                                  forge_ring(2000, at=v_delta(128), opts=11), reopen(), pool_attach(v_known(0, 0, 1)),
                                  ring_attach(v_known(0, 1, 1)), table_find(v_known(5, 0, 0, 0), space=S2),
                                  find_named(NO_NAME, S2))
    s["forge-ring"] = program(BIG, setup(), get(0), forge_ring(4, name=N4), ring_attach(v_known(5)),
                              enq(1, 1), deq(1, 1, S2), enq(1, 1), w_slot(queue(1), 0, 1, v_known(1, 0, 1, 0)),
                              deq(1, 8, S2), drain(1), forge_ring(64, at=v_known(0, 0), opts=7),
                              ring_attach(v_known(0, 0)), deq(2))
    s["forge-ring-over-pool"] = program(BIG, setup(), get(0), enq(0, 1), forge_ring(16, at=v_known(0, 0), opts=2),
                                        ring_attach(v_known(0, 0)), deq(1), enq(1, 1), get(0), put(1), drain(1),
                                        repair())


def seeds():
    s = {}
    clean_seeds(s)
    ghost_seeds(s)
    corruption_seeds(s)
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.endswith(".bin"):
            os.remove(os.path.join(out, old))
    all_seeds = seeds()
    total = 0
    for name, data in sorted(all_seeds.items()):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d seeds, %d bytes, in %s" % (len(all_seeds), total, out))


if __name__ == "__main__":
    main()
