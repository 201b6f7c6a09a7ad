#!/usr/bin/env python3
"""Write the seed corpus of tests/fuzz/fuzz_core.c: small programs, one per file.

    python3 tests/fuzz/make_corpus.py [DIR]     (default: tests/fuzz/corpus beside this file)

Each seed is a program in the harness's input format (see the comment at the top of
fuzz_core.c): a u16 region size - 1, then operations, each an opcode byte and its
arguments. The programs start the fuzzer at the interesting states: every operation in a
clean region (checked against the harness's model), tiny and exactly-fitting regions, and
each kind of corrupting write followed by the operations that read what it wrote.
The output is deterministic, so the committed corpus can be regenerated and diffed.
"""
import os
import struct
import sys

# Opcodes: the order of the OP_ enum in fuzz_core.c.
(POOL_CREATE, RING_CREATE, POOL_GET, POOL_GET_BURST, POOL_PUT, POOL_PUT_BURST, RING_ENQ, RING_ENQ_BURST,
 RING_DEQ, RING_DEQ_BURST, RING_DRAIN, RING_SHUTDOWN, FIND_BLOCK, FIND_NAMED, POOL_ATTACH, RING_ATTACH,
 REOPEN_R2, RECLAIM, BLOCK_WRITE, COUNTS, W_REGION_HDR, W_OBJ_HDR, W_POOL_GEOM, W_COUNTER, W_SLOT,
 W_STATE, W_RAW, W_RING_HDR, W_FORGE_POOL, W_FORGE_RING) = range(30)

# Names: the harness's names[] table.
NO_NAME, EMPTY, N0, N1, N2, N3, N4, N5, TOO_LONG = range(9)
R1, R2 = 0, 1


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


# ---- value specs (pick_value) ---------------------------------------------------------
def v_small(v):
    return u8(0) + u8(v)


def v_u64(v):
    return u8(1) + u64(v)


def known(sel, k=0, i=0):
    """known_offset: sel 0 object, 1 block i of pool k, 2 ring, 3 end - 64k, 4 states/slots, 5 carve end."""
    return u8(sel) + u8(k) + u8(i)


def v_known(sel, k=0, i=0, delta=0):
    return u8(2) + known(sel, k, i) + u8(delta)


def v_delta(d):
    return u8(3) + u16(d)


def v_special(k):
    return u8(4) + u8(k)


def v_state(gen_delta, kind):
    return u8(5) + u8(gen_delta) + u8(kind)


def v_seq(pos_delta, full):
    return u8(6) + u8((pos_delta * 2) + (1 if full else 0))


def v_u32(v):
    return u8(7) + u32(v)


# ---- operations -------------------------------------------------------------------------
def pool_create(count, elt, flags=0, name=NO_NAME, region=R1):
    return u8(POOL_CREATE) + u8(region) + u16(count - 1) + u16(elt - 1) + u8(flags) + u8(name)


def ring_create(cap, flags=0, name=NO_NAME, region=R1):
    return u8(RING_CREATE) + u8(region) + u16(cap - 1) + u8(flags) + u8(name)


def get(pool=0):
    return u8(POOL_GET) + u8(pool)


def get_burst(pool=0, n=8):
    return u8(POOL_GET_BURST) + u8(pool) + u8(n)


def put(held=0, variant=0, pool=0, index=0, gen=0):
    """variant 0 as held, 1 gen - 1, 2 gen + 1, 3 (pool, index, gen) as given."""
    return u8(POOL_PUT) + u8(held) + u8(variant) + u8(pool) + u16(index) + u8(gen)


def put_burst(pool=0, n=8, garbage=0, garbage_gen=0):
    return u8(POOL_PUT_BURST) + u8(pool) + u8(n) + u8(garbage) + u8(garbage_gen)


def enq(ring=0, held=0, variant=0):
    return u8(RING_ENQ) + u8(ring) + u8(held) + u8(variant)


def enq_burst(ring=0, n=8, start=0):
    return u8(RING_ENQ_BURST) + u8(ring) + u8(n) + u8(start)


