/*
 * adapter_v2.c - sim.h for the pyshm core of commit f8f5ca3 (region layout version 2:
 * pools with a ring.h free queue and per-block state/holder words, block rings, an
 * announcement table, pyshm_region_repair).
 *
 * Core sources this adapter is built with (run.sh reads the next line):
 * SIM_CORE_SOURCES: region.c mempool.c block_ring.c announce.c repair.c fault.c
 *
 * Left out, and provided here instead: process.c (holder words and liveness: the
 * simulated processes' identities) and wait.c (the clock, futex sleep and wake: the
 * virtual clock; nobody sleeps in the simulation).
 *
 * Every identity gets its own struct pyshm_region handle on the one mapping, with its
 * own pool table (pool handles whose announcer is that handle's) and its own ring
 * handles: exactly what separate processes have.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "announce.h"
#include "block_ring.h"
#include "mempool.h"
#include "process.h"
#include "region.h"
#include "repair.h"
#include "wait.h"

#include "sched.h"
#include "sim.h"

#define PID_BASE 1000u
#define START_TICKS UINT64_C(4242)
#define RECLAIM_BUSY_ATTEMPTS 50 /* Mempool.reclaim tries 1000 times, 1 ms apart */

struct proc {
    struct pyshm_region r; /* stays put: pool and ring handles point at r.announcer */
    const struct pyshm_pool *pool[SIM_MAX_POOLS];
    struct pyshm_block_ring ring[SIM_MAX_RINGS];
};

static struct {
    struct sim_shape shape;
    struct pyshm_region setup; /* the creator's handle, used by introspection */
    const struct pyshm_pool *pool[SIM_MAX_POOLS];
    struct pyshm_block_ring ring[SIM_MAX_RINGS];
    uint64_t pool_off[SIM_MAX_POOLS], ring_off[SIM_MAX_RINGS];
    struct proc proc[SIM_MAX_ACTORS + 1];
    struct pyshm_announce_table *table;
    unsigned char *snapshot;
    size_t snapshot_len;
    int made;
} W;

/* ------------------------------------------------------------------ identity, time */

_Atomic uint64_t pyshm_self_holder;

static uint64_t holder_of(int identity)
{
    return (uint64_t)(PID_BASE + (unsigned)(identity + 1)) << PYSHM_HOLDER_PID_SHIFT | START_TICKS;
}

/* Actor id, the survivor's, SIM_NOBODY or SIM_UNKNOWN. */
static int identity_of(uint64_t holder)
{
    if (holder == 0)
        return SIM_NOBODY;
    uint64_t pid = holder >> PYSHM_HOLDER_PID_SHIFT;
    if ((holder & PYSHM_HOLDER_START_MASK) != START_TICKS || pid < PID_BASE + 1 ||
        pid > PID_BASE + 1 + (uint64_t)W.shape.actors)
        return SIM_UNKNOWN;
    return (int)(pid - PID_BASE - 1);
}

uint64_t pyshm_holder_self(void) { return holder_of(sched_current()); }

int pyshm_holder_is_gone(uint64_t holder)
{
    int id = identity_of(holder);
    if (id < 0 || id >= W.shape.actors)
        return 0; /* the survivor, set-up, or unknown: never reclaimed on a guess */
    return sched_liveness_query(id);
}

static void on_switch(int identity)
{
    /* What pyshm_holder_self_fast reads: a per-process global. */
    __atomic_store_n(&pyshm_self_holder, holder_of(identity), __ATOMIC_RELAXED);
}

uint64_t pyshm_now_ns(void) { return sched_now_ns(); }

int pyshm_wait_sleep(struct pyshm_waitpoint *w, uint32_t epoch_seen, uint64_t timeout_ns)
{
    (void)w;
    (void)epoch_seen;
    (void)timeout_ns;
    sched_yield();
    return 0;
}

/* Nobody sleeps in the simulation: no epoch bump (the waitpoints are quiet, below). */
void pyshm_wait_wake_all(struct pyshm_waitpoint *w) { (void)w; }

/* ------------------------------------------------------------------ life cycle */

const char *sim_core_name(void) { return "pyshm core f8f5ca3 (layout 2, announcement table)"; }

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

