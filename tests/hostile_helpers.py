"""Engine of the hostile-memory tests (tests/test_hostile.py).

Any process can write any byte of a region (map its file a second time: ``writable``
below; ``memoryview(shm)`` itself is read-only), header and member table included. Whatever was written, a pyshm call must then raise a
``pyshm.PyshmError`` (``CorruptionError``, ``EmptyError``, ``FullError``, ``ShutDown``,
...), raise ``ValueError`` (a handle or view the shared state no longer agrees with), or
succeed; it must not crash, hang past its timeout, or hand out a view that is not one
block of a pool of the region.

One *case* is reproducible from its seed alone:

1. build a region with two pools and two rings (random geometry, flags and names);
2. record, with a clean get-all pass, the region offset and length of every block of
   every pool: a view handed out later is legal only if it starts at one of these
   offsets and is no longer than that block;
3. pass blocks around so that counters, generations and ring slots are mid-flight, and
   leave some blocks held and some queued;
4. apply K corruptions through a writable mapping of the region's file: offsets biased toward the region
   header, object headers, geometry fields, ring counters, ring and free-queue slots,
   block state words; values biased toward small integers, 0, -1, 2**63, the current
   value nudged by a little (almost valid), the offsets of objects and blocks, and the
   right magic numbers. A few cases also forge whole objects: a pool or ring header
   rewritten with another *consistent* geometry, a valid pool linked into the object
   list from free space, the carve pointer rewound onto an existing object, a ring
   entry naming a block this process holds. The images of forged objects come from the
   library itself (the object is created in a scratch region at the same offset and
   its bytes copied), so nothing here depends on the exact layout of a pool;
5. run random operations (get, put, enqueue, dequeue, the bulk calls, blocking calls
   with a 10 ms timeout, attach by name, ``_from_offset``, counts, shutdown, new pools
   and rings, a second mapping of the same file with an empty pool table), checking
   every outcome and every view handed out.

The address check is layout-agnostic: legal block offsets come from step 2 (and, for
forged pools and pools created later, from the same get-all pass run on the scratch
copy), never from a formula.

Run one case in-process, printing every corruption and operation::

    python tests/hostile_helpers.py SEED              # a case of the random campaign
    python tests/hostile_helpers.py --concurrent SEED # a round of the concurrent test
                                                      # (not deterministic: a writer runs
                                                      # alongside)
    python tests/hostile_helpers.py --forge-table     # the stale pool-table reproducer
                                                      # (crashed before 73bf632)

This module imports only the standard library and pyshm (the campaign's children
import it after fork, and it must be usable without pytest).
"""
import ctypes
import gc
import mmap
import os
import random
import select
import signal
import struct
import sys
import time

import pyshm

U64 = (1 << 64) - 1
REGION_HEADER = 64
OBJECT_HEADER = 128
# Region header: magic, version/header_size (u32 each), size, carve_end, objects_head.
CARVE_END_AT = 24
OBJECTS_HEAD_AT = 32
# Object header: magic, kind/version (u32 each), size, next, reserved, name[64].
OBJ_SIZE_AT = 16
OBJ_NEXT_AT = 24
OBJ_NAME_AT = 64
# Pool and ring headers: 384 bytes; queue counters at +256 (enq_pos, not_empty) and
# +320 (deq_pos, not_full). The member table: 64 bytes of header at region offset 64,
# then 128-byte entries. Used only to aim corruptions; the checks never rely on them.
SHARED_HEADER = 384
ENQ_AT = 256
DEQ_AT = 320
MEMBERS_AT = 64 + 64
MEMBER_ENTRY = 128
POOL_STATES_OFFSET_AT = 128 + 5 * 8
OBJ_MAGIC = 0x3154434A424F5350  # "PSOBJCT1"
REGION_MAGIC = 0x314E4F4947455253  # "SREGION1"

# What a call on corrupted memory may do besides succeed.
ALLOWED = (pyshm.PyshmError, ValueError)
SHORT_TIMEOUT = 0.01


class Violation(Exception):
    """An outcome that no corruption excuses."""


# --- addresses and raw access --------------------------------------------------------------


def offset_of(obj):
    """Region offset of a Mempool or Ring (they pickle as (shm, offset))."""
    return obj.__reduce__()[1][1]


class _Py_buffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.py_object), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


def address_of(buf):
    """Address of the first byte of a buffer (read-only ones too)."""
    view = _Py_buffer()
    ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(buf), ctypes.byref(view), 0)
    try:
        return view.buf
    finally:
        ctypes.pythonapi.PyBuffer_Release(ctypes.byref(view))


def base_of(shm):
    with memoryview(shm) as m:
        return address_of(m)


class writable:
    """The region's file mapped a second time, writable: what a faulty process writes
    through (memoryview(shm) is read-only). Offsets are region offsets."""

    def __init__(self, shm):
        self.map = mmap.mmap(shm.fileno(), 0)

    def __enter__(self):
        return self.map

    def __exit__(self, *exc):
        self.map.close()


def read_u64(shm, at):
    with memoryview(shm) as m:
        return struct.unpack_from("<Q", m, at)[0]


def write_bytes(shm, at, data):
    with writable(shm) as m:
        m[at : at + len(data)] = data


def write_u64(shm, at, value):
    write_bytes(shm, at, struct.pack("<Q", value & U64))


def documented_stride(elt_size):
    """README: elt_size rounded up to 8 bytes under 64, to 64 bytes from 64 on."""
    return (elt_size + 7) // 8 * 8 if elt_size < 64 else (elt_size + 63) // 64 * 64


