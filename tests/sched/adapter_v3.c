/*
 * adapter_v3.c - sim.h for the pyshm core of layout version 3 (src/core of this tree): a
 * member table with lock bytes, queues whose claims are announced in members' entries,
 * staged ring slots, repair acting for the dead through their own entries.
 *
 * Core sources this adapter is built with (run.sh reads the next line):
 * SIM_CORE_SOURCES: region.c mempool.c pool_table.c block_ring.c queue.c member.c repair.c space.c rawbuf.c fault.c
 *
 * Left out, and provided here instead:
 *   liveness.c  the kernel's part: OFD locks on bytes of the region file become a table
 *               "byte -> identity holding it"; a byte held by an actor that is dead is free
 *               (the kernel drops a dead process's locks). Testing or taking a byte held by
 *               another actor is a liveness query of that actor (a G decision: it may die
 *               right then), and every lock operation is a scheduling point (the kernel
 *               serialises them, and the code around them races on them).
 *   wait.c      the clock (virtual), futex sleep (a yield) and wake (nothing: nobody sleeps).
 *
 * Every identity (the actors and the survivor) gets its own struct pyshm_space on the one
 * mapping: its own member entry, lock description and pool table, as separate processes
 * have.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block_ring.h"
#include "errors.h"
#include "hooks.h"
#include "liveness.h"
#include "member.h"
#include "mempool.h"
#include "pool_table.h"
#include "region.h"
#include "repair.h"
#include "space.h"
#include "wait.h"

#include "sched.h"
#include "sim.h"

#define NIDS (SIM_MAX_ACTORS + 1)
#define LOCK_FD_BASE 1000 /* lock description of identity i: LOCK_FD_BASE + i */
#define REGION_FD 999     /* the shared description every handle tests locks through */
#define PUT_PATIENCE_NS UINT64_C(200000000)
#define RECLAIM_BUSY_ATTEMPTS 50

static struct {
    struct sim_shape shape;
    struct pyshm_space setup; /* the creator's handle, used by introspection */
    const struct pyshm_pool *pool[SIM_MAX_POOLS];
    struct pyshm_block_ring ring[SIM_MAX_RINGS];
    uint64_t pool_off[SIM_MAX_POOLS], ring_off[SIM_MAX_RINGS];
    struct {
        struct pyshm_space space;
        const struct pyshm_pool *pool[SIM_MAX_POOLS];
        struct pyshm_block_ring ring[SIM_MAX_RINGS];
    } proc[NIDS];
    struct pyshm_member_table *table;
    /* the "kernel": which identity holds each lock byte (-1: nobody) */
    int repair_lock;
    int entry_lock[PYSHM_MEMBER_ENTRIES];
    unsigned char *snapshot;
    size_t snapshot_len;
    int made;
} W;

/* ------------------------------------------------------------------ the kernel's part */

/* Where a lock operation is a scheduling point: a word of the shared mapping next to what
 * the byte locks (an entry's unused word, the table header for the repair lock), so that
 * the scheduler treats it like any shared atomic (and names it in a log). */
static const void *lock_point(uint64_t offset)
{
    if (offset == PYSHM_REPAIR_LOCK_OFFSET)
        return &W.table->reserved[0];
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++)
        if (offset == pyshm_member_lock_offset(i))
            return &W.table->entry[i].reserved2[0];
    return W.table;
}

static int *lock_slot(uint64_t offset)
{
    if (offset == PYSHM_REPAIR_LOCK_OFFSET)
        return &W.repair_lock;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++)
        if (offset == pyshm_member_lock_offset(i))
            return &W.entry_lock[i];
    return NULL;
}

/* The holder of a byte, once the dead have let go of theirs. Asking about a live one
 * other than the caller is a liveness query: the scheduler may let it die right here. */
static int holder_now(int *slot)
{
    int h = *slot;
    if (h >= 0 && h != sched_current() && h < W.shape.actors && sched_liveness_query(h))
        *slot = h = -1;
    return h;
}

