/*
 * test_stress.c - many producer and consumer threads at once: ring.h alone (including a
 * ring that starts full, whose values circulate like blocks of a free queue), and the full
 * block path (pool get -> stamp -> Ring -> verify -> pool put), each thread with its own
 * struct pyshm_space attached to the region through a dup of its fd, as separate
 * processes would have. See stress.h for what every block-path run checks. Under
 * ThreadSanitizer the spaces share one mapping (tc_space_attach_view) so that TSan sees
 * the synchronization through the region.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

/* ------------------------------------------------------------------------------------ */
/* ring.h alone                                                                          */

struct raw_cfg {
    int producers, consumers;
    uint64_t capacity, start;
    int burst; /* bursts of 1..4 (both sides) */
};

struct raw_shared {
    const struct raw_cfg *cfg;
    struct pyshm_ring ring;
    uint64_t per;
    atomic_uchar *seen;
    /* Plain (non-atomic) data per message, written before its enqueue and read after its
     * dequeue: only the ring's R1 release/acquire orders the two, so ThreadSanitizer
     * reports a race if that pairing is ever missing. */
    uint64_t *payload;
    atomic_int done, abort;
};

struct raw_arg {
    struct raw_shared *s;
    int id;
    uint64_t taken;
};

static void *raw_producer(void *arg)
{
    struct raw_arg *a = arg;
    struct raw_shared *s = a->s;
    uint64_t rng = 77 + (uint64_t)a->id, values[4];
    for (uint64_t seq = 0; seq < s->per && !atomic_load_explicit(&s->abort, memory_order_relaxed);) {
        uint64_t n = s->cfg->burst ? 1 + tc_rand(&rng) % 4 : 1;
        if (n > s->per - seq)
            n = s->per - seq;
        if (n > s->cfg->capacity)
            n = s->cfg->capacity;
        for (uint64_t i = 0; i < n; i++) {
            values[i] = (uint64_t)a->id << 40 | (seq + i);
            s->payload[(uint64_t)a->id * s->per + seq + i] = mix(values[i]);
        }
        int64_t rc = tc_enq_burst(&s->ring, values, n);
        if (rc == 0) {
            seq += n;
            jitter(&rng);
        } else if (rc == 1) {
            tc_yield();
        } else {
            tc_fail(__FILE__, __LINE__, "enqueue of %" PRIu64 " gave %" PRId64, n, rc);
            atomic_store(&s->abort, 1);
        }
    }
    return NULL;
}

static void *raw_consumer(void *arg)
{
    struct raw_arg *a = arg;
    struct raw_shared *s = a->s;
    int64_t last[8];
    for (int i = 0; i < 8; i++)
        last[i] = -1;
    uint64_t rng = 1000 + (uint64_t)a->id, values[5];
    while (!atomic_load_explicit(&s->abort, memory_order_relaxed)) {
        int done = atomic_load_explicit(&s->done, memory_order_acquire);
        uint64_t max = s->cfg->burst ? 1 + tc_rand(&rng) % 5 : 1;
        if (max > s->cfg->capacity)
            max = s->cfg->capacity;
        int64_t n = tc_deq_burst(&s->ring, values, max);
        if (n == 0) {
            if (done)
                break;
            tc_yield();
            continue;
        }
        if (n < 0 || (uint64_t)n > max) {
            tc_fail(__FILE__, __LINE__, "dequeue of up to %" PRIu64 " gave %" PRId64, max, n);
            atomic_store(&s->abort, 1);
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            uint64_t v = values[i], p = v >> 40, seq = v & ((UINT64_C(1) << 40) - 1);
            if (p >= (uint64_t)s->cfg->producers || seq >= s->per ||
                s->payload[p * s->per + seq] != mix(v) ||
                atomic_fetch_add(&s->seen[p * s->per + seq], 1) != 0 || (int64_t)seq <= last[p]) {
                tc_fail(__FILE__, __LINE__, "dequeued value %#" PRIx64 " (duplicate, out of order or garbage)", v);
                atomic_store(&s->abort, 1);
                return NULL;
            }
            last[p] = (int64_t)seq;
            a->taken++;
        }
        jitter(&rng);
    }
    return NULL;
}