def deq(ring=0, region=R1, min_size=0):
    return u8(RING_DEQ) + u8(ring) + u8(region) + u16(min_size)


def deq_burst(ring=0, region=R1, n=8):
    return u8(RING_DEQ_BURST) + u8(ring) + u8(region) + u8(n)


def drain(ring=0, region=R1):
    return u8(RING_DRAIN) + u8(ring) + u8(region)


def shutdown(ring=0, immediate=0):
    return u8(RING_SHUTDOWN) + u8(ring) + u8(immediate)


def find_block(value, region=R1, base=known(1)):
    return u8(FIND_BLOCK) + u8(region) + base + value


def find_named(name, region=R1):
    return u8(FIND_NAMED) + u8(region) + u8(name)


def pool_attach(value, region=R1, add=1, base=known(0)):
    return u8(POOL_ATTACH) + u8(region) + base + value + u8(add)


def ring_attach(value, region=R1, base=known(2)):
    return u8(RING_ATTACH) + u8(region) + base + value


def reopen():
    return u8(REOPEN_R2)


def reclaim(pool=0):
    return u8(RECLAIM) + u8(pool)


def block_write(held=0, at=0, length=16, byte=0xAB):
    return u8(BLOCK_WRITE) + u8(held) + u16(at) + u8(length) + u8(byte)


def counts(pool=0, ring=0):
    return u8(COUNTS) + u8(pool) + u8(ring)


# Region header fields: magic, layout_version, header_size, size, carve_end, objects_head, reserved.
def w_region(field, value):
    return u8(W_REGION_HDR) + u8(field) + value


# Object header fields: magic, kind, layout_version, size, next, name byte.
def w_obj(obj, field, value):
    return u8(W_OBJ_HDR) + u8(obj) + u8(field) + value


def w_obj_name(obj, i, c):
    return u8(W_OBJ_HDR) + u8(obj) + u8(5) + u8(i) + u8(c)


# Pool geometry: count, elt_size, stride, flags, slots, states, data, holders.
def w_geom(pool, field, value):
    return u8(W_POOL_GEOM) + u8(pool) + u8(field) + value


# Counters (which 0: a pool's free queue, 1: a ring): enq_pos, deq_pos, not_empty.epoch,
# not_empty.waiters, not_full.epoch, not_full.waiters.
def w_counter(which, sel, field, value):
    return u8(W_COUNTER) + u8(which) + u8(sel) + u8(field) + value


def w_slot(which, sel, slot, value_field, value):
    """value_field 0: seq, 1: value."""
    return u8(W_SLOT) + u8(which) + u8(sel) + u16(slot) + u8(value_field) + value


def w_state(pool, index, holder, value):
    return u8(W_STATE) + u8(pool) + u16(index) + u8(1 if holder else 0) + value


def w_raw(at, data):
    return u8(W_RAW) + u32(at) + u8(len(data) - 1) + bytes(data)


# Ring header fields: capacity, flags, slots_offset, shutdown.
def w_ring(ring, field, value):
    return u8(W_RING_HDR) + u8(ring) + u8(field) + value


def forge_pool(count, elt, at=None, base=None, flags=0, opts=3, name=NO_NAME, count_scale=0, elt_scale=0):
    """A consistent pool header at value spec `at` over known offset `base` (default: the
    carve end, past every real object). opts 1: push on the object list, 2: a full free
    queue, 8: the header claims a size that just fits the region. A scale byte s with s % 4 == 3 shifts the number left by s / 4 % 30."""
    at = v_delta(0) if at is None else at
    base = known(5) if base is None else base
    return (u8(W_FORGE_POOL) + base + at + u16(count) + u8(count_scale) + u16(elt) + u8(elt_scale) + u8(flags)
            + u8(opts) + u8(name))


def forge_ring(cap, at=None, base=None, flags=0, opts=3, name=NO_NAME, cap_scale=0):
    """A consistent ring header; opts 1: push on the list, 2: empty slots, 4: shut down, 8: as for pools."""
    at = v_delta(0) if at is None else at
    base = known(5) if base is None else base
    return u8(W_FORGE_RING) + base + at + u16(cap) + u8(cap_scale) + u8(flags) + u8(opts) + u8(name)