def block_table(pool, base):
    """{region offset: room} for every block of a pool whose blocks are all free, from a
    get-all pass (the blocks go back, so only the free-queue counters move). The room of a
    block is the stride, the distance to the next block: a view there may not be longer.
    (Not elt_size: a header rewritten with another elt_size of the same stride describes
    the very same blocks, consistently.)"""
    views = pool.get_many(pool.count)
    if len(views) != pool.count:
        raise AssertionError(f"get-all pass got {len(views)} of {pool.count} blocks")
    offs = sorted(address_of(v) - base for v in views)
    elt = len(views[0])
    pool.put_many(views)
    steps = {b - a for a, b in zip(offs, offs[1:])}
    if len(steps) > 1:
        raise AssertionError(f"blocks of the pool are not evenly spaced: {offs}")
    stride = steps.pop() if steps else documented_stride(elt)
    if stride < elt:
        raise AssertionError(f"blocks of {elt} bytes only {stride} bytes apart")
    return {off: stride for off in offs}


# --- a world: one region, its objects, what this process holds ------------------------------


class Mapping:
    """One mapping of the region in this process (the original or a re-attached one)."""

    def __init__(self, shm, label):
        self.shm = shm
        self.label = label
        self.base = base_of(shm)
        self.size = shm.size + pyshm.REGION_OVERHEAD  # the whole file


class Handle:
    def __init__(self, obj, mapping, kind):
        self.obj = obj
        self.mapping = mapping
        self.kind = kind  # "pool" or "ring"
        self.off = offset_of(obj)