static void raw_stress(const struct raw_cfg *cfg)
{
    struct raw_shared s = {.cfg = cfg};
    s.per = tc_cfg.messages / (uint64_t)cfg->producers;
    REQUIRE(tc_raw_ring_alloc(&s.ring, cfg->capacity, 0) == 0);
    if (cfg->start)
        tc_ring_place(&s.ring, cfg->start, cfg->start, NULL);
    s.seen = calloc((size_t)cfg->producers * s.per, 1);
    s.payload = calloc((size_t)cfg->producers * s.per, sizeof(uint64_t));
    REQUIRE(s.seen != NULL && s.payload != NULL);
    pthread_t th[16];
    struct raw_arg args[16];
    int n = cfg->producers + cfg->consumers;
    for (int i = 0; i < n; i++) {
        args[i] = (struct raw_arg){.s = &s, .id = i < cfg->consumers ? i : i - cfg->consumers};
        REQUIRE(pthread_create(&th[i], NULL, i < cfg->consumers ? raw_consumer : raw_producer, &args[i]) == 0);
    }
    for (int i = cfg->consumers; i < n; i++)
        pthread_join(th[i], NULL);
    atomic_store_explicit(&s.done, 1, memory_order_release);
    uint64_t taken = 0;
    for (int i = 0; i < cfg->consumers; i++) {
        pthread_join(th[i], NULL);
        taken += args[i].taken;
    }
    uint64_t total = (uint64_t)cfg->producers * s.per;
    CHECK_EQ(taken, total);
    uint64_t missing = 0;
    for (uint64_t i = 0; i < total; i++)
        missing += atomic_load(&s.seen[i]) != 1;
    CHECK_EQ(missing, 0);
    CHECK_EQ(pyshm_ring_count(&s.ring), 0);
    CHECK_EQ(pyshm_ring_head(&s.ring, PYSHM_RING_ENQ, memory_order_relaxed), cfg->start + total);
    CHECK_EQ(pyshm_ring_head(&s.ring, PYSHM_RING_DEQ, memory_order_relaxed), cfg->start + total);
    free(s.seen);
    free(s.payload);
    tc_raw_ring_free(&s.ring);
}

static void test_raw_mpmc(void) { raw_stress(&(struct raw_cfg){2, 2, 64, UINT64_MAX - 4096, 0}); }
static void test_raw_mpmc_tiny(void) { raw_stress(&(struct raw_cfg){3, 3, 2, UINT64_MAX - 7, 0}); }
static void test_raw_mpmc_odd(void) { raw_stress(&(struct raw_cfg){2, 2, 5, 0, 0}); }
static void test_raw_cap1(void) { raw_stress(&(struct raw_cfg){2, 2, 1, UINT64_MAX - 100, 0}); }
static void test_raw_bursts(void) { raw_stress(&(struct raw_cfg){2, 2, 16, UINT64_MAX - 3000, 1}); }
static void test_raw_bursts_tiny(void) { raw_stress(&(struct raw_cfg){2, 2, 4, (UINT64_C(1) << 63) - 500, 1}); }

/*
 * A ring that starts full (zero-filled: slot i holds i), as a pool's free queue does: each
 * thread takes 1..3 values out, holds them (no other thread may hold the same value at the
 * same time: checked with an atomic holder word and a plain data word per value), and puts
 * them back. At the end the ring holds every value exactly once.
 */
struct circ {
    struct pyshm_ring ring;
    uint64_t cap, rounds;
    atomic_int holder[64];
    uint64_t data[64]; /* plain: ordered by the ring (R1, R2) */
    atomic_int abort;
};
struct circ_arg {
    struct circ *c;
    int id;
};