int pyshm_lock_open(int region_fd, const char *name)
{
    (void)region_fd;
    (void)name;
    return LOCK_FD_BASE + (sched_current() < 0 ? NIDS : sched_current());
}

void pyshm_lock_close(int lock_fd)
{
    int id = lock_fd - LOCK_FD_BASE;
    if (W.repair_lock == id)
        W.repair_lock = -1;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++)
        if (W.entry_lock[i] == id)
            W.entry_lock[i] = -1;
}

int pyshm_lock_try(int lock_fd, uint64_t offset)
{
    int *slot = lock_slot(offset);
    sched_point(SCHED_OP_CAS, lock_point(offset));
    int h = holder_now(slot);
    if (h >= 0 && h != lock_fd - LOCK_FD_BASE)
        return -EAGAIN;
    *slot = lock_fd - LOCK_FD_BASE;
    return 0;
}

void pyshm_lock_drop(int lock_fd, uint64_t offset)
{
    int *slot = lock_slot(offset);
    sched_point(SCHED_OP_STORE, lock_point(offset));
    if (*slot == lock_fd - LOCK_FD_BASE)
        *slot = -1;
}

int pyshm_lock_held(int fd, uint64_t offset)
{
    (void)fd;
    int *slot = lock_slot(offset);
    sched_point(SCHED_OP_LOAD, lock_point(offset));
    return holder_now(slot) >= 0;
}

uint64_t pyshm_fork_generation(void) { return 0; }

void pyshm_identity_self(struct pyshm_identity *id)
{
    id->pid = (uint64_t)(1000 + sched_current());
    id->pidns = 1;
    id->pidfs = 0;
}

int pyshm_identity_gone(const struct pyshm_identity *id)
{
    (void)id;
    return 0; /* every simulated process holds its lock: never asked */
}

/* ------------------------------------------------------------------ time, sleeping */

uint64_t pyshm_now_ns(void) { return sched_now_ns(); }
uint32_t pyshm_wait_prepare(struct pyshm_waitpoint *w)
{
    (void)w;
    return 0;
}
void pyshm_wait_sleep(struct pyshm_waitpoint *w, uint32_t e, uint64_t timeout_ns)
{
    (void)w;
    (void)e;
    (void)timeout_ns;
    sched_yield();
}
void pyshm_wait_wake(struct pyshm_waitpoint *w, uint64_t marker)
{
    (void)w;
    (void)marker;
}
void pyshm_wait_wake_all(struct pyshm_waitpoint *w) { (void)w; }

/* ------------------------------------------------------------------ life cycle */

const char *sim_core_name(void) { return "pyshm core, layout 3 (member table, staged slots)"; }

const char *sim_rc_name(int rc)
{
    static const char *names[] = {"OK", "EMPTY", "FULL", "AGAIN", "STALE", "BUSY", "SHUTDOWN", "CORRUPT", "ERROR"};
    return rc >= 0 && rc <= SIM_ERROR ? names[rc] : "?";
}

static int map_rc(long rc)
{
    if (rc >= 0)
        return SIM_OK;
    switch (-rc) {
    case PYSHM_EEMPTY:
        return SIM_EMPTY;
    case PYSHM_EFULL:
        return SIM_FULL;
    case EAGAIN:
        return SIM_AGAIN;
    case PYSHM_ESTALE:
    case PYSHM_ENOTYOURS:
        return SIM_STALE;
    case EBUSY:
        return SIM_BUSY;
    case ESHUTDOWN:
        return SIM_SHUTDOWN;
    case PYSHM_ECORRUPT:
        return SIM_CORRUPT;
    default:
        return SIM_ERROR;
    }
}

static void quiet_waitpoints(const struct pyshm_queue_shared *q)
{
    sched_add_quiet(&q->not_empty, sizeof(q->not_empty));
    sched_add_quiet(&q->not_full, sizeof(q->not_full));
}

