/*
 * test_stress.c - many producer and consumer threads at once: ring.h alone, and the full
 * block path (pool get -> stamp -> block ring -> verify -> pool put). See stress.h for
 * what every run checks.
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
    int burst; /* mix bursts of 1..4 (both sides) with single calls */
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
    int sp = s->cfg->producers == 1;
    uint64_t rng = 77 + (uint64_t)a->id, values[4];
    for (uint64_t seq = 0; seq < s->per && !atomic_load_explicit(&s->abort, memory_order_relaxed);) {
        uint64_t n = s->cfg->burst ? 1 + next_rand(&rng) % 4 : 1;
        if (n > s->per - seq)
            n = s->per - seq;
        for (uint64_t i = 0; i < n; i++) {
            values[i] = (uint64_t)a->id << 40 | (seq + i);
            s->payload[(uint64_t)a->id * s->per + seq + i] = mix(values[i]);
        }
        int rc = n == 1 ? tc_enq(&s->ring, sp, values[0]) : pyshm_ring_enqueue_burst(&s->ring, values, n);
        if (rc == 0) {
            seq += n;
            jitter(&rng);
        } else if (rc == -PYSHM_EFULL)
            tc_yield();
        else {
            tc_fail(__FILE__, __LINE__, "enqueue of %" PRIu64 " gave %d", n, rc);
            atomic_store(&s->abort, 1);
        }
    }
    return NULL;
}