static void *circulate(void *arg)
{
    struct circ_arg *a = arg;
    struct circ *c = a->c;
    uint64_t rng = 31 + (uint64_t)a->id, v[3];
    for (uint64_t r = 0; r < c->rounds && !atomic_load(&c->abort);) {
        uint64_t want = 1 + tc_rand(&rng) % 3;
        int64_t n = tc_deq_burst(&c->ring, v, want);
        if (n == 0) {
            tc_yield();
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            int expect = 0;
            if (v[i] >= c->cap || !atomic_compare_exchange_strong(&c->holder[v[i]], &expect, a->id + 1)) {
                tc_fail(__FILE__, __LINE__, "value %" PRIu64 " taken while held by %d", v[i], expect);
                atomic_store(&c->abort, 1);
                return NULL;
            }
            c->data[v[i]] = (uint64_t)a->id;
        }
        jitter(&rng);
        for (int64_t i = 0; i < n; i++) {
            if (c->data[v[i]] != (uint64_t)a->id)
                tc_fail(__FILE__, __LINE__, "value %" PRIu64 ": data overwritten", v[i]);
            atomic_store(&c->holder[v[i]], 0);
        }
        int64_t rc;
        while ((rc = tc_enq_burst(&c->ring, v, (uint64_t)n)) == 1)
            tc_yield(); /* a slot still held by a taker that has not released it */
        if (rc != 0) {
            tc_fail(__FILE__, __LINE__, "enqueue back = %" PRId64, rc);
            atomic_store(&c->abort, 1);
            return NULL;
        }
        r++;
    }
    return NULL;
}