static void quiet_waitpoints(const struct pyshm_ring_counters *c)
{
    sched_add_quiet(&c->not_empty, sizeof(c->not_empty));
    sched_add_quiet(&c->not_full, sizeof(c->not_full));
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
    size += pyshm_announce_table_size();
    sched_enter_as(SCHED_MAIN);
    int rc = pyshm_region_create(&W.setup, size);
    if (rc < 0) {
        fprintf(stderr, "pyshm_region_create: %s\n", strerror(-rc));
        return -1;
    }
    unsigned pf = (shape->pool_flags & SIM_POOL_SP_PUT ? PYSHM_MEMPOOL_F_SP_PUT : 0) |
                  (shape->pool_flags & SIM_POOL_SC_GET ? PYSHM_MEMPOOL_F_SC_GET : 0);
    unsigned rf = (shape->ring_flags & SIM_RING_SP_ENQ ? PYSHM_RING_F_SP_ENQ : 0) |
                  (shape->ring_flags & SIM_RING_SC_DEQ ? PYSHM_RING_F_SC_DEQ : 0);
    for (int p = 0; p < shape->pools; p++) {
        struct pyshm_pool pool;
        if ((rc = pyshm_pool_create(&W.setup, (uint64_t)shape->blocks, SIM_BLOCK_BYTES, pf, NULL, &pool)) < 0) {
            fprintf(stderr, "pyshm_pool_create: %s\n", strerror(-rc));
            return -1;
        }
        W.pool_off[p] = pool.offset;
        W.pool[p] = W.setup.pools[pyshm_region_pool_slot(&W.setup, pool.offset)];
    }
    for (int q = 0; q < shape->rings; q++) {
        if ((rc = pyshm_block_ring_create(&W.setup, (uint64_t)shape->ring_capacity, rf, NULL, &W.ring[q])) < 0) {
            fprintf(stderr, "pyshm_block_ring_create: %s\n", strerror(-rc));
            return -1;
        }
        W.ring_off[q] = W.ring[q].offset;
    }
    /* The announcement table is made now rather than by the first queue operation of an
     * actor: its creation is not what is being tested, and it keeps the carving out of
     * the explored part. Then nobody owns an entry. */
    pyshm_announcer_take(&W.setup.announcer);
    pyshm_announcer_release(&W.setup.announcer);
    struct pyshm_announce_table *t = W.table = pyshm_announce_table_of(&W.setup);
    if (!t) {
        fprintf(stderr, "no announcement table\n");
        return -1;
    }
    struct pyshm_region_header *h = (struct pyshm_region_header *)W.setup.base;
    W.snapshot_len = (size_t)__atomic_load_n(&h->carve_end, __ATOMIC_RELAXED);
    W.snapshot = malloc(W.snapshot_len);
    memcpy(W.snapshot, W.setup.base, W.snapshot_len);

    /* One process handle per identity (the actors and the survivor). */
    for (int id = 0; id <= shape->actors; id++) {
        struct proc *pr = &W.proc[id];
        memset(&pr->r, 0, sizeof(pr->r));
        pr->r.base = W.setup.base;
        pr->r.size = W.setup.size;
        pr->r.map_size = W.setup.map_size;
        pr->r.fd = -1;
        if (pyshm_region_add_new_pools(&pr->r) < 0) {
            fprintf(stderr, "pyshm_region_add_new_pools failed\n");
            return -1;
        }
        for (int p = 0; p < shape->pools; p++)
            pr->pool[p] = pr->r.pools[pyshm_region_pool_slot(&pr->r, W.pool_off[p])];
        for (int q = 0; q < shape->rings; q++)
            if (pyshm_block_ring_attach(&pr->r, W.ring_off[q], &pr->ring[q]) < 0) {
                fprintf(stderr, "pyshm_block_ring_attach failed\n");
                return -1;
            }
    }

    sched_set_switch_hook(on_switch);
    sched_set_describe(sim_describe_address);
    sched_set_shared(W.setup.base, W.setup.map_size);
    sched_clear_quiet();
    /* Announcement entries [actors, 254) are never written while actors run: each actor
     * owns at most one entry at a time (a live one's is never freed: repair frees only
     * the entries of the gone), and pyshm_announcer_take takes the lowest free entry, so
     * at most `actors` entries - the first ones - are ever taken. Loads there read 0 in
     * every interleaving: the scans of repair and take need no points for them. */
    sched_add_quiet(&t->entry[shape->actors],
                    (PYSHM_ANNOUNCE_ENTRIES - (unsigned)shape->actors) * sizeof(struct pyshm_announce_entry));
    /* Waitpoints: `waiters` is only raised by a sleeper (the binding's wait loop, which no
     * actor runs) and `epoch` only by pyshm_wait_wake_all (a no-op here): constants. */
    for (int p = 0; p < shape->pools; p++)
        quiet_waitpoints(W.pool[p]->free_queue.counters);
    for (int q = 0; q < shape->rings; q++)
        quiet_waitpoints(W.ring[q].ring.counters);
    W.made = 1;
    return 0;
}