class World:
    """A case: the region, handles on its objects, the blocks held here, and what is legal.

    ``legal`` maps a block's region offset to the largest length a view there may have;
    it covers the real pools and every pool this case forged or created.
    """

    def __init__(self, seed, verbose=False, concurrent=False):
        self.seed = seed
        self.rng = random.Random(seed)
        self.verbose = verbose
        self.concurrent = concurrent
        self.violations = []
        self.mappings = []
        self.pools = []
        self.rings = []
        self.held = []  # [view, mapping, pool offset]
        self.legal = {}  # block offset -> max length
        self.block_pool = {}  # block offset -> pool offset
        self.objects = {}  # offset -> (kind, meta end) for the real objects
        self.names = {}  # name -> kind
        self.extra_offsets = set()
        self.pending_ops = []
        self.blocked = set()  # (mapping, pool offset) whose put gave up on a full free queue

    def log(self, msg):
        if self.verbose:
            print(f"  [{self.seed}] {msg}", flush=True)

    def violation(self, msg):
        self.log(f"VIOLATION: {msg}")
        if len(self.violations) < 4:
            self.violations.append(msg)
        elif len(self.violations) == 4:
            self.violations.append("(more violations in this case: replay the seed to see them)")

    # -- setup ---------------------------------------------------------------------------

    def build(self, size=None):
        rng = self.rng
        size = size or rng.choice([1 << 16, 1 << 17])
        shm = pyshm.ShareMem(size)
        m = Mapping(shm, "main")
        self.mappings.append(m)
        elts = [1, 7, 8, 24, 40, 64, 100, 200, 256, 600]
        for i in range(2):
            count = rng.randint(1, 12)
            elt = rng.choice(elts)
            flags = rng.choice([0, 0, pyshm.MEMPOOL_F_SP_PUT, pyshm.MEMPOOL_F_SC_GET,
                                pyshm.MEMPOOL_F_SP_PUT | pyshm.MEMPOOL_F_SC_GET])
            name = f"pool{i}" if rng.random() < 0.8 else None
            pool = pyshm.Mempool(count, elt, flags, shm=shm, name=name)
            h = Handle(pool, m, "pool")
            table = block_table(pool, m.base)
            self.add_legal(table, h.off)
            meta_end = min(table)
            self.objects[h.off] = ("pool", meta_end)
            self.pools.append(h)
            if name:
                self.names[name] = "pool"
            self.log(f"pool{i} at {h.off}: count={count} elt={elt} flags={flags} blocks {sorted(table)[:3]}...")
        for i in range(2):
            cap = rng.choice([1, 2, 3, 4, 5, 8])
            flags = rng.choice([0, 0, pyshm.RING_F_SP_ENQ, pyshm.RING_F_SC_DEQ,
                                pyshm.RING_F_SP_ENQ | pyshm.RING_F_SC_DEQ])
            name = f"ring{i}" if rng.random() < 0.8 else None
            ring = pyshm.Ring(cap, flags, shm=shm, name=name)
            h = Handle(ring, m, "ring")
            self.objects[h.off] = ("ring", h.off + read_u64(shm, h.off + OBJ_SIZE_AT))
            self.rings.append(h)
            if name:
                self.names[name] = "ring"
            self.log(f"ring{i} at {h.off}: cap={cap} flags={flags}")
        self.mid_flight()

    def add_legal(self, table, pool_off):
        for off, length in table.items():
            self.legal[off] = max(length, self.legal.get(off, 0))
            self.block_pool.setdefault(off, pool_off)

    def mid_flight(self):
        """Correct traffic so counters and generations are mid-flight; some blocks stay
        held here, some stay queued in rings."""
        rng = self.rng
        for _ in range(rng.randint(10, 60)):
            r = rng.random()
            try:
                if r < 0.35:
                    p = rng.choice(self.pools)
                    self.take([p.obj.get()], p)
                elif r < 0.55 and self.held:
                    v, m, poff = self.held[rng.randrange(len(self.held))]
                    p = next(h for h in self.pools if h.off == poff)
                    p.obj.put(v)
                    self.drop(v)
                elif r < 0.8 and self.held:
                    v, m, poff = self.held[rng.randrange(len(self.held))]
                    rng.choice(self.rings).obj.enqueue(v)
                    self.drop(v)
                else:
                    q = rng.choice(self.rings)
                    self.take([q.obj.dequeue()], q)
            except (pyshm.EmptyError, pyshm.FullError):
                pass
        if self.violations:
            raise AssertionError(f"clean setup produced violations: {self.violations}")

    # -- the address check -------------------------------------------------------------

    def take(self, views, handle):
        """Check views just handed out through `handle`; keep the legal ones as held."""
        m = handle.mapping
        for v in views:
            off = address_of(v) - m.base
            n = len(v)
            limit = self.legal.get(off)
            if limit is None or n > limit or off < 0 or off + n > m.size:
                self.violation(
                    f"{handle.kind} at {handle.off} ({m.label} mapping) handed out a view of {n} bytes at region "
                    f"offset {off} (region size {m.size}): not a block of any pool"
                    + ("" if limit is None else f" (the blocks there are {limit} bytes apart)")
                )
                v.release()
                continue
            # Use it as a caller would: write and read back both ends.
            v[0] = 0xA5
            v[n - 1] = 0x5A
            if not self.concurrent and (v[0] != (0xA5 if n > 1 else 0x5A) or v[n - 1] != 0x5A):
                self.violation(f"view at offset {off} does not read back what was written")
            self.held.append([v, m, self.block_pool[off]])

    def drop(self, view):
        for i, entry in enumerate(self.held):
            if entry[0] is view:
                del self.held[i]
                return

    # -- corruption --------------------------------------------------------------------

    def interesting_offsets(self):
        offs = [0, REGION_HEADER, self.mappings[0].size, self.mappings[0].size - 8, self.mappings[0].size - 64]
        for off, (kind, end) in self.objects.items():
            offs += [off, end, off + SHARED_HEADER]
        offs += list(self.legal)
        offs += list(self.extra_offsets)
        return offs

    def pick_target(self):
        """(offset, width) of a field to corrupt, biased toward what matters."""
        rng = self.rng
        size = self.mappings[0].size
        r = rng.random()
        objs = list(self.objects.items())
        off, (kind, end) = rng.choice(objs)
        if r < 0.14:  # region header
            return rng.choice([(0, 8), (8, 4), (12, 4), (16, 8), (CARVE_END_AT, 8), (OBJECTS_HEAD_AT, 8),
                               (OBJECTS_HEAD_AT, 8), (rng.randrange(0, 64, 8), 8)])
        if r < 0.18:  # the member table: owner words, announcements, held counts
            return (MEMBERS_AT + MEMBER_ENTRY * rng.randrange(4) + 8 * rng.randrange(16), 8)
        if r < 0.33:  # object header
            return rng.choice([(off, 8), (off + 8, 4), (off + 12, 4), (off + OBJ_SIZE_AT, 8), (off + OBJ_NEXT_AT, 8),
                               (off + OBJ_NEXT_AT, 8), (off + OBJ_NAME_AT + rng.randrange(8), 1),
                               (off + rng.randrange(0, OBJECT_HEADER, 8), 8)])
        if r < 0.48:  # geometry: the words after the object header
            return (off + OBJECT_HEADER + rng.randrange(0, 64, 8), 8)
        if r < 0.63:  # ring.h counters and waitpoints
            return rng.choice([(off + ENQ_AT, 8), (off + DEQ_AT, 8), (off + ENQ_AT + 8, 4), (off + ENQ_AT + 12, 4),
                               (off + DEQ_AT + 8, 4), (off + DEQ_AT + 12, 4)])
        if r < 0.88:  # slots, free queues, block states, holders: the arrays after the header
            if end - off > SHARED_HEADER:
                return (off + SHARED_HEADER + rng.randrange(0, end - off - SHARED_HEADER) // 8 * 8, 8)
            return (off + ENQ_AT, 8)
        if r < 0.95:  # unaligned, any width, anywhere in the metadata
            at = rng.randrange(0, max(end, REGION_HEADER + 1))
            return (min(at, size - 8), rng.choice([1, 2, 4, 8]))
        if self.legal:  # block data: harmless, as a control
            return (rng.choice(list(self.legal)), 8)
        return (rng.randrange(0, size - 8), 8)

    def pick_value(self, current, width):
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            v = rng.randint(0, 16)
        elif r < 0.32:
            v = rng.choice([0, U64, 1 << 63, (1 << 63) - 1, 1 << 62, 1 << 32, (1 << 32) - 1, 1 << 31, 1 << 40,
                            1 << 46, (1 << 46) + 1])
        elif r < 0.6:  # almost valid: the current value nudged
            delta = rng.choice([-1, 1, -2, 2, 3, -3, 4, -4, 8, -8, 16, 64, -64, 128, 1 << 20, -(1 << 20)])
            v = current + delta
        elif r < 0.7:
            v = current ^ (1 << rng.randrange(width * 8))
        elif r < 0.85:  # an offset that is, or almost is, a real one
            v = rng.choice(self.interesting_offsets()) + rng.choice([0, 0, 0, 1, -1, 8, -8, 16, 64, -64])
        elif r < 0.92:
            v = rng.choice([OBJ_MAGIC, REGION_MAGIC, 1, 2, 3, pyshm.LAYOUT_VERSION])
        else:
            v = rng.getrandbits(64)
        return v & ((1 << (8 * width)) - 1)

    def corrupt_once(self):
        shm = self.mappings[0].shm
        at, width = self.pick_target()
        if self.rng.random() < 0.04:  # a run of garbage bytes
            n = self.rng.randint(8, 200)
            at = max(0, min(at, self.mappings[0].size - n))
            data = bytes(self.rng.getrandbits(8) for _ in range(n))
            write_bytes(shm, at, data)
            self.log(f"corrupt: {n} random bytes at {at}")
            return
        with writable(shm) as m:
            current = int.from_bytes(m[at : at + width], "little")
            value = self.pick_value(current, width)
            m[at : at + width] = value.to_bytes(width, "little")
        self.log(f"corrupt: [{at}:{at + width}] {current:#x} -> {value:#x}")

    def corrupt(self, k):
        for _ in range(k):
            self.corrupt_once()

    # -- forged objects (made by the library in a scratch region, then copied) ---------

    def scratch_object(self, at, make):
        """Create an object with `make(shm)` in a scratch region of the same size, carved at
        `at`. Returns (metadata image, block table or None, object size), or None when it
        does not fit there."""
        scratch = pyshm.ShareMem(self.mappings[0].shm.size)
        try:
            write_u64(scratch, CARVE_END_AT, at)
            try:
                obj = make(scratch)
            except ValueError:
                return None
            if offset_of(obj) != at:
                return None
            objsize = read_u64(scratch, at + OBJ_SIZE_AT)
            table = None
            meta_end = at + objsize
            if isinstance(obj, pyshm.Mempool):
                table = block_table(obj, base_of(scratch))
                meta_end = min(table)
            with memoryview(scratch) as m:
                image = bytes(m[at:meta_end])
            return image, table, objsize
        finally:
            scratch.cleanup()

    def forge_pool_geometry(self):
        """Rewrite a real pool's header (and queues) with another consistent geometry."""
        rng = self.rng
        victim = rng.choice([off for off, (k, _) in self.objects.items() if k == "pool"])
        for _ in range(6):
            count = rng.choice([1, 2, 3, rng.randint(1, 64), rng.randint(64, 2000)])
            elt = rng.choice([1, 8, 16, 64, 200, 1000, 4096])
            made = self.scratch_object(victim, lambda s: pyshm.Mempool(count, elt, shm=s))
            if made:
                break
        else:
            return
        image, table, _ = made
        shm = self.mappings[0].shm
        nxt = read_u64(shm, victim + OBJ_NEXT_AT)
        name = bytes(memoryview(shm)[victim + OBJ_NAME_AT : victim + OBJECT_HEADER])
        write_bytes(shm, victim, image)
        write_u64(shm, victim + OBJ_NEXT_AT, nxt)
        write_bytes(shm, victim + OBJ_NAME_AT, name)
        self.add_legal(table, victim)
        self.log(f"forge: pool at {victim} rewritten as count={count} elt={elt}")
        self.pending_ops += ["from_offset_pool_exact", "attach_pool", "get_many", "get"]

    def forge_pool_in_free_space(self):
        """A valid pool carved by nobody, linked at the head of the object list."""
        rng = self.rng
        shm = self.mappings[0].shm
        end = read_u64(shm, CARVE_END_AT)
        size = self.mappings[0].size
        at = (min(end, size) + 63) // 64 * 64 + 64 * rng.randint(0, 4)
        count, elt = rng.randint(1, 16), rng.choice([8, 64, 100])
        made = self.scratch_object(at, lambda s: pyshm.Mempool(count, elt, shm=s))
        if not made:
            return
        image, table, _ = made
        head = read_u64(shm, OBJECTS_HEAD_AT)
        write_bytes(shm, at, image)
        write_u64(shm, at + OBJ_NEXT_AT, head)
        write_u64(shm, OBJECTS_HEAD_AT, at)
        self.add_legal(table, at)
        self.extra_offsets.add(at)
        self.log(f"forge: free-space pool at {at} count={count} elt={elt}, linked at the list head")

    def forge_ring_geometry(self):
        rng = self.rng
        victim = rng.choice([off for off, (k, _) in self.objects.items() if k == "ring"])
        cap = rng.choice([1, 2, 7, 64, 300])
        made = self.scratch_object(victim, lambda s: pyshm.Ring(cap, shm=s))
        if not made:
            return
        image, _, _ = made
        shm = self.mappings[0].shm
        nxt = read_u64(shm, victim + OBJ_NEXT_AT)
        write_bytes(shm, victim, image)
        write_u64(shm, victim + OBJ_NEXT_AT, nxt)
        self.log(f"forge: ring at {victim} rewritten with capacity {cap}")
        self.pending_ops += ["from_offset_ring_exact"]

    def rewind_carve(self):
        """The carve pointer moved back onto (or into) an existing object."""
        rng = self.rng
        targets = list(self.objects) + [rng.randrange(REGION_HEADER, self.mappings[0].size, 64)]
        at = rng.choice(targets)
        write_u64(self.mappings[0].shm, CARVE_END_AT, at)
        self.log(f"forge: carve_end rewound to {at}")
        self.pending_ops += [rng.choice(["create_pool", "create_ring"]), "create_pool"]

    def inject_entry(self):
        """A ring entry, published at the consumer's position, naming a block held here,
        whose state word is made to say IN_RING: a second view of a held block."""
        if not self.held:
            return
        rng = self.rng
        shm = self.mappings[0].shm
        view, _, poff = rng.choice(self.held)
        block = address_of(view) - self.mappings[0].base
        states = read_u64(shm, poff + POOL_STATES_OFFSET_AT)
        table = sorted(o for o, p in self.block_pool.items() if p == poff)
        if block not in table or not (poff < states < self.objects.get(poff, ("", 0))[1]):
            return
        state_at = states + 16 * table.index(block)  # state and holder words: 16 bytes a block
        st = read_u64(shm, state_at)
        write_u64(shm, state_at, (st & ~3) | 2)
        q = rng.choice(self.rings)
        cap = q.obj.count
        deq = read_u64(shm, q.off + DEQ_AT)
        slot = q.off + SHARED_HEADER + 16 * (deq % cap)
        write_bytes(shm, slot, struct.pack("<QQ", (2 * deq + 1) & U64, block))
        self.log(f"forge: ring at {q.off} slot for position {deq} names held block {block}")

    def structured(self):
        choice = self.rng.choice(["geometry", "geometry", "free_space", "ring", "carve", "carve", "inject"])
        {"geometry": self.forge_pool_geometry, "free_space": self.forge_pool_in_free_space,
         "ring": self.forge_ring_geometry, "carve": self.rewind_carve, "inject": self.inject_entry}[choice]()

    # -- operations -----------------------------------------------------------------

    def pick_held(self, mapping=None):
        cands = [e for e in self.held if mapping is None or e[1] is mapping]
        if not cands:
            return None
        return self.rng.choice(cands)

    def pool_for(self, entry):
        """Usually a handle on the view's own pool in its own mapping, sometimes any pool."""
        view, m, poff = entry
        good = [h for h in self.pools if h.mapping is m and h.off == poff]
        if good and self.rng.random() < 0.85:
            return self.rng.choice(good)
        return self.rng.choice(self.pools)

    def op_get(self, block=False):
        p = self.rng.choice(self.pools)
        v = p.obj.get(block=True, timeout=SHORT_TIMEOUT) if block else p.obj.get()
        self.take([v], p)

    def op_get_many(self, block=False):
        p = self.rng.choice(self.pools)
        n = self.rng.randint(1, p.obj.count + 2)
        views = p.obj.get_many(n, block=True, timeout=SHORT_TIMEOUT) if block else p.obj.get_many(n)
        if not 1 <= len(views) <= n:
            self.violation(f"get_many({n}) returned {len(views)} views")
        self.take(views, p)

    def put_blocked(self, p):
        """A put into a free queue that reads as full retries 100,000 times (yielding the
        CPU) before it gives up: after one such put, mostly leave that pool alone, to keep
        the campaign fast."""
        return (p.mapping, p.off) in self.blocked and self.rng.random() < 0.85

    def putting(self, p, fn, *args):
        try:
            fn(*args)
        except pyshm.PyshmError as e:
            if type(e) is pyshm.PyshmError:  # the free queue stayed blocked: -EAGAIN
                self.blocked.add((p.mapping, p.off))
            raise

    def op_put(self):
        e = self.pick_held()
        if e is None:
            return self.op_get()
        p = self.pool_for(e)
        if self.put_blocked(p):
            return self.op_counts()
        self.putting(p, p.obj.put, e[0])
        self.drop(e[0])

    def op_put_many(self):
        e = self.pick_held()
        if e is None:
            return self.op_get_many()
        p = self.pool_for(e)
        if self.put_blocked(p):
            return self.op_counts()
        same = [x for x in self.held if x[1] is e[1] and x[2] == e[2]]
        chosen = self.rng.sample(same, self.rng.randint(1, len(same)))
        views = [x[0] for x in chosen]
        self.putting(p, p.obj.put_many, views)
        for v in views:
            self.drop(v)

    def ring_for(self, mapping):
        good = [h for h in self.rings if h.mapping is mapping]
        if good and self.rng.random() < 0.9:
            return self.rng.choice(good)
        return self.rng.choice(self.rings)

    def op_enqueue(self, block=False):
        e = self.pick_held()
        if e is None:
            return self.op_get()
        q = self.ring_for(e[1])
        if block:
            q.obj.enqueue(e[0], block=True, timeout=SHORT_TIMEOUT)
        else:
            q.obj.enqueue(e[0])
        self.drop(e[0])

    def op_enqueue_many(self):
        e = self.pick_held()
        if e is None:
            return self.op_get_many()
        q = self.ring_for(e[1])
        same = [x for x in self.held if x[1] is e[1]]
        chosen = self.rng.sample(same, self.rng.randint(1, min(len(same), q.obj.count)))
        views = [x[0] for x in chosen]
        if self.rng.random() < 0.3:
            q.obj.enqueue_many(views, block=True, timeout=SHORT_TIMEOUT)
        else:
            q.obj.enqueue_many(views)
        for v in views:
            self.drop(v)

    def op_dequeue(self, block=False, sized=False):
        q = self.rng.choice(self.rings)
        size = None
        if sized:
            size = self.rng.choice([1, 2, 7, 8, 24, 64, 100, 256, 1000, 5000, 1 << 40])
        if block:
            v = q.obj.dequeue(size, block=True, timeout=SHORT_TIMEOUT)
        else:
            v = q.obj.dequeue(size)
        if size is not None and len(v) != size:
            self.violation(f"dequeue({size}) returned a view of {len(v)} bytes")
        self.take([v], q)

    def op_dequeue_many(self, block=False):
        q = self.rng.choice(self.rings)
        n = self.rng.randint(1, q.obj.count + 2)
        views = q.obj.dequeue_many(n, block=True, timeout=SHORT_TIMEOUT) if block else q.obj.dequeue_many(n)
        if not 1 <= len(views) <= n:
            self.violation(f"dequeue_many({n}) returned {len(views)} views")
        self.take(views, q)

    def op_attach(self, kind):
        m = self.rng.choice(self.mappings)
        names = [n for n, k in self.names.items() if k == kind] or ["pool0"]
        name = self.rng.choice(names + ["ring0", "pool1", "nope"])
        cls = pyshm.Mempool if kind == "pool" else pyshm.Ring
        obj = cls.attach(m.shm, name)
        self.add_handle(obj, m, kind)

    def add_handle(self, obj, m, kind):
        h = Handle(obj, m, kind)
        (self.pools if kind == "pool" else self.rings).append(h)
        self.log(f"  new {kind} handle at {h.off} ({m.label} mapping)")

    def op_from_offset(self, kind, exact=False):
        rng = self.rng
        m = rng.choice(self.mappings)
        same = [off for off, (k, _) in self.objects.items() if k == kind]
        if exact or rng.random() < 0.6:
            off = rng.choice(same)
        else:
            off = (rng.choice(self.interesting_offsets()) + rng.choice([0, 64, -64, 8, 1])) % (1 << 64)
        cls = pyshm.Mempool if kind == "pool" else pyshm.Ring
        obj = cls._from_offset(m.shm, off)
        self.add_handle(obj, m, kind)

    def op_counts(self):
        for h in self.pools:
            count = h.obj.count
            free, used = h.obj.free_count, h.obj.used_count
            if not (0 <= free <= count and 0 <= used <= count):
                self.violation(f"pool at {h.off}: free_count {free}, used_count {used} of {count}")
            if not self.concurrent and free + used != count:
                self.violation(f"pool at {h.off}: free_count {free} + used_count {used} != count {count}")
        for h in self.rings:
            count = h.obj.count
            n, free = len(h.obj), h.obj.free_count
            if not (0 <= n <= count and 0 <= free <= count):
                self.violation(f"ring at {h.off}: len {n}, free_count {free} of {count}")
            if not self.concurrent and n + free != count:
                self.violation(f"ring at {h.off}: len {n} + free_count {free} != count {count}")
            h.obj.is_shutdown

    def op_shutdown(self):
        q = self.rng.choice(self.rings)
        q.obj.shutdown(immediate=self.rng.random() < 0.5)

    def op_reattach(self):
        """A second mapping of the same file, with an empty pool table: its first dequeue
        walks the (corrupted) object list."""
        if len(self.mappings) >= 3:
            return self.op_counts()
        fd = os.dup(self.mappings[0].shm.fileno())
        shm = pyshm.ShareMem._from_fd(fd)  # takes fd, also on failure
        m = Mapping(shm, f"re-attached#{len(self.mappings)}")
        self.mappings.append(m)
        self.log(f"  re-attached: region size {m.size}")
        for off, (kind, _) in self.objects.items():
            cls = pyshm.Mempool if kind == "pool" else pyshm.Ring
            if kind == "pool" and self.rng.random() < 0.5:
                continue  # leave it to the walk
            try:
                self.add_handle(cls._from_offset(shm, off), m, kind)
            except ALLOWED:
                pass

    def op_create(self, kind):
        """A new pool or ring in the corrupted region. Its legal blocks come from the same
        object made at the same offset in a scratch region."""
        rng = self.rng
        m = self.mappings[0]
        if kind == "pool":
            count, elt = rng.choice([1, 3, rng.randint(1, 300), rng.randint(300, 3000)]), rng.choice([8, 16, 64, 200, 4096])
            obj = pyshm.Mempool(count, elt, shm=m.shm)
            off = offset_of(obj)
            made = self.scratch_object(off, lambda s: pyshm.Mempool(count, elt, shm=s))
            if made is None:
                self.violation(f"Mempool({count}, {elt}) was carved at {off}, where a scratch region cannot carve it")
                return
            self.add_legal(made[1], off)
            self.log(f"  created pool count={count} elt={elt} at {off}")
        else:
            obj = pyshm.Ring(rng.choice([1, 2, 8, 100]), shm=m.shm)
            self.log(f"  created ring at {offset_of(obj)}")
        self.add_handle(obj, m, kind)

    def op_reclaim(self):
        reclaim = getattr(self.rng.choice(self.pools).obj, "reclaim", None)
        if reclaim is not None:
            reclaim()

    def op_release(self):
        e = self.pick_held()
        if e is not None:
            e[0].release()
            self.drop(e[0])

    OPS = [
        ("get", 10, lambda w: w.op_get()),
        ("get_block", 1, lambda w: w.op_get(block=True)),
        ("get_many", 6, lambda w: w.op_get_many()),
        ("get_many_block", 1, lambda w: w.op_get_many(block=True)),
        ("put", 12, lambda w: w.op_put()),
        ("put_many", 5, lambda w: w.op_put_many()),
        ("enqueue", 10, lambda w: w.op_enqueue()),
        ("enqueue_block", 1, lambda w: w.op_enqueue(block=True)),
        ("enqueue_many", 5, lambda w: w.op_enqueue_many()),
        ("dequeue", 10, lambda w: w.op_dequeue()),
        ("dequeue_size", 4, lambda w: w.op_dequeue(sized=True)),
        ("dequeue_block", 1, lambda w: w.op_dequeue(block=True)),
        ("dequeue_many", 6, lambda w: w.op_dequeue_many()),
        ("dequeue_many_block", 1, lambda w: w.op_dequeue_many(block=True)),
        ("attach_pool", 2, lambda w: w.op_attach("pool")),
        ("attach_ring", 2, lambda w: w.op_attach("ring")),
        ("from_offset_pool", 3, lambda w: w.op_from_offset("pool")),
        ("from_offset_ring", 3, lambda w: w.op_from_offset("ring")),
        ("counts", 4, lambda w: w.op_counts()),
        ("shutdown", 1, lambda w: w.op_shutdown()),
        ("reattach", 2, lambda w: w.op_reattach()),
        ("create_pool", 1, lambda w: w.op_create("pool")),
        ("create_ring", 1, lambda w: w.op_create("ring")),
        ("reclaim", 1, lambda w: w.op_reclaim()),
        ("release", 1, lambda w: w.op_release()),
    ]
    EXTRA_OPS = {
        "from_offset_pool_exact": lambda w: w.op_from_offset("pool", exact=True),
        "from_offset_ring_exact": lambda w: w.op_from_offset("ring", exact=True),
    }

    def run_op(self, name=None):
        if name is None:
            names, weights, fns = zip(*self.OPS)
            i = self.rng.choices(range(len(names)), weights)[0]
            name, fn = names[i], fns[i]
        else:
            fn = self.EXTRA_OPS.get(name) or dict((n, f) for n, _, f in self.OPS)[name]
        self.log(f"op {name}")
        try:
            fn(self)
        except ALLOWED as e:
            self.log(f"  -> {type(e).__name__}: {e}")
        except Exception as e:  # anything else is a failure
            self.violation(f"op {name}: unexpected {type(e).__name__}: {e}")

    def run_ops(self, n):
        for _ in range(n):
            if self.pending_ops and self.rng.random() < 0.7:
                self.run_op(self.pending_ops.pop(0))
            else:
                self.run_op()

    # -- the end -----------------------------------------------------------------------

    def finish(self):
        """Release every view; each mapping must then clean up (no export leaked)."""
        for e in self.held:
            e[0].release()
        self.held.clear()
        self.pools.clear()
        self.rings.clear()
        for m in self.mappings:
            try:
                m.shm.cleanup()
            except BufferError:
                gc.collect()
                try:
                    m.shm.cleanup()
                except BufferError as e:
                    self.violation(f"{m.label} mapping: cleanup() after every view was released: {e}")
        self.mappings.clear()


def run_case(seed, verbose=False, forge=True):
    """One corruption case; returns the violations (a crash or hang never returns).
    forge=False leaves out the forged objects (random corruptions only)."""
    w = World(seed, verbose)
    w.build()
    rng = w.rng
    if rng.random() < 0.2 and forge:
        w.structured()
        if rng.random() < 0.3:
            w.structured()
    w.corrupt(rng.choice([0, 1, 1, 2, 3, 4, 6, 8]) if w.pending_ops else rng.randint(1, 8))
    w.run_ops(rng.randint(10, 40))
    w.finish()
    return w.violations


# --- the campaign: forked workers, each running a range of cases ---------------------------

CASE_GUARD = 20.0  # seconds without progress before a worker counts as hung


def _worker(seeds, wfd, forge):
    """Child: run cases, reporting progress on wfd; ends with os._exit."""
    code = 0
    try:
        out = os.fdopen(wfd, "w", buffering=1)
        for seed in seeds:
            out.write(f"S {seed}\n")
            try:
                found = run_case(seed, forge=forge)
            except Exception as e:  # the engine or the clean setup failed: report it too
                found = [f"internal error: {type(e).__name__}: {e}"]
            for v in found:
                out.write(f"F {seed} {v.replace(chr(10), ' ')}\n")
                code = 1
        out.write("E\n")
        out.flush()
    except BaseException as e:
        try:
            out.write(f"X {type(e).__name__}: {str(e).replace(chr(10), ' ')}\n")
            out.flush()
        except BaseException:
            pass
        code = 1
    os._exit(code)


class Outcome:
    def __init__(self):
        self.cases = 0
        self.crashes = []  # (seed, signal or status)
        self.hangs = []
        self.violations = []  # (seed, message)
        self.errors = []

    def ok(self):
        return not (self.crashes or self.hangs or self.violations or self.errors)


def _spawn(seeds, forge):
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _worker(seeds, w, forge)
    os.close(w)
    return pid, r


def campaign(seeds, workers=2, guard=CASE_GUARD, max_hangs=3, forge=True):
    """Run every seed in forked workers; a crash or hang loses only its own case (a new
    worker takes the rest of the range)."""
    out = Outcome()
    chunk = 50
    pending = [list(seeds[i : i + chunk]) for i in range(0, len(seeds), chunk)]
    running = {}  # read fd -> state dict

    def start(batch):
        pid, fd = _spawn(batch, forge)
        running[fd] = {"pid": pid, "batch": batch, "pos": -1, "buf": b"", "last": time.monotonic(), "ended": False}

    def finish_worker(fd, st, hang=False):
        os.close(fd)
        del running[fd]
        if hang:
            os.kill(st["pid"], signal.SIGKILL)
        _, status = os.waitpid(st["pid"], 0)
        cur = st["pos"]
        if hang:
            out.hangs.append(st["batch"][cur])
        elif not st["ended"]:
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.WEXITSTATUS(status)}"
            if cur >= 0:
                out.crashes.append((st["batch"][cur], how))
            else:
                out.errors.append(f"worker died before its first case ({how})")
        rest = st["batch"][cur + 1 :] if not st["ended"] else []
        if rest and len(out.hangs) < max_hangs:
            pending.insert(0, rest)

    while pending or running:
        while pending and len(running) < workers and len(out.hangs) < max_hangs:
            start(pending.pop(0))
        if not running:
            break
        ready, _, _ = select.select(list(running), [], [], 0.5)
        for fd in ready:
            st = running[fd]
            data = os.read(fd, 65536)
            st["last"] = time.monotonic()
            if not data:
                finish_worker(fd, st)
                continue
            st["buf"] += data
            *lines, st["buf"] = st["buf"].split(b"\n")
            for line in lines:
                kind, _, rest = line.decode(errors="replace").partition(" ")
                if kind == "S":
                    st["pos"] += 1
                    out.cases += 1
                elif kind == "F":
                    seed, _, msg = rest.partition(" ")
                    out.violations.append((int(seed), msg))
                elif kind == "E":
                    st["ended"] = True
                elif kind == "X":
                    out.errors.append(f"worker error at seed {st['batch'][max(st['pos'], 0)]}: {rest}")
                    st["ended"] = True
        now = time.monotonic()
        for fd, st in list(running.items()):
            if now - st["last"] > guard:
                finish_worker(fd, st, hang=True)
    return out