static void circulate_run(uint64_t cap, uint64_t start)
{
    struct circ *c = calloc(1, sizeof(*c));
    REQUIRE(c != NULL);
    c->cap = cap;
    c->rounds = tc_cfg.messages / 8;
    REQUIRE(tc_raw_ring_alloc(&c->ring, cap, 1) == 0);
    if (start) {
        uint64_t values[64];
        for (uint64_t i = 0; i < cap; i++)
            values[i] = i;
        tc_ring_place(&c->ring, start, start + cap, values);
    }
    pthread_t th[4];
    struct circ_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct circ_arg){c, i};
        REQUIRE(pthread_create(&th[i], NULL, circulate, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(pyshm_ring_count(&c->ring), cap);
    uint64_t seen[64] = {0}, v;
    for (uint64_t i = 0; i < cap; i++)
        if (tc_deq(&c->ring, &v) == 0 && v < cap)
            seen[v]++;
    for (uint64_t i = 0; i < cap; i++)
        CHECK_EQ(seen[i], 1);
    tc_raw_ring_free(&c->ring);
    free(c);
}

static void test_circulate_start_full(void)
{
    circulate_run(8, 0);
    circulate_run(4, UINT64_MAX - 1000);
    circulate_run(64, UINT64_MAX - 64 * 40);
    circulate_run(6, 12345);
}

/* ------------------------------------------------------------------------------------ */
/* The block path, one space per thread                                                   */

struct actor {
    const struct stress_env *e;
    struct pyshm_space own;
    int id, consumer, rc;
};

static void *actor_main(void *arg)
{
    struct actor *a = arg;
    a->rc = a->consumer ? stress_consumer(a->e, &a->own, a->id) : stress_producer(a->e, &a->own, a->id);
    return NULL;
}

static void block_stress(struct stress_cfg cfg)
{
    cfg.per = tc_cfg.messages / (uint64_t)cfg.producers;
    struct pyshm_space creator;
    REQUIRE(tc_space(&creator, 1 << 20) == 0);
    size_t ctl_size = stress_ctl_size(&cfg);
    void *mem = calloc(1, ctl_size);
    REQUIRE(mem != NULL);
    struct stress_ctl *ctl = stress_ctl_init(mem, &cfg);
    struct stress_env e;
    REQUIRE(stress_setup(&e, &creator, &cfg, ctl) == 0);
    int n = cfg.producers + cfg.consumers;
    struct actor *actors = calloc((size_t)n, sizeof(*actors));
    pthread_t th[2 * STRESS_MAX_ACTORS];
    REQUIRE(actors != NULL);
    for (int i = 0; i < n; i++) {
        actors[i].e = &e;
        actors[i].consumer = i < cfg.consumers;
        actors[i].id = i < cfg.consumers ? i : i - cfg.consumers;
        REQUIRE(tc_space_attach_view(&actors[i].own, &creator) == 0);
    }
    for (int i = 0; i < n; i++)
        REQUIRE(pthread_create(&th[i], NULL, actor_main, &actors[i]) == 0);
    for (int i = cfg.consumers; i < n; i++)
        pthread_join(th[i], NULL);
    atomic_store_explicit(&ctl->producers_done, 1, memory_order_release);
    for (int i = 0; i < cfg.consumers; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(actors[i].rc, 0);
        tc_space_close(&actors[i].own); /* nothing held: each entry is freed as it leaves */
    }
    stress_check(&e, &creator, 0, 0);
    free(actors);
    free(mem);
    pyshm_space_close(&creator);
}

/* Two pools (40-byte blocks packed at stride 40, 200-byte blocks at stride 256), an MPMC
 * Ring crossing 2^64 mid-run, free queues crossing it too, consumers sometimes asking for
 * the big blocks only. */
static void test_block_mpmc(void)
{
    block_stress((struct stress_cfg){.producers = 2, .consumers = 2, .npools = 2, .count = {16, 32}, .elt = {40, 200},
                                     .capacity = 8, .ring_start = UINT64_MAX - tc_cfg.messages / 2,
                                     .free_queue_near_wrap = 1, .picky = 1});
}

/* Few blocks, a Ring of 2, three of each: pools run dry, the Ring runs full, puts meet
 * gets in flight. */
static void test_block_contended(void)
{
    block_stress((struct stress_cfg){.producers = 3, .consumers = 3, .npools = 1, .count = {4}, .elt = {64},
                                     .capacity = 2, .ring_start = UINT64_MAX - 3, .free_queue_near_wrap = 1});
}

/* The Ring is larger than the pools: producers wait for blocks, not for room. */
static void test_block_pool_bound(void)
{
    block_stress((struct stress_cfg){.producers = 2, .consumers = 2, .npools = 2, .count = {3, 5}, .elt = {33, 1000},
                                     .capacity = 64});
}

/* Bursts on both sides: all-or-none enqueues and puts, variable gets and dequeues. */
static void test_block_bursts(void)
{
    block_stress((struct stress_cfg){.producers = 2, .consumers = 2, .npools = 2, .count = {16, 8}, .elt = {40, 200},
                                     .capacity = 8, .ring_start = UINT64_MAX - tc_cfg.messages / 3,
                                     .free_queue_near_wrap = 1, .burst = 1});
}

/* One of each, a Ring of 1. */
static void test_block_spsc(void)
{
    block_stress((struct stress_cfg){.producers = 1, .consumers = 1, .npools = 2, .count = {2, 2}, .elt = {48, 96},
                                     .capacity = 1, .ring_start = UINT64_MAX - 17, .free_queue_near_wrap = 1});
}

const struct tc_test tc_stress_tests[] = {
    {"stress_ring_2x2_wrap", test_raw_mpmc, 0, NULL},
    {"stress_ring_3x3_capacity_2", test_raw_mpmc_tiny, 0, NULL},
    {"stress_ring_2x2_capacity_5", test_raw_mpmc_odd, 0, NULL},
    {"stress_ring_2x2_capacity_1", test_raw_cap1, 0, NULL},
    {"stress_ring_bursts_2x2_wrap", test_raw_bursts, 0, NULL},
    {"stress_ring_bursts_2x2_capacity_4", test_raw_bursts_tiny, 0, NULL},
    {"stress_ring_start_full_circulate", test_circulate_start_full, 0, NULL},
    {"stress_blocks_2x2_two_pools_wrap", test_block_mpmc, 0, NULL},
    {"stress_blocks_3x3_contended", test_block_contended, 0, NULL},
    {"stress_blocks_2x2_pool_bound", test_block_pool_bound, 0, NULL},
    {"stress_blocks_bursts_2x2", test_block_bursts, 0, NULL},
    {"stress_blocks_1x1_ring_of_1", test_block_spsc, 0, NULL},
};
const size_t tc_stress_test_count = TC_COUNT(tc_stress_tests);