void sim_world_reset(void)
{
    memcpy(W.setup.base, W.snapshot, W.snapshot_len);
    for (int id = 0; id <= W.shape.actors; id++) {
        struct pyshm_announcer *a = &W.proc[id].r.announcer;
        __atomic_store_n(&a->entry, NULL, __ATOMIC_RELAXED);
        __atomic_store_n(&a->owner, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&a->unavailable, 0, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&pyshm_self_holder, 0, __ATOMIC_RELAXED);
}

void sim_world_destroy(void)
{
    if (!W.made)
        return;
    for (int id = 0; id <= W.shape.actors; id++) {
        struct pyshm_region *r = &W.proc[id].r;
        for (size_t i = 0; i < r->pool_count; i++)
            free(r->pools[i]);
        free(r->pools);
    }
    pyshm_region_close(&W.setup);
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

int sim_pool_get(int a, int pool, struct sim_block *out)
{
    uint64_t index, gen;
    int rc = pyshm_pool_get(W.proc[a].pool[pool], &index, &gen);
    if (rc < 0)
        return map_rc(rc);
    out->id = pool * W.shape.blocks + (int)index;
    out->token = gen;
    return SIM_OK;
}

int sim_pool_get_burst(int a, int pool, struct sim_block *out, int max, int *got)
{
    uint64_t index[SIM_MAX_BLOCKS], gen[SIM_MAX_BLOCKS];
    if (max > SIM_MAX_BLOCKS)
        max = SIM_MAX_BLOCKS;
    int64_t n = pyshm_pool_get_burst(W.proc[a].pool[pool], index, gen, (uint64_t)max);
    *got = 0;
    if (n < 0)
        return map_rc(n);
    for (int64_t i = 0; i < n; i++)
        out[i] = (struct sim_block){pool * W.shape.blocks + (int)index[i], gen[i]};
    *got = (int)n;
    return SIM_OK;
}

/* Mempool.put / put_many: put; if the free queue stayed blocked, repair if a process is
 * gone and, if that cleared something, try once more (mempool_type.c put_repairing). */
int sim_pool_put_burst(int a, struct sim_block *b, int n)
{
    uint64_t index[SIM_MAX_BLOCKS], gen[SIM_MAX_BLOCKS];
    if (n < 1 || n > SIM_MAX_BLOCKS)
        return SIM_ERROR;
    int pool = pool_of_id(b[0].id);
    for (int i = 0; i < n; i++) {
        if (pool_of_id(b[i].id) != pool)
            return SIM_ERROR;
        index[i] = index_of_id(b[i].id);
        gen[i] = b[i].token;
    }
    const struct pyshm_pool *p = W.proc[a].pool[pool];
    int rc = pyshm_pool_put_burst(p, index, gen, (uint64_t)n);
    if (rc == -EAGAIN) {
        struct pyshm_repair_report report;
        if (pyshm_region_repair(&W.proc[a].r, 1, &report) == 0 && report.entries > 0)
            rc = pyshm_pool_put_burst(p, index, gen, (uint64_t)n);
    }
    for (int i = 0; i < n; i++)
        b[i].token = gen[i];
    return map_rc(rc);
}

int sim_pool_put(int a, struct sim_block *b) { return sim_pool_put_burst(a, b, 1); }

int sim_ring_enqueue_burst(int a, int ring, struct sim_block *b, int n)
{
    struct pyshm_held_block held[SIM_MAX_CAPACITY];
    if (n < 1 || n > SIM_MAX_CAPACITY)
        return SIM_ERROR;
    for (int i = 0; i < n; i++)
        held[i] = (struct pyshm_held_block){W.proc[a].pool[pool_of_id(b[i].id)], index_of_id(b[i].id), b[i].token};
    int rc = pyshm_block_ring_enqueue_burst(&W.proc[a].ring[ring], held, (uint64_t)n);
    for (int i = 0; i < n; i++)
        b[i].token = held[i].gen;
    return map_rc(rc);
}

int sim_ring_enqueue(int a, int ring, struct sim_block *b) { return sim_ring_enqueue_burst(a, ring, b, 1); }

int sim_ring_dequeue(int a, int ring, struct sim_block *out)
{
    struct pyshm_taken_block taken;
    int rc = pyshm_block_ring_dequeue(&W.proc[a].ring[ring], &W.proc[a].r, 0, &taken);
    if (rc < 0)
        return map_rc(rc);
    out->id = id_of(taken.pool, taken.index);
    out->token = taken.gen;
    return out->id < 0 ? SIM_ERROR : SIM_OK;
}

int sim_ring_dequeue_burst(int a, int ring, struct sim_block *out, int max, int *got)
{
    struct pyshm_taken_block taken[SIM_MAX_CAPACITY];
    if (max > SIM_MAX_CAPACITY)
        max = SIM_MAX_CAPACITY;
    *got = 0;
    int64_t n = pyshm_block_ring_dequeue_burst(&W.proc[a].ring[ring], &W.proc[a].r, taken, (uint64_t)max);
    if (n < 0)
        return map_rc(n);
    for (int64_t i = 0; i < n; i++) {
        out[i].id = id_of(taken[i].pool, taken[i].index);
        out[i].token = taken[i].gen;
        if (out[i].id < 0)
            return SIM_ERROR;
    }
    *got = (int)n;
    return SIM_OK;
}

int sim_ring_shutdown(int a, int ring, int immediate)
{
    pyshm_block_ring_shutdown(&W.proc[a].ring[ring], immediate);
    if (immediate && pyshm_block_ring_drain(&W.proc[a].ring[ring], &W.proc[a].r) < 0)
        return SIM_CORRUPT;
    return SIM_OK;
}

int sim_repair(int a, int only_after_deaths, struct sim_repair_result *res)
{
    struct pyshm_repair_report report;
    int rc = pyshm_region_repair(&W.proc[a].r, only_after_deaths, &report);
    for (int attempt = 1; !only_after_deaths && rc == -EBUSY && attempt < RECLAIM_BUSY_ATTEMPTS; attempt++) {
        sched_yield();
        rc = pyshm_region_repair(&W.proc[a].r, 0, &report);
    }
    res->work = rc == 0 ? (long)(report.entries + report.holes + report.released + report.returned) : 0;
    return map_rc(rc);
}

unsigned char *sim_block_data(int id)
{
    const struct pyshm_pool *p = W.pool[pool_of_id(id)];
    return p->data + index_of_id(id) * p->stride;
}

/* ------------------------------------------------------------------ introspection */

static int describe_ring(char *buf, size_t len, const char *name, const struct pyshm_ring *ring, uintptr_t p)
{
    uintptr_t c = (uintptr_t)ring->counters, s = (uintptr_t)ring->slots;
    if (p >= c && p < c + sizeof(*ring->counters)) {
        snprintf(buf, len, "%s %s", name, p - c < PYSHM_CACHE_LINE ? "enq_pos" : "deq_pos");
        return 1;
    }
    if (p >= s && p < s + ring->capacity * sizeof(struct pyshm_ring_slot)) {
        uintptr_t i = (p - s) / sizeof(struct pyshm_ring_slot);
        snprintf(buf, len, "%s slot %lu %s", name, (unsigned long)i,
                 (p - s) % sizeof(struct pyshm_ring_slot) ? "value" : "seq");
        return 1;
    }
    return 0;
}

const char *sim_describe_address(const volatile void *addr)
{
    static char buf[96];
    uintptr_t p = (uintptr_t)addr, base = (uintptr_t)W.setup.base;
    char name[32];
    for (int q = 0; q < W.shape.pools; q++) {
        const struct pyshm_pool *pl = W.pool[q];
        snprintf(name, sizeof name, "pool %d free queue", q);
        if (describe_ring(buf, sizeof buf, name, &pl->free_queue, p))
            return buf;
        uintptr_t st = (uintptr_t)pl->states, ho = (uintptr_t)pl->holders;
        if (p >= st && p < st + pl->count * 8) {
            snprintf(buf, sizeof buf, "block %d state", q * W.shape.blocks + (int)((p - st) / 8));
            return buf;
        }
        if (p >= ho && p < ho + pl->count * 8) {
            snprintf(buf, sizeof buf, "block %d holder", q * W.shape.blocks + (int)((p - ho) / 8));
            return buf;
        }
    }
    for (int q = 0; q < W.shape.rings; q++) {
        snprintf(name, sizeof name, "ring %d", q);
        if (describe_ring(buf, sizeof buf, name, &W.ring[q].ring, p))
            return buf;
        if (p == (uintptr_t)W.ring[q].shutdown) {
            snprintf(buf, sizeof buf, "ring %d shutdown", q);
            return buf;
        }
    }
    /* Called from inside the scheduler: no core function here (their atomics are points). */
    struct pyshm_announce_table *t = W.table;
    if (t && p == (uintptr_t)&t->repair_lock)
        return "repair_lock";
    if (t && p >= (uintptr_t)&t->entry[0] && p < (uintptr_t)&t->entry[PYSHM_ANNOUNCE_ENTRIES]) {
        uintptr_t off = p - (uintptr_t)&t->entry[0];
        static const char *f[] = {"owner", "what", "pos", "n"};
        unsigned fi = (unsigned)(off % sizeof(struct pyshm_announce_entry)) / 8;
        snprintf(buf, sizeof buf, "entry %lu %s", (unsigned long)(off / sizeof(struct pyshm_announce_entry)),
                 fi < 4 ? f[fi] : "reserved");
        return buf;
    }
    if (p >= base && p < base + sizeof(struct pyshm_region_header)) {
        static const char *h[] = {"magic", "version", "size", "carve_end", "objects_head", "announce_offset"};
        unsigned hi = (unsigned)(p - base) / 8;
        snprintf(buf, sizeof buf, "region %s", hi < 6 ? h[hi] : "header");
        return buf;
    }
    snprintf(buf, sizeof buf, "+0x%lx", (unsigned long)(p - base));
    return buf;
}

int sim_inspect_block(int id, struct sim_block_info *out)
{
    if (id < 0 || id >= W.shape.pools * W.shape.blocks)
        return -1;
    const struct pyshm_pool *p = W.pool[pool_of_id(id)];
    uint64_t i = index_of_id(id);
    uint64_t state = __atomic_load_n(&p->states[i], __ATOMIC_RELAXED);
    out->kind = (int)pyshm_block_kind_of(state);
    out->gen = pyshm_block_gen_of(state);
    out->holder = identity_of(__atomic_load_n(&p->holders[i], __ATOMIC_RELAXED));
    return 0;
}

int sim_token_matches(int id, uint64_t token)
{
    const struct pyshm_pool *p = W.pool[pool_of_id(id)];
    return __atomic_load_n(&p->states[index_of_id(id)], __ATOMIC_RELAXED) == pyshm_block_state(token, PYSHM_BLOCK_HELD);
}

int sim_queue_count(void) { return W.shape.pools + W.shape.rings; }

int sim_inspect_queue(int q, struct sim_queue_view *out)
{
    const struct pyshm_ring *ring;
    int pool = -1;
    if (q < W.shape.pools) {
        pool = q;
        ring = &W.pool[q]->free_queue;
    } else if (q < W.shape.pools + W.shape.rings) {
        ring = &W.ring[q - W.shape.pools].ring;
    } else {
        return -1;
    }
    uint64_t enq = __atomic_load_n(&ring->counters->enq_pos, __ATOMIC_RELAXED);
    uint64_t deq = __atomic_load_n(&ring->counters->deq_pos, __ATOMIC_RELAXED);
    out->count = 0;
    for (uint64_t i = 0; i < ring->capacity; i++) {
        uint64_t seq = __atomic_load_n(&ring->slots[i].seq, __ATOMIC_RELAXED);
        uint64_t value = __atomic_load_n(&ring->slots[i].value, __ATOMIC_RELAXED);
        uint64_t pos = seq >> 1;
        struct sim_slot s = {pos, SIM_SLOT_GARBAGE, -1};
        if (pos % ring->capacity != i) {
            /* a sequence word for another slot: no correct process writes it */
        } else if (seq & 1) {
            if (value == PYSHM_RING_HOLE) {
                s.kind = (int64_t)(pos - deq) >= 0 ? SIM_SLOT_HOLE : SIM_SLOT_DEQ_CLAIMED;
            } else {
                int id = -1;
                if (pool >= 0) {
                    if (value < (uint64_t)W.shape.blocks)
                        id = pool * W.shape.blocks + (int)value;
                } else {
                    const struct pyshm_pool *bp;
                    uint64_t index;
                    if (pyshm_region_find_block(&W.setup, value, &bp, &index) == 0)
                        id = id_of(bp, index);
                }
                s.block = id;
                if (id >= 0)
                    s.kind = (int64_t)(pos - deq) >= 0 ? SIM_SLOT_PUBLISHED : SIM_SLOT_DEQ_CLAIMED;
                if ((int64_t)(pos - enq) >= 0)
                    s.kind = SIM_SLOT_GARBAGE; /* full beyond the producers' counter */
            }
        } else {
            if ((int64_t)(pos - enq) >= 0)
                continue; /* empty, waiting for its producer */
            s.kind = SIM_SLOT_ENQ_CLAIMED;
        }
        out->slot[out->count++] = s;
    }
    /* in queue order */
    for (int i = 1; i < out->count; i++)
        for (int j = i; j > 0 && (int64_t)(out->slot[j - 1].pos - out->slot[j].pos) > 0; j--) {
            struct sim_slot t = out->slot[j];
            out->slot[j] = out->slot[j - 1];
            out->slot[j - 1] = t;
        }
    return 0;
}