/* A handle on the one mapping for identity id: nothing is unmapped or closed by it. */
static int make_proc(int id)
{
    struct pyshm_space *s = &W.proc[id].space;
    memset(s, 0, sizeof(*s));
    s->region = W.setup.region;
    s->region.fd = -1;
    s->members.table = W.table;
    s->members.region_fd = REGION_FD;
    s->members.lock_fd = LOCK_FD_BASE + id;
    s->members.lock_fork_gen = 0;
    if (pyshm_pool_table_add_new(&s->pools, &s->region) < 0)
        return -1;
    for (int p = 0; p < W.shape.pools; p++)
        W.proc[id].pool[p] = pyshm_pool_table_at(&s->pools, W.pool_off[p]);
    for (int q = 0; q < W.shape.rings; q++)
        if (pyshm_block_ring_attach(&s->region, W.ring_off[q], &W.proc[id].ring[q]) < 0)
            return -1;
    return 0;
}

int sim_world_create(const struct sim_shape *shape)
{
    if (W.made)
        sim_world_destroy();
    memset(&W, 0, sizeof(W));
    W.shape = *shape;
    if (shape->pools < 1 || shape->pools > SIM_MAX_POOLS || shape->blocks < 1 || shape->blocks > SIM_MAX_BLOCKS ||
        shape->rings < 0 || shape->rings > SIM_MAX_RINGS || shape->actors < 1 || shape->actors > SIM_MAX_ACTORS ||
        (shape->rings > 0 && (shape->ring_capacity < 1 || shape->ring_capacity > SIM_MAX_CAPACITY))) {
        fprintf(stderr, "sim_world_create: shape out of range\n");
        return -1;
    }
    uint64_t size = 4096, bytes;
    for (int p = 0; p < shape->pools; p++) {
        pyshm_pool_footprint((uint64_t)shape->blocks, SIM_BLOCK_BYTES, &bytes);
        size += bytes;
    }
    for (int q = 0; q < shape->rings; q++) {
        pyshm_block_ring_footprint((uint64_t)shape->ring_capacity, &bytes);
        size += bytes;
    }
    sched_enter_as(SCHED_MAIN);
    int rc = pyshm_region_create(&W.setup.region, size);
    if (rc < 0) {
        fprintf(stderr, "pyshm_region_create: %s\n", strerror(-rc));
        return -1;
    }
    W.table = pyshm_region_members(&W.setup.region);
    unsigned pf = (shape->pool_flags & SIM_POOL_SP_PUT ? PYSHM_MEMPOOL_F_SP_PUT : 0) |
                  (shape->pool_flags & SIM_POOL_SC_GET ? PYSHM_MEMPOOL_F_SC_GET : 0);
    unsigned rf = (shape->ring_flags & SIM_RING_SP_ENQ ? PYSHM_BLOCK_RING_F_SP_ENQ : 0) |
                  (shape->ring_flags & SIM_RING_SC_DEQ ? PYSHM_BLOCK_RING_F_SC_DEQ : 0);
    for (int p = 0; p < shape->pools; p++) {
        if ((rc = pyshm_pool_create(&W.setup.region, (uint64_t)shape->blocks, SIM_BLOCK_BYTES, pf, NULL,
                                    &W.pool_off[p])) < 0 ||
            (rc = pyshm_pool_table_add(&W.setup.pools, &W.setup.region, W.pool_off[p], &W.pool[p])) < 0) {
            fprintf(stderr, "pool: %s\n", strerror(-rc));
            return -1;
        }
    }
    for (int q = 0; q < shape->rings; q++) {
        if ((rc = pyshm_block_ring_create(&W.setup.region, (uint64_t)shape->ring_capacity, rf, NULL,
                                          &W.ring_off[q])) < 0 ||
            (rc = pyshm_block_ring_attach(&W.setup.region, W.ring_off[q], &W.ring[q])) < 0) {
            fprintf(stderr, "ring: %s\n", strerror(-rc));
            return -1;
        }
    }
    W.snapshot_len = (size_t)(PYSHM_OBJECTS_OFFSET + pyshm_region_carved(&W.setup.region));
    W.snapshot = malloc(W.snapshot_len);
    memcpy(W.snapshot, W.setup.region.base, W.snapshot_len);
    for (int id = 0; id <= shape->actors; id++)
        if (make_proc(id) < 0) {
            fprintf(stderr, "make_proc failed\n");
            return -1;
        }
    sched_set_describe(sim_describe_address);
    sched_set_shared(W.setup.region.base, W.setup.region.map_size);
    sched_clear_quiet();
    /* Member entries [actors + 1, 256) are never written while actors run: each identity
     * (the actors and the survivor) joins at most once, joining takes the lowest free entry,
     * and an entry is freed only after its owner died - so only the first actors + 1 are
     * ever taken. Loads there read a free entry in every interleaving: the scans of join,
     * repair and liveness need no points for them. */
    sched_add_quiet(&W.table->entry[shape->actors + 1],
                    (PYSHM_MEMBER_ENTRIES - (unsigned)shape->actors - 1) * sizeof(struct pyshm_member_entry));
    /* Waitpoints: written only by a sleeper's prepare and by wake-ups, which are inert here. */
    for (int p = 0; p < shape->pools; p++)
        quiet_waitpoints(W.pool[p]->free_queue.shared);
    for (int q = 0; q < shape->rings; q++)
        quiet_waitpoints(W.ring[q].queue.shared);
    W.made = 1;
    sim_world_reset();
    return 0;
}