# --- concurrent corruption: a writer process scribbles while an operator works ----------


def writer_loop(world, seed, stop_fd, forged_images, ready_fd=None, max_seconds=15.0):
    """Child: keep corrupting world's region until stop_fd is readable (or a time bound).

    Strategies: a persistent corruption; a word toggled between its clean value and a
    corrupt one many times (validate-then-use races); a stretch of metadata put back to
    its clean bytes; a pool header flipped between its real image and a forged,
    consistent one."""
    rng = random.Random(seed ^ 0x5EED)
    world.rng = rng
    shm = world.mappings[0].shm
    with memoryview(shm) as m:
        clean = bytes(m)
    deadline = time.monotonic() + max_seconds
    n = 0
    with writable(shm) as m:
        if ready_fd is not None:
            os.write(ready_fd, b"r")
        while time.monotonic() < deadline:
            n += 1
            if n % 16 == 0 and select.select([stop_fd], [], [], 0)[0]:
                break
            r = rng.random()
            if r < 0.3:
                at, width = world.pick_target()
                cur = int.from_bytes(m[at : at + width], "little")
                m[at : at + width] = world.pick_value(cur, width).to_bytes(width, "little")
            elif r < 0.75:
                at, width = world.pick_target()
                orig = bytes(m[at : at + width])
                bad = world.pick_value(int.from_bytes(orig, "little"), width).to_bytes(width, "little")
                for _ in range(rng.randint(100, 3000)):
                    m[at : at + width] = bad
                    m[at : at + width] = orig
            elif r < 0.9 or not forged_images:
                off, (kind, end) = rng.choice(list(world.objects.items()))
                lo = rng.randrange(off, end, 8)
                hi = min(end, lo + rng.choice([8, 64, 512, 4096]))
                m[lo:hi] = clean[lo:hi]
            else:
                at, image = rng.choice(forged_images)
                real = clean[at : at + len(image)]
                nxt = clean[at + OBJ_NEXT_AT : at + OBJ_NEXT_AT + 8]
                name = clean[at + OBJ_NAME_AT : at + OBJECT_HEADER]
                forged = image[:OBJ_NEXT_AT] + nxt + image[OBJ_NEXT_AT + 8 : OBJ_NAME_AT] + name + image[OBJECT_HEADER:]
                for _ in range(rng.randint(10, 300)):
                    m[at : at + len(image)] = forged
                    m[at : at + len(image)] = real
    return n