def program(size, *ops):
    return u16(size - 1) + b"".join(ops)


# ---- the seeds --------------------------------------------------------------------------
def traffic():
    """A round of everything a clean program does after the setup below."""
    return b"".join([
        get(0), get(0), get_burst(0, 3), enq(0, 0), enq(0, 1), enq_burst(0, 3),
        deq(0, R1), deq(0, R2), deq_burst(0, R2, 4), put(0), put_burst(0, 4),
        get(1), enq(0, 0), drain(0, R2), counts(0, 0),
    ])


def setup():
    return pool_create(8, 64, 0, N0) + pool_create(4, 24, 3, N1) + ring_create(8, 0, N2)


def seeds():
    s = {}
    s["clean-pool-get-put"] = program(4096, pool_create(4, 32), get(), get(), put(0), put(0), get(), get(),
                                      get(), get(), get(), put(1), put(0), put(0, 1), put(0, 2), counts())
    s["clean-pool-bursts"] = program(8192, pool_create(100, 8, 0), get_burst(0, 70), put_burst(0, 79),
                                     get_burst(0, 0), put_burst(0, 0), get_burst(0, 79), put_burst(0, 30, 7, 3),
                                     put_burst(0, 30, 0x0F), put_burst(0, 79))
    s["clean-ring-pass"] = program(16384, setup(), traffic(), traffic())
    s["clean-ring-sp-sc"] = program(8192, pool_create(8, 100, 3), ring_create(4, 3), get_burst(0, 8),
                                    enq(0, 0), enq(0, 1), enq(0, 2), enq(0, 3), enq(0, 4), deq(0), deq(0, R2),
                                    enq(0, 0, 1), enq(0, 0, 2), enq(0, 0, 3), deq_burst(0, R1, 9), drain(0))
    s["clean-ring-big-bursts"] = program(32768, pool_create(200, 8), ring_create(200), get_burst(0, 79),
                                         get_burst(0, 79), enq_burst(0, 79), enq_burst(0, 79), deq_burst(0, R2, 79),
                                         deq_burst(0, R1, 79), enq_burst(0, 79, 5), drain(0, R2))
    s["clean-ring-full"] = program(8192, pool_create(8, 16), ring_create(2), get_burst(0, 8), enq(0, 0), enq(0, 1),
                                   enq(0, 2), enq_burst(0, 3), deq(0), enq_burst(0, 2), deq_burst(0, R1, 2))
    s["clean-ring-min-size"] = program(8192, pool_create(4, 16), pool_create(4, 256), ring_create(8),
                                       get(0), get(1), enq(0, 0), enq(0, 0), deq(0, R1, 100), deq(0, R1, 16),
                                       deq(0, R2, 300), deq(0, R2, 256))
    s["clean-shutdown-graceful"] = program(8192, setup(), get(0), get(0), enq(0, 0), shutdown(0, 0), enq(0, 0),
                                           deq(0), deq(0), deq_burst(0), shutdown(0, 1), shutdown(0, 0), drain(0))
    s["clean-shutdown-now"] = program(8192, setup(), get_burst(0, 4), enq_burst(0, 4), shutdown(0, 1), deq(0),
                                      deq_burst(0, R2, 0), drain(0, R2), counts())
    s["clean-names"] = program(16384, pool_create(2, 8, 0, N0), pool_create(2, 8, 0, N0), ring_create(2, 0, N0),
                               ring_create(2, 0, N1), pool_create(2, 8, 0, TOO_LONG), pool_create(2, 8, 0, EMPTY),
                               find_named(N0), find_named(N1, R2), find_named(N2), find_named(EMPTY),
                               find_named(TOO_LONG), reopen(), find_named(N1, R2))
    s["clean-bad-flags"] = program(4096, pool_create(2, 8, 0x84), ring_create(2, 0x88), pool_create(2, 8, 3),
                                   ring_create(2, 3))
    s["clean-find-block"] = program(8192, pool_create(8, 40), pool_create(3, 100), find_block(v_small(0)),
                                    find_block(v_known(1, 0, 3, 0)), find_block(v_known(1, 1, 2, 0), R2),
                                    find_block(v_known(1, 0, 3, 1)), find_block(v_known(1, 0, 7, 48)),
                                    find_block(v_known(0, 0, 0, 0)), find_block(v_u64(1 << 63), R2),
                                    find_block(v_special(6)))
    s["clean-attach"] = program(8192, pool_create(8, 40), ring_create(4), pool_attach(v_known(0, 0)),
                                pool_attach(v_known(0, 1), R2), pool_attach(v_known(0, 0, 0, 64)),
                                pool_attach(v_known(0, 0, 0, 1)), ring_attach(v_known(2)),
                                ring_attach(v_known(2, 0, 0, 64), R2), ring_attach(v_known(0, 0)),
                                pool_attach(v_special(7)), ring_attach(v_special(6)), get(2), get(1), put(0))
    s["clean-reopen-walk"] = program(16384, pool_create(8, 40), reopen(), pool_create(4, 200, 0, NO_NAME, R2),
                                     ring_create(4, 0, NO_NAME, R2), get(1), get(0), enq(1, 0), enq(1, 1),
                                     deq(1, R2), deq(1, R1), reopen(), deq_burst(0, R2), enq(0, 0),
                                     reopen(), drain(0, R2))
    s["clean-block-write"] = program(4096, pool_create(2, 200), get(), block_write(0, 0, 63, 0x50),
                                     block_write(0, 190, 63, 0xFF), put(0), get(), get())
    s["clean-reclaim"] = program(4096, pool_create(4, 8), get(), get(), reclaim(0), put(0), reclaim(0))
    s["clean-overflow-handles"] = program(
        65536, *[pool_create(2, 8) for _ in range(17)], *[ring_create(1) for _ in range(17)], get(16), get(3))
    # Region sizes at the edges: too small for anything, exactly one object, one byte short.
    s["tiny-1"] = program(1, pool_create(1, 1), ring_create(1), find_named(EMPTY), reopen(), find_block(v_small(64)))
    s["tiny-63"] = program(63, pool_create(1, 1), w_raw(0, [0x53]), reopen(), find_named(N0, R2))
    s["tiny-64"] = program(64, pool_create(1, 1), find_block(v_small(64)), pool_attach(v_small(64)))
    s["tiny-exact-ring"] = program(64 + 320 + 64, ring_create(4), ring_create(1), get(0), ring_attach(v_small(64)))
    s["tiny-exact-pool"] = program(64 + 448, pool_create(1, 64), get(), put(0), pool_create(1, 1))
    s["tiny-one-short"] = program(64 + 447, pool_create(1, 64), ring_create(1))
    s["big-region"] = program(65536, pool_create(512, 8), pool_create(10, 2048), ring_create(256),
                              get_burst(0, 79), enq_burst(0, 79), drain(0), counts())

    # ---- corruption, one kind per seed, then the operations that read it ----
    after = traffic() + reopen() + find_block(v_known(1, 0, 1)) + find_named(N1, R2) + reclaim(0) + drain(0, R2)
    for field, name in enumerate(["magic", "version", "header-size", "size", "carve-end", "objects-head"]):
        values = [v_small(0), v_special(6), v_delta(64), v_known(5, 0, 0, 64)]
        s["corrupt-region-%s" % name] = program(
            16384, setup(), get(0), w_region(field, values[field % len(values)]), reopen(), after,
            pool_create(2, 8, 0, N3), ring_create(2, 0, N4))
    s["corrupt-carve-end-rewind"] = program(16384, setup(), get(0), get(0), enq(0, 0),
                                            w_region(4, v_known(0, 0, 0, 0)), pool_create(4, 8),
                                            ring_create(4), get(3), after)
    s["corrupt-carve-end-huge"] = program(8192, setup(), w_region(4, v_special(7)), pool_create(1, 1),
                                          w_region(4, v_special(8)), ring_create(1))
    s["corrupt-objects-cycle"] = program(16384, setup(), w_obj(0, 4, v_known(0, 0)), w_region(5, v_known(0, 1)),
                                         reopen(), find_named(N5, R2), find_block(v_small(8), R2), after)
    s["corrupt-objects-head-misaligned"] = program(8192, setup(), w_region(5, v_known(0, 0, 0, 8)), reopen(),
                                                   find_named(N0, R2), find_block(v_known(1, 0, 0), R2))
    for field, name in enumerate(["magic", "kind", "version", "size", "next", "name"]):
        body = w_obj_name(0, 0, 2) if name == "name" else w_obj(1, field, v_state(1, 2) if field < 3 else v_delta(64))
        s["corrupt-object-%s" % name] = program(16384, setup(), get(0), enq(0, 0), body, reopen(),
                                                pool_attach(v_known(0, 1), R2), ring_attach(v_known(0, 2), R2), after)
    for field, name in enumerate(["count", "elt-size", "stride", "flags", "slots", "states", "data", "holders"]):
        s["corrupt-pool-%s" % name] = program(16384, setup(), get(0), enq(0, 0), w_geom(0, field, v_delta(1)),
                                              w_geom(1, field, v_special(6)), reopen(), pool_attach(v_known(0, 0)),
                                              after)
    s["corrupt-ring-capacity"] = program(16384, setup(), get(0), enq(0, 0), w_ring(0, 0, v_delta(1)), reopen(),
                                         ring_attach(v_known(2), R2), deq(1, R2), after)
    s["corrupt-ring-shutdown"] = program(8192, setup(), get(0), enq(0, 0), w_ring(0, 3, v_u64(0xFFFFFFFF00000007)),
                                         deq(0), enq(0, 0), deq_burst(0), shutdown(0, 0), drain(0))
    s["corrupt-free-queue-full"] = program(8192, pool_create(4, 8), get(), get(),
                                           w_counter(0, 0, 0, v_delta(0x10000 - 2)), put(0), put_burst(0, 2))
    s["corrupt-free-queue-counters"] = program(8192, pool_create(4, 8), get(), w_counter(0, 0, 1, v_delta(3)),
                                               get(), get_burst(0, 9), w_counter(0, 0, 0, v_u64(1 << 63)), put(0),
                                               get(), w_counter(0, 0, 3, v_small(5)), put_burst(0, 3))
    s["corrupt-free-queue-slot"] = program(8192, pool_create(4, 8), w_slot(0, 0, 0, 1, v_u64(1 << 40)),
                                           w_slot(0, 0, 1, 1, v_small(3)), get(), get(), get_burst(0, 4),
                                           w_slot(0, 0, 2, 0, v_seq(3, True)), put_burst(0, 4), get())
    s["corrupt-ring-slot-offset"] = program(16384, setup(), get(0), get(0), enq(0, 0), enq(0, 0),
                                            w_slot(1, 0, 0, 1, v_known(1, 0, 2, 8)),
                                            w_slot(1, 0, 1, 1, v_known(1, 1, 1, 0)), deq(0, R2), deq(0),
                                            get(1), enq(0, 0), w_slot(1, 0, 2, 1, v_known(0, 0)), deq_burst(0))
    s["corrupt-ring-slot-seq"] = program(16384, setup(), get(0), enq(0, 0), w_slot(1, 0, 1, 0, v_seq(1, True)),
                                         w_slot(1, 0, 1, 1, v_known(1, 0, 0)), deq_burst(0, R1, 5), deq(0),
                                         w_counter(1, 0, 0, v_delta(5)), enq(0, 0), drain(0))
    s["corrupt-ring-counters"] = program(16384, setup(), get(0), enq(0, 0), w_counter(1, 0, 1, v_delta(0xFFFF)),
                                         deq(0), w_counter(1, 0, 3, v_small(3)), enq(0, 0), deq(0),
                                         w_counter(1, 0, 0, v_special(6)), enq_burst(0, 3), drain(0))
    s["corrupt-block-states"] = program(16384, setup(), get(0), get(0), enq(0, 0), w_state(0, 0, False, v_state(0, 0)),
                                        w_state(0, 1, False, v_state(5, 1)), w_state(0, 2, False, v_state(0, 2)),
                                        deq(0), put(0), get_burst(0, 8), put_burst(0, 8), enq_burst(0, 8), drain(0))
    s["corrupt-holders"] = program(8192, pool_create(4, 8), get(), get(), w_state(0, 0, True, v_small(0)),
                                   w_state(0, 1, True, v_u64((1 << 63) | 5)), reclaim(0), get(), reclaim(0),
                                   put(0), put(1))
    s["corrupt-raw-forged-pool"] = program(
        16384, pool_create(2, 1024), get(),
        # a pool header forged in the data of block 0, then attached there
        w_raw(64 + 448 - 128 + 128, list(struct.pack("<Q", 0x3154434a424f5350))),
        pool_attach(v_known(1, 0, 0)), pool_attach(v_known(1, 0, 1)), get(1), reopen(), find_block(v_small(0), R2))
    # Forged objects: consistent headers at chosen places, linked into the object list.
    # known(5) is the carve end: a pool forged there is past every real object.
    s["forge-pool-past-end"] = program(8192, pool_create(2, 8), forge_pool(4, 8), forge_pool(100, 64, at=v_delta(1024)),
                                       reopen(), find_block(v_known(1, 0, 1), R2), find_named(NO_NAME, R2),
                                       pool_attach(v_known(5), R2), get(1), get(1), put(0))
    s["forge-pool-overlapping"] = program(16384, setup(), get(0), get(0), enq(0, 0),
                                          forge_pool(4, 8, at=v_known(1, 0, 2, 0), name=N5),
                                          reopen(), find_named(N5, R2), pool_attach(v_known(1, 0, 2, 0), R2),
                                          pool_attach(v_known(1, 0, 2, 0), R1), get(3), enq(0, 0),
                                          deq(0, R2), deq_burst(0, R1), drain(0, R2))
    s["forge-pool-huge"] = program(16384, setup(), forge_pool(1, 64, opts=1, elt_scale=4 * 10 + 3),
                                   forge_pool(3, 64, at=v_delta(64), opts=1, count_scale=4 * 12 + 3), reopen(),
                                   find_block(v_known(5, 0, 0, 0), R2), pool_attach(v_known(5)),
                                   find_named(NO_NAME, R2))
    s["forge-pool-in-block"] = program(16384, pool_create(2, 4096), ring_create(4), get(0),
                                       forge_pool(8, 8, at=v_known(1, 0, 0, 0), opts=2),
                                       pool_attach(v_known(1, 0, 0, 0), R1, 1), get(2), get(2), enq(0, 1),
                                       deq(0, R2), deq(0, R1), put(0), drain(0))
    s["forge-size-lie"] = program(16384, pool_create(2, 8), ring_create(2), forge_pool(1000, 64, opts=11),
                                  forge_ring(2000, at=v_delta(128), opts=11), reopen(), pool_attach(v_known(0, 0, 1)),
                                  ring_attach(v_known(0, 1, 1)), find_block(v_known(5, 0, 0, 0), R2),
                                  find_named(NO_NAME, R2))
    s["forge-ring"] = program(16384, setup(), get(0), forge_ring(4, name=N4), ring_attach(v_known(5)),
                              enq(1, 0), deq(1, R2), enq(1, 0), w_slot(1, 1, 0, 1, v_known(1, 0, 1, 0)),
                              deq_burst(1, R2), drain(1), forge_ring(64, at=v_known(0, 0), opts=7),
                              ring_attach(v_known(0, 0)), deq(2))
    s["forge-ring-over-pool"] = program(16384, setup(), get(0), enq(0, 0), forge_ring(16, at=v_known(0, 0), opts=2),
                                        ring_attach(v_known(0, 0)), deq(1), enq(1, 0), get(0), put(0), drain(1))
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.endswith(".bin"):
            os.remove(os.path.join(out, old))
    total = 0
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d seeds, %d bytes, in %s" % (len(seeds()), total, out))


if __name__ == "__main__":
    main()