void sim_world_reset(void)
{
    memcpy(W.setup.region.base, W.snapshot, W.snapshot_len);
    W.repair_lock = -1;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++)
        W.entry_lock[i] = -1;
    for (int id = 0; id <= W.shape.actors; id++)
        memset(&W.proc[id].space.self, 0, sizeof(W.proc[id].space.self));
}

void sim_world_destroy(void)
{
    if (!W.made)
        return;
    for (int id = 0; id <= W.shape.actors; id++)
        pyshm_pool_table_free(&W.proc[id].space.pools);
    pyshm_pool_table_free(&W.setup.pools);
    pyshm_region_close(&W.setup.region);
    free(W.snapshot);
    sched_clear_quiet();
    memset(&W, 0, sizeof(W));
}

/* ------------------------------------------------------------------ operations */

static int pool_of_id(int id) { return id / W.shape.blocks; }
static uint64_t index_of_id(int id) { return (uint64_t)(id % W.shape.blocks); }

static int id_of(const struct pyshm_pool *pool, uint64_t index)
{
    for (int p = 0; p < W.shape.pools; p++)
        if (W.pool_off[p] == pool->offset)
            return p * W.shape.blocks + (int)index;
    return -1;
}

/* The membership of actor a, joining first (what the binding does before every call). */
static struct pyshm_member *member(int a, int *rc)
{
    return pyshm_space_member(&W.proc[a].space, rc);
}

static void core_block(int a, const struct sim_block *b, struct pyshm_block *out)
{
    out->pool = W.proc[a].pool[pool_of_id(b->id)];
    out->index = index_of_id(b->id);
    out->gen = b->token;
}

static int taken_out(const struct pyshm_block *taken, int64_t n, struct sim_block *out, int *got)
{
    for (int64_t i = 0; i < n; i++) {
        out[i].id = id_of(taken[i].pool, taken[i].index);
        out[i].token = taken[i].gen;
        if (out[i].id < 0)
            return SIM_ERROR;
    }
    *got = (int)n;
    return SIM_OK;
}

int sim_pool_get_burst(int a, int pool, struct sim_block *out, int max, int *got)
{
    struct pyshm_block taken[SIM_MAX_BLOCKS];
    int rc = 0;
    *got = 0;
    if (max > SIM_MAX_BLOCKS)
        max = SIM_MAX_BLOCKS;
    struct pyshm_member *m = member(a, &rc);
    if (!m)
        return map_rc(rc);
    int64_t n = pyshm_pool_get(W.proc[a].pool[pool], m, taken, (uint64_t)max);
    return n < 0 ? map_rc(n) : taken_out(taken, n, out, got);
}

int sim_pool_get(int a, int pool, struct sim_block *out)
{
    int got;
    return sim_pool_get_burst(a, pool, out, 1, &got);
}