def forged_pool_images(world):
    """Forged, consistent geometries for the real pools: (offset, image); their blocks are
    added to world.legal so the operator accepts views of them."""
    images = []
    for off, (kind, _) in world.objects.items():
        if kind != "pool":
            continue
        for count, elt in ((world.rng.randint(1, 40), 8), (world.rng.randint(100, 1500), 16)):
            made = world.scratch_object(off, lambda s: pyshm.Mempool(count, elt, shm=s))
            if made:
                images.append((off, made[0]))
                world.add_legal(made[1], off)
    return images


# --- command line: replay one case ------------------------------------------------------


def forge_table_reproducer():
    """Minimal reproducer: a pool whose header another process rewrote with a consistent
    geometry, attached in a process that already knows the pool at that offset."""
    shm = pyshm.ShareMem(1 << 20)
    pool = pyshm.Mempool(4, 4096, shm=shm)  # known here: 4 blocks of 4096 bytes
    off = offset_of(pool)
    write_u64(shm, CARVE_END_AT, off)  # the carve pointer rewound onto it...
    try:
        bigger = pyshm.Mempool(20000, 8, shm=shm)  # ...so this one is carved at the same offset
    except ALLOWED as e:
        print(f"refused: {type(e).__name__}: {e}", flush=True)
        return
    views = bigger.get_many(20000)
    print(f"get_many: {len(views)} views of {len(views[-1])} bytes; the last at region offset "
          f"{address_of(views[-1]) - base_of(shm)} of {shm.size}", flush=True)
    views[-1][:] = b"x" * len(views[-1])
    print("survived", flush=True)