static void *raw_consumer(void *arg)
{
    struct raw_arg *a = arg;
    struct raw_shared *s = a->s;
    int sc = s->cfg->consumers == 1;
    int64_t last[8];
    for (int i = 0; i < 8; i++)
        last[i] = -1;
    uint64_t rng = 1000 + (uint64_t)a->id, values[5];
    while (!atomic_load_explicit(&s->abort, memory_order_relaxed)) {
        int done = atomic_load_explicit(&s->done, memory_order_acquire);
        uint64_t max = s->cfg->burst ? 1 + next_rand(&rng) % 5 : 1;
        int64_t n = max == 1 ? tc_deq(&s->ring, sc, &values[0]) : pyshm_ring_dequeue_burst(&s->ring, values, max);
        if (n == -PYSHM_EEMPTY) {
            if (done)
                break;
            tc_yield();
            continue;
        }
        if (max == 1 && n == 0)
            n = 1;
        if (n <= 0 || (uint64_t)n > max) {
            tc_fail(__FILE__, __LINE__, "dequeue of up to %" PRIu64 " gave %" PRId64, max, n);
            atomic_store(&s->abort, 1);
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            uint64_t v = values[i], p = v >> 40, seq = v & ((UINT64_C(1) << 40) - 1);
            if (p >= (uint64_t)s->cfg->producers || seq >= s->per) {
                tc_fail(__FILE__, __LINE__, "dequeued value %#" PRIx64, v);
                atomic_store(&s->abort, 1);
                return NULL;
            }
            if (s->payload[p * s->per + seq] != mix(v)) {
                tc_fail(__FILE__, __LINE__, "payload of (%" PRIu64 ", %" PRIu64 ")", p, seq);
                atomic_store(&s->abort, 1);
                return NULL;
            }
            if (mark_seen(s->seen, p, seq, s->per) < 0 || (int64_t)seq <= last[p]) {
                if ((int64_t)seq <= last[p])
                    tc_fail(__FILE__, __LINE__, "producer %" PRIu64 ": seq %" PRIu64 " after %" PRId64, p, seq,
                            last[p]);
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
    REQUIRE(tc_raw_ring_alloc(&s.ring, cfg->capacity) == 0);
    pyshm_ring_init(&s.ring, cfg->start);
    s.seen = calloc(cfg->producers * s.per, 1);
    s.payload = calloc(cfg->producers * s.per, sizeof(uint64_t));
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
    uint64_t total = cfg->producers * s.per;
    if (getenv("TC_VERBOSE")) {
        printf("      per consumer:");
        for (int i = 0; i < cfg->consumers; i++)
            printf(" %" PRIu64, args[i].taken);
        printf("\n");
    }
    CHECK_EQ(taken, total);
    check_all_seen(s.seen, (uint64_t)cfg->producers, s.per);
    CHECK_EQ(pyshm_ring_count(&s.ring), 0);
    CHECK(atomic_load(&s.ring.counters->enq_pos) == cfg->start + total);
    CHECK(atomic_load(&s.ring.counters->deq_pos) == cfg->start + total);
    free(s.seen);
    free(s.payload);
    tc_raw_ring_free(&s.ring);
}

static void test_raw_mpmc(void) { raw_stress(&(struct raw_cfg){2, 2, 64, UINT64_MAX - 4096, 0}); }
static void test_raw_mpmc_tiny(void) { raw_stress(&(struct raw_cfg){3, 3, 2, UINT64_MAX - 7, 0}); }
static void test_raw_mpmc_odd(void) { raw_stress(&(struct raw_cfg){2, 2, 5, 0, 0}); }
static void test_raw_spsc(void) { raw_stress(&(struct raw_cfg){1, 1, 16, UINT64_MAX - 100, 0}); }
static void test_raw_spmc(void) { raw_stress(&(struct raw_cfg){1, 3, 8, UINT64_MAX - 1000, 0}); }
static void test_raw_mpsc(void) { raw_stress(&(struct raw_cfg){3, 1, 8, 12345, 0}); }
static void test_raw_bursts(void) { raw_stress(&(struct raw_cfg){2, 2, 16, UINT64_MAX - 3000, 1}); }
static void test_raw_bursts_tiny(void) { raw_stress(&(struct raw_cfg){2, 2, 4, (UINT64_C(1) << 63) - 500, 1}); }

/* ------------------------------------------------------------------------------------ */
/* The block path, in threads                                                            */

#define MAX_POOLS 2

struct block_cfg {
    int producers, consumers;
    int npools;
    uint64_t count[MAX_POOLS], elt[MAX_POOLS];
    uint32_t pool_flags;
    uint64_t capacity;
    uint32_t ring_flags;
    uint64_t ring_start; /* the ring's first position */
    int free_queue_near_wrap; /* restart the free queues just before 2^64 */
    int picky; /* consumers sometimes ask for the larger block size (ETOOBIG path) */
    int burst; /* producers get and enqueue, consumers dequeue and put, 1..4 at a time */
};

struct block_shared {
    const struct block_cfg *cfg;
    struct pyshm_region region;
    struct pyshm_pool pools[MAX_POOLS];
    struct pyshm_block_ring ring;
    uint64_t per;
    atomic_uchar *seen;
    uint64_t *sent_pool; /* offset of the pool each message was sent in, by its producer */
    atomic_int done, abort;
};

struct block_arg {
    struct block_shared *s;
    int id;
    uint64_t handled, gets[MAX_POOLS];
};

static uint64_t pool_of(const struct block_cfg *cfg, uint64_t producer, uint64_t seq)
{
    return (producer + seq) % (uint64_t)cfg->npools;
}

static void *block_producer(void *arg)
{
    struct block_arg *a = arg;
    struct block_shared *s = a->s;
    const int burst = s->cfg->burst;
    uint64_t me = 1 + (uint64_t)a->id, rng = 5 + (uint64_t)a->id;
    for (uint64_t seq = 0; seq < s->per && !atomic_load_explicit(&s->abort, memory_order_relaxed);) {
        /* Singles: the pool is a function of (producer, seq). Bursts: any pool, recorded. */
        uint64_t pi = burst ? next_rand(&rng) % (uint64_t)s->cfg->npools : pool_of(s->cfg, (uint64_t)a->id, seq);
        uint64_t want = burst ? 1 + next_rand(&rng) % 4 : 1;
        if (want > s->per - seq)
            want = s->per - seq;
        const struct pyshm_pool *pool = &s->pools[pi];
        uint64_t idx[4], gen[4];
        int64_t n = get_blocks(pool, burst, want, idx, gen, &s->abort);
        if (n < 0)
            goto fail;
        a->gets[pi] += (uint64_t)n;
        struct pyshm_held_block held[4];
        for (int64_t i = 0; i < n; i++) {
            uint8_t *b = tc_block(pool, idx[i]);
            own_block(b, me);
            stamp_message(b, pool->elt_size, (uint64_t)a->id, seq + (uint64_t)i);
            s->sent_pool[(uint64_t)a->id * s->per + seq + (uint64_t)i] = pool->offset;
            held[i] = (struct pyshm_held_block){pool, idx[i], gen[i]};
        }
        jitter(&rng);
        for (int64_t i = 0; i < n; i++)
            if (!still_owner(tc_block(pool, idx[i]), me, "before enqueue"))
                goto fail;
        int rc;
        for (;;) {
            rc = burst ? pyshm_block_ring_enqueue_burst(&s->ring, held, (uint64_t)n)
                       : pyshm_block_ring_enqueue(&s->ring, pool, held[0].index, &held[0].gen);
            if (rc != -PYSHM_EFULL || atomic_load_explicit(&s->abort, memory_order_relaxed))
                break;
            tc_yield();
        }
        if (rc != 0) {
            if (rc != -PYSHM_EFULL)
                tc_fail(__FILE__, __LINE__, "block_ring_enqueue gave %d", rc);
            goto fail;
        }
        seq += (uint64_t)n;
        a->handled += (uint64_t)n;
    }
    return NULL;
fail:
    atomic_store(&s->abort, 1);
    return NULL;
}

static int threads_done(void *ctx) { return atomic_load_explicit((atomic_int *)ctx, memory_order_acquire); }

static uint64_t threads_pool(void *ctx, uint64_t producer, uint64_t seq)
{
    const struct block_shared *s = ctx;
    return s->sent_pool[producer * s->per + seq];
}

static void *block_consumer(void *arg)
{
    struct block_arg *a = arg;
    struct block_shared *s = a->s;
    struct pyshm_region own, *region = &s->region;
    /* Consumer 0 shares the creator's handle (read-only use: every pool is known);
     * the others look like other processes: their own table and mapping. */
    if (a->id > 0) {
        if (tc_view_open(&s->region, &own) != 0) {
            tc_fail(__FILE__, __LINE__, "view");
            atomic_store(&s->abort, 1);
            return NULL;
        }
        region = &own;
    }
    struct pyshm_block_ring ring;
    if (pyshm_block_ring_attach(region, s->ring.offset, &ring) != 0) {
        tc_fail(__FILE__, __LINE__, "ring attach");
        atomic_store(&s->abort, 1);
    } else {
        struct consumer_ctx c = {
            .ring = &ring, .region = region, .producers = (uint64_t)s->cfg->producers, .per = s->per,
            .me = 1000 + (uint64_t)a->id, .expected_pool = threads_pool, .pool_ctx = s,
            .large_elt = s->cfg->elt[s->cfg->npools - 1], .picky = s->cfg->picky, .burst = s->cfg->burst,
            .seen = s->seen,
            .abort = &s->abort, .producers_done = threads_done, .done_ctx = &s->done,
        };
        consume(&c);
        a->handled = c.handled;
    }
    if (region == &own)
        tc_view_close(&s->region, &own);
    return NULL;
}

/* Restart a full free queue at a position just before 2^64 (count a power of two). */
static void free_queue_near_wrap(struct pyshm_pool *p)
{
    uint64_t start = UINT64_MAX - p->count * 3 - 5;
    pyshm_ring_init(&p->free_queue, start);
    for (uint64_t i = 0; i < p->count; i++)
        pyshm_ring_enqueue_sp(&p->free_queue, i);
}

static void block_stress(const struct block_cfg *cfg)
{
    struct block_shared *s = calloc(1, sizeof(*s));
    REQUIRE(s != NULL);
    s->cfg = cfg;
    s->per = tc_cfg.messages / (uint64_t)cfg->producers;
    if (tc_region(&s->region, 1 << 20) != 0) {
        free(s);
        REQUIRE(0);
    }
    uint64_t fq_start[MAX_POOLS];
    for (int i = 0; i < cfg->npools; i++) {
        REQUIRE_EQ(pyshm_pool_create(&s->region, cfg->count[i], cfg->elt[i], cfg->pool_flags, NULL, &s->pools[i]), 0);
        if (cfg->free_queue_near_wrap)
            free_queue_near_wrap(&s->pools[i]);
        fq_start[i] = atomic_load(&s->pools[i].free_queue.counters->deq_pos);
    }
    REQUIRE_EQ(pyshm_block_ring_create(&s->region, cfg->capacity, cfg->ring_flags, NULL, &s->ring), 0);
    pyshm_ring_init(&s->ring.ring, cfg->ring_start);
    s->seen = calloc(cfg->producers * s->per, 1);
    s->sent_pool = calloc(cfg->producers * s->per, sizeof(uint64_t));
    REQUIRE(s->seen != NULL && s->sent_pool != NULL);

    pthread_t th[16];
    struct block_arg args[16];
    int n = cfg->producers + cfg->consumers;
    for (int i = 0; i < n; i++) {
        args[i] = (struct block_arg){.s = s, .id = i < cfg->consumers ? i : i - cfg->consumers};
        REQUIRE(pthread_create(&th[i], NULL, i < cfg->consumers ? block_consumer : block_producer, &args[i]) == 0);
    }
    uint64_t gets[MAX_POOLS] = {0}, produced = 0, consumed = 0;
    for (int i = cfg->consumers; i < n; i++) {
        pthread_join(th[i], NULL);
        produced += args[i].handled;
        for (int k = 0; k < cfg->npools; k++)
            gets[k] += args[i].gets[k];
    }
    atomic_store_explicit(&s->done, 1, memory_order_release);
    for (int i = 0; i < cfg->consumers; i++) {
        pthread_join(th[i], NULL);
        consumed += args[i].handled;
    }
    uint64_t total = cfg->producers * s->per;
    if (getenv("TC_VERBOSE")) {
        printf("      per consumer:");
        for (int i = 0; i < cfg->consumers; i++)
            printf(" %" PRIu64, args[i].handled);
        printf("\n");
    }
    CHECK_EQ(produced, total);
    CHECK_EQ(consumed, total);
    check_all_seen(s->seen, (uint64_t)cfg->producers, s->per);
    CHECK_EQ(pyshm_block_ring_count(&s->ring), 0);
    CHECK(atomic_load(&s->ring.ring.counters->deq_pos) == cfg->ring_start + total);
    for (int i = 0; i < cfg->npools; i++) {
        const struct pyshm_pool *p = &s->pools[i];
        CHECK_EQ(pyshm_pool_free_count(p), p->count);
        CHECK(atomic_load(&p->free_queue.counters->deq_pos) == fq_start[i] + gets[i]);
        for (uint64_t b = 0; b < p->count; b++)
            CHECK(pyshm_block_kind_of(tc_state(p, b)) == PYSHM_BLOCK_FREE);
    }
    free(s->seen);
    free(s->sent_pool);
    pyshm_region_close(&s->region);
    free(s);
}

/* Two pools (40-byte blocks packed at stride 40, 200-byte blocks at stride 256), an MPMC
 * ring crossing 2^64 mid-run, free queues crossing it too, consumers sometimes asking
 * for big blocks only. */
static void test_block_mpmc(void)
{
    block_stress(&(struct block_cfg){
        .producers = 2, .consumers = 2, .npools = 2, .count = {16, 32}, .elt = {40, 200}, .capacity = 8,
        .ring_start = UINT64_MAX - tc_cfg.messages / 2, .free_queue_near_wrap = 1, .picky = 1});
}

/* Few blocks, a ring of 2, three of each: pools run dry, the ring runs full, put()
 * meets get()s in flight. */
static void test_block_mpmc_contended(void)
{
    block_stress(&(struct block_cfg){
        .producers = 3, .consumers = 3, .npools = 1, .count = {4}, .elt = {64}, .capacity = 2,
        .ring_start = UINT64_MAX - 3});
}

/* The ring is larger than the pool: producers wait for blocks, not for room. */
static void test_block_mpmc_pool_bound(void)
{
    block_stress(&(struct block_cfg){
        .producers = 2, .consumers = 2, .npools = 2, .count = {3, 5}, .elt = {33, 1000}, .capacity = 64});
}

/* Bursts on both sides: get_burst, enqueue_burst, dequeue_burst, put_burst. */
static void test_block_bursts(void)
{
    block_stress(&(struct block_cfg){
        .producers = 2, .consumers = 2, .npools = 2, .count = {16, 8}, .elt = {40, 200}, .capacity = 8,
        .ring_start = UINT64_MAX - tc_cfg.messages / 3, .free_queue_near_wrap = 1, .burst = 1});
}

/* Single producer, single consumer flags everywhere. */
static void test_block_spsc(void)
{
    block_stress(&(struct block_cfg){
        .producers = 1, .consumers = 1, .npools = 2, .count = {8, 8}, .elt = {48, 96},
        .pool_flags = PYSHM_MEMPOOL_F_SP_PUT | PYSHM_MEMPOOL_F_SC_GET, .capacity = 4,
        .ring_flags = PYSHM_RING_F_SP_ENQ | PYSHM_RING_F_SC_DEQ, .ring_start = UINT64_MAX - 17,
        .free_queue_near_wrap = 1});
}

const struct tc_test tc_stress_tests[] = {
    {"stress_ring_mp_mc_2x2_wrap", test_raw_mpmc, 0, NULL},
    {"stress_ring_mp_mc_3x3_capacity_2", test_raw_mpmc_tiny, 0, NULL},
    {"stress_ring_mp_mc_2x2_capacity_5", test_raw_mpmc_odd, 0, NULL},
    {"stress_ring_sp_sc_wrap", test_raw_spsc, 0, NULL},
    {"stress_ring_sp_mc_1x3", test_raw_spmc, 0, NULL},
    {"stress_ring_mp_sc_3x1", test_raw_mpsc, 0, NULL},
    {"stress_ring_bursts_2x2_wrap", test_raw_bursts, 0, NULL},
    {"stress_ring_bursts_2x2_capacity_4", test_raw_bursts_tiny, 0, NULL},
    {"stress_blocks_mpmc_2x2_two_pools_wrap", test_block_mpmc, 0, NULL},
    {"stress_blocks_mpmc_3x3_contended", test_block_mpmc_contended, 0, NULL},
    {"stress_blocks_mpmc_2x2_pool_bound", test_block_mpmc_pool_bound, 0, NULL},
    {"stress_blocks_spsc_flags", test_block_spsc, 0, NULL},
    {"stress_blocks_bursts_2x2", test_block_bursts, 0, NULL},
};
const size_t tc_stress_test_count = sizeof(tc_stress_tests) / sizeof(tc_stress_tests[0]);