/* Mempool.put / put_many: put; if the free queue stayed blocked, repair if someone is
 * gone and, if that put something right, try once more (mempool_type.c put_blocks). */
int sim_pool_put_burst(int a, struct sim_block *b, int n)
{
    struct pyshm_block blocks[SIM_MAX_BLOCKS];
    int rc = 0;
    if (n < 1 || n > SIM_MAX_BLOCKS)
        return SIM_ERROR;
    for (int i = 0; i < n; i++) {
        if (pool_of_id(b[i].id) != pool_of_id(b[0].id))
            return SIM_ERROR;
        core_block(a, &b[i], &blocks[i]);
    }
    struct pyshm_member *m = member(a, &rc);
    if (!m)
        return map_rc(rc);
    const struct pyshm_pool *p = W.proc[a].pool[pool_of_id(b[0].id)];
    rc = pyshm_pool_put(p, m, blocks, (uint64_t)n, PUT_PATIENCE_NS);
    if (rc == -EAGAIN) {
        struct pyshm_repair_report report;
        if (pyshm_repair(&W.proc[a].space, 1, &report) == 0 && report.entries + report.released > 0)
            rc = pyshm_pool_put(p, m, blocks, (uint64_t)n, PUT_PATIENCE_NS);
    }
    return map_rc(rc);
}

int sim_pool_put(int a, struct sim_block *b) { return sim_pool_put_burst(a, b, 1); }

int sim_ring_enqueue_burst(int a, int ring, struct sim_block *b, int n)
{
    struct pyshm_block blocks[SIM_MAX_CAPACITY];
    int rc = 0;
    if (n < 1 || n > SIM_MAX_CAPACITY)
        return SIM_ERROR;
    for (int i = 0; i < n; i++)
        core_block(a, &b[i], &blocks[i]);
    struct pyshm_member *m = member(a, &rc);
    if (!m)
        return map_rc(rc);
    return map_rc(pyshm_block_ring_enqueue(&W.proc[a].ring[ring], m, blocks, (uint64_t)n));
}

int sim_ring_enqueue(int a, int ring, struct sim_block *b) { return sim_ring_enqueue_burst(a, ring, b, 1); }

int sim_ring_dequeue_burst(int a, int ring, struct sim_block *out, int max, int *got)
{
    struct pyshm_block taken[SIM_MAX_CAPACITY];
    int rc = 0;
    *got = 0;
    if (max > SIM_MAX_CAPACITY)
        max = SIM_MAX_CAPACITY;
    struct pyshm_member *m = member(a, &rc);
    if (!m)
        return map_rc(rc);
    struct pyshm_space *s = &W.proc[a].space;
    int64_t n = pyshm_block_ring_dequeue(&W.proc[a].ring[ring], m, &s->pools, &s->region, 0, (uint64_t)max, taken);
    return n < 0 ? map_rc(n) : taken_out(taken, n, out, got);
}

int sim_ring_dequeue(int a, int ring, struct sim_block *out)
{
    int got;
    return sim_ring_dequeue_burst(a, ring, out, 1, &got);
}

int sim_ring_shutdown(int a, int ring, int immediate)
{
    int rc = 0;
    pyshm_block_ring_shutdown(&W.proc[a].ring[ring], immediate);
    if (!immediate)
        return SIM_OK;
    struct pyshm_member *m = member(a, &rc);
    if (!m)
        return map_rc(rc);
    struct pyshm_space *s = &W.proc[a].space;
    int64_t n = pyshm_block_ring_drain(&W.proc[a].ring[ring], m, &s->pools, &s->region);
    return n == -EAGAIN ? SIM_AGAIN : map_rc(n);
}

int sim_repair(int a, int only_after_deaths, struct sim_repair_result *res)
{
    struct pyshm_repair_report report;
    int rc = pyshm_repair(&W.proc[a].space, only_after_deaths, &report);
    for (int attempt = 1; !only_after_deaths && rc == -EBUSY && attempt < RECLAIM_BUSY_ATTEMPTS; attempt++) {
        sched_yield();
        rc = pyshm_repair(&W.proc[a].space, 0, &report);
    }
    res->work = rc == 0 ? (long)(report.entries + report.holes + report.finished + report.released + report.returned)
                        : 0;
    return map_rc(rc);
}