def concurrent_round(seed, forged, ops, verbose=True):
    """One round of test_concurrent_corruption in-process (the operator is this process),
    printing every operation. Not deterministic: the writer runs alongside."""
    world = World(seed)
    world.build()
    images = forged_pool_images(world) if forged else []
    stop_r, stop_w = os.pipe()
    ready_r, ready_w = os.pipe()
    writer = os.fork()
    if writer == 0:
        code = 1
        try:
            writer_loop(world, seed, stop_r, images, ready_w)
            code = 0
        finally:
            os._exit(code)
    os.read(ready_r, 1)
    world.concurrent = True
    world.verbose = verbose
    try:
        world.run_ops(ops)
    finally:
        os.write(stop_w, b"x")
        os.waitpid(writer, 0)
    world.finish()
    return world.violations


if __name__ == "__main__":
    if sys.argv[1:] == ["--forge-table"]:
        forge_table_reproducer()
    elif sys.argv[1:2] == ["--concurrent"]:
        # --concurrent SEED: the round of test_concurrent_corruption with that seed (its
        # rounds alternate: odd rounds also flip pool headers to forged geometries).
        seed = int(sys.argv[2], 0)
        found = concurrent_round(seed, seed % 2 == 1, 600)
        print(f"concurrent round {seed}: {len(found)} violation(s)", flush=True)
        for v in found:
            print("  " + v)
    else:
        for arg in sys.argv[1:]:
            print(f"case {arg}:", flush=True)
            found = run_case(int(arg, 0), verbose=True)
            print(f"case {arg}: {len(found)} violation(s)", flush=True)
            for v in found:
                print("  " + v)