unsigned char *sim_block_data(int id)
{
    const struct pyshm_pool *p = W.pool[pool_of_id(id)];
    return p->data + index_of_id(id) * p->stride;
}

/* ------------------------------------------------------------------ introspection */

/* The identity whose membership a holder word is (identities join once per schedule). */
static int identity_of(uint64_t holder)
{
    if (holder == 0)
        return SIM_NOBODY;
    for (int id = 0; id <= W.shape.actors; id++)
        if (W.proc[id].space.self.entry && W.proc[id].space.self.holder == holder)
            return id;
    return SIM_UNKNOWN;
}

const char *sim_describe_address(const volatile void *addr)
{
    static char buf[96];
    uintptr_t p = (uintptr_t)addr, base = (uintptr_t)W.setup.region.base;
    for (int q = 0; q < W.shape.pools + W.shape.rings; q++) {
        const struct pyshm_queue *qu = q < W.shape.pools ? &W.pool[q]->free_queue : &W.ring[q - W.shape.pools].queue;
        char name[32];
        if (q < W.shape.pools)
            snprintf(name, sizeof name, "pool %d free queue", q);
        else
            snprintf(name, sizeof name, "ring %d", q - W.shape.pools);
        uintptr_t c = (uintptr_t)qu->shared, s = (uintptr_t)qu->ring.slots;
        if (p >= c && p < c + sizeof(*qu->shared)) {
            snprintf(buf, sizeof buf, "%s %s", name, p - c < PYSHM_CACHE_LINE ? "enq_pos" : "deq_pos");
            return buf;
        }
        if (p >= s && p < s + qu->ring.capacity * sizeof(struct pyshm_ring_slot)) {
            snprintf(buf, sizeof buf, "%s slot %lu %s", name, (unsigned long)((p - s) / 16),
                     (p - s) % 16 ? "value" : "seq");
            return buf;
        }
    }
    for (int q = 0; q < W.shape.pools; q++) {
        const struct pyshm_pool *pl = W.pool[q];
        uintptr_t w = (uintptr_t)pl->words;
        if (p >= w && p < w + pl->count * sizeof(struct pyshm_block_words)) {
            snprintf(buf, sizeof buf, "block %d %s", q * W.shape.blocks + (int)((p - w) / 16),
                     (p - w) % 16 ? "holder" : "state");
            return buf;
        }
    }
    for (int q = 0; q < W.shape.rings; q++)
        if (p == (uintptr_t)W.ring[q].shutdown) {
            snprintf(buf, sizeof buf, "ring %d shutdown", q);
            return buf;
        }
    uintptr_t e0 = (uintptr_t)&W.table->entry[0];
    if (p >= e0 && p < (uintptr_t)&W.table->entry[PYSHM_MEMBER_ENTRIES]) {
        static const char *f[] = {"owner", "ann_seq", "what", "pos", "n", "held", "r", "r",
                                  "pid", "pidns", "pidfs", "joined", "LOCK", "r", "r", "r"};
        unsigned fi = (unsigned)((p - e0) % sizeof(struct pyshm_member_entry)) / 8;
        snprintf(buf, sizeof buf, "entry %lu %s", (unsigned long)((p - e0) / sizeof(struct pyshm_member_entry)),
                 f[fi & 15]);
        return buf;
    }
    if (p == (uintptr_t)&W.table->reserved[0])
        return "REPAIR LOCK";
    snprintf(buf, sizeof buf, "+0x%lx", (unsigned long)(p - base));
    return buf;
}

int sim_inspect_block(int id, struct sim_block_info *out)
{
    if (id < 0 || id >= W.shape.pools * W.shape.blocks)
        return -1;
    const struct pyshm_pool *p = W.pool[pool_of_id(id)];
    uint64_t i = index_of_id(id);
    uint64_t state = __atomic_load_n(&p->words[i].state, __ATOMIC_RELAXED);
    out->kind = (int)pyshm_block_kind_of(state);
    out->gen = pyshm_block_gen_of(state);
    out->holder = identity_of(__atomic_load_n(&p->words[i].holder, __ATOMIC_RELAXED));
    return 0;
}

int sim_token_matches(int id, uint64_t token)
{
    const struct pyshm_pool *p = W.pool[pool_of_id(id)];
    return __atomic_load_n(&p->words[index_of_id(id)].state, __ATOMIC_RELAXED) == pyshm_block_state(token, PYSHM_BLOCK_HELD);
}

int sim_queue_count(void) { return W.shape.pools + W.shape.rings; }

int sim_inspect_queue(int q, struct sim_queue_view *out)
{
    const struct pyshm_queue *qu;
    int pool = -1;
    if (q < W.shape.pools) {
        pool = q;
        qu = &W.pool[q]->free_queue;
    } else if (q < W.shape.pools + W.shape.rings) {
        qu = &W.ring[q - W.shape.pools].queue;
    } else {
        return -1;
    }
    const struct pyshm_ring *ring = &qu->ring;
    uint64_t enq = __atomic_load_n(ring->enq_pos, __ATOMIC_RELAXED) + (ring->start_full ? ring->capacity : 0);
    uint64_t deq = __atomic_load_n(ring->deq_pos, __ATOMIC_RELAXED);
    out->count = 0;
    for (uint64_t i = 0; i < ring->capacity; i++) {
        uint64_t seq = pyshm_ring_seq_decode(ring, i, __atomic_load_n(&ring->slots[i].seq, __ATOMIC_RELAXED));
        uint64_t value = __atomic_load_n(&ring->slots[i].value, __ATOMIC_RELAXED) + pyshm_ring_value_bias(ring, i);
        uint64_t pos = seq / 8, phase = seq % 8;
        struct sim_slot s = {pos, SIM_SLOT_GARBAGE, -1};
        if (pos % ring->capacity != i) {
            /* a sequence word for another slot: no correct process writes it */
        } else if (phase == PYSHM_RING_EMPTY) {
            if ((int64_t)(pos - enq) >= 0)
                continue; /* empty, waiting for its producer */
            s.kind = SIM_SLOT_ENQ_CLAIMED;
        } else if (phase == PYSHM_RING_FILLING || phase == PYSHM_RING_STAGED) {
            s.kind = SIM_SLOT_ENQ_CLAIMED;
        } else if (phase == PYSHM_RING_FULL || phase == PYSHM_RING_DRAINING) {
            int claimed = phase == PYSHM_RING_DRAINING || (int64_t)(pos - deq) < 0;
            if (value == PYSHM_QUEUE_HOLE) {
                s.kind = claimed ? SIM_SLOT_DEQ_CLAIMED : SIM_SLOT_HOLE;
            } else {
                int id = -1;
                if (pool >= 0) {
                    if (value < (uint64_t)W.shape.blocks)
                        id = pool * W.shape.blocks + (int)value;
                } else {
                    const struct pyshm_pool *bp;
                    uint64_t index;
                    if (pyshm_pool_table_find(&W.setup.pools, &W.setup.region, value, &bp, &index) == 0)
                        id = id_of(bp, index);
                }
                s.block = id;
                if (id >= 0)
                    s.kind = claimed ? SIM_SLOT_DEQ_CLAIMED : SIM_SLOT_PUBLISHED;
                if ((int64_t)(pos - enq) >= 0)
                    s.kind = SIM_SLOT_GARBAGE; /* full beyond the producers' counter */
            }
        }
        out->slot[out->count++] = s;
    }
    for (int i = 1; i < out->count; i++)
        for (int j = i; j > 0 && (int64_t)(out->slot[j - 1].pos - out->slot[j].pos) > 0; j--) {
            struct sim_slot t = out->slot[j];
            out->slot[j] = out->slot[j - 1];
            out->slot[j - 1] = t;
        }
    return 0;
}
