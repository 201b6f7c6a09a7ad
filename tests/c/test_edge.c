/*
 * test_edge.c - single-threaded edge cases of ring.h, mempool and block_ring.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

static const char *variant_name[4] = {"mp/mc", "sp/mc", "mp/sc", "sp/sc"};

/* ------------------------------------------------------------------------------------ */
/* ring.h                                                                                */

/*
 * Drive a ring with a deterministic mix of enqueues and dequeues, checking every result
 * against a model FIFO: order, full and empty at exactly the capacity, the count, and
 * the accept callback leaving the head in place.
 */
static int reject_all(void *ctx, uint64_t value)
{
    (void)value;
    ++*(int *)ctx;
    return -12345;
}

static void ring_model_run(uint64_t capacity, uint64_t start, int variant, unsigned ops)
{
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, capacity) == 0);
    pyshm_ring_init(&r, start);
    int sp = variant & 1, sc = (variant >> 1) & 1;
    uint64_t *model = calloc(capacity, sizeof(uint64_t));
    uint64_t head = 0, used = 0, next_value = 1, rng = 0x9e3779b97f4a7c15u ^ capacity ^ start;
    long bad = 0;
    for (unsigned op = 0; op < ops && bad < 5; op++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        /* Phases of mostly-enqueue and mostly-dequeue so full and empty are both hit, at
         * every slot index, many times. */
        int want_enq = ((op / (2 * capacity + 3)) & 1) ? (rng >> 60) < 3 : (rng >> 60) >= 3;
        if (want_enq) {
            int rc = tc_enq(&r, sp, next_value);
            if (used == capacity) {
                if (rc != -PYSHM_EFULL) {
                    bad++;
                    tc_fail(__FILE__, __LINE__, "cap %" PRIu64 " %s: enqueue on full ring gave %d",
                            capacity, variant_name[variant], rc);
                }
            } else if (rc != 0) {
                bad++;
                tc_fail(__FILE__, __LINE__, "cap %" PRIu64 " %s: enqueue with %" PRIu64 " used gave %d",
                        capacity, variant_name[variant], used, rc);
            } else {
                model[(head + used++) % capacity] = next_value++;
            }
        } else {
            uint64_t v = 0;
            if (used > 0 && (rng & 0xff) < 16) {
                int calls = 0;
                int rc = sc ? pyshm_ring_dequeue_sc(&r, &v, reject_all, &calls)
                            : pyshm_ring_dequeue_mc(&r, &v, reject_all, &calls);
                if (rc != -12345 || calls != 1 || pyshm_ring_count(&r) != used) {
                    bad++;
                    tc_fail(__FILE__, __LINE__, "accept rejecting the head: rc %d calls %d", rc, calls);
                }
            }
            int rc = tc_deq(&r, sc, &v);
            if (used == 0) {
                if (rc != -PYSHM_EEMPTY) {
                    bad++;
                    tc_fail(__FILE__, __LINE__, "cap %" PRIu64 " %s: dequeue on empty ring gave %d",
                            capacity, variant_name[variant], rc);
                }
            } else if (rc != 0 || v != model[head % capacity]) {
                bad++;
                tc_fail(__FILE__, __LINE__, "cap %" PRIu64 " %s: dequeue gave %d value %" PRIu64
                        " expected %" PRIu64, capacity, variant_name[variant], rc, v, model[head % capacity]);
            } else {
                head++;
                used--;
            }
        }
        if (pyshm_ring_count(&r) != used) {
            bad++;
            tc_fail(__FILE__, __LINE__, "count %" PRIu64 " expected %" PRIu64, pyshm_ring_count(&r), used);
        }
    }
    /* The counters moved by exactly the operations that succeeded. */
    CHECK(atomic_load(&r.counters->deq_pos) == start + head);
    CHECK(atomic_load(&r.counters->enq_pos) == start + head + used);
    free(model);
    tc_raw_ring_free(&r);
}

static void test_ring_full_empty_flips(void)
{
    static const uint64_t caps[] = {2, 3, 4, 5, 7, 8, 64};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
        for (int variant = 0; variant < 4; variant++)
            for (uint64_t start = 0; start < 3; start++)
                ring_model_run(caps[c], start * 1000, variant, 4000);
}

/* Power-of-two capacities keep pos % capacity continuous across 2^64 (ring.h). */
static void test_ring_counter_wrap(void)
{
    static const uint64_t caps[] = {2, 4, 8, 16, 1024};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        uint64_t cap = caps[c];
        const uint64_t starts[] = {UINT64_MAX - 5, UINT64_MAX - cap + 1, UINT64_MAX, UINT64_MAX - 3 * cap,
                                   (UINT64_C(1) << 63) - 3};
        for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++)
            for (int variant = 0; variant < 4; variant++)
                ring_model_run(cap, starts[s], variant, (unsigned)(20 * cap + 200));
    }
    /* And plainly: fill across the wrap, check full, drain, check empty. */
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, 8) == 0);
    pyshm_ring_init(&r, UINT64_MAX - 5);
    for (uint64_t i = 0; i < 8; i++)
        CHECK_EQ(pyshm_ring_enqueue_mp(&r, 100 + i), 0);
    CHECK_EQ(pyshm_ring_enqueue_mp(&r, 999), -PYSHM_EFULL);
    CHECK_EQ(pyshm_ring_count(&r), 8);
    CHECK(atomic_load(&r.counters->enq_pos) == 2); /* wrapped */
    for (uint64_t i = 0; i < 8; i++) {
        uint64_t v = 0;
        CHECK_EQ(pyshm_ring_dequeue_mc(&r, &v, NULL, NULL), 0);
        CHECK_EQ(v, 100 + i);
    }
    uint64_t v;
    CHECK_EQ(pyshm_ring_dequeue_mc(&r, &v, NULL, NULL), -PYSHM_EEMPTY);
    CHECK_EQ(pyshm_ring_count(&r), 0);
    tc_raw_ring_free(&r);
}

/* Capacity 1: one entry fits, a second is refused, for every variant, across the wrap. */
static void test_ring_capacity_1(void)
{
    for (int variant = 0; variant < 4; variant++) {
        struct pyshm_ring r;
        REQUIRE(tc_raw_ring_alloc(&r, 1) == 0);
        const uint64_t starts[] = {0, UINT64_MAX - 2};
        for (size_t s = 0; s < 2; s++) {
            pyshm_ring_init(&r, starts[s]);
            int sp = variant & 1, sc = (variant >> 1) & 1;
            for (uint64_t round = 0; round < 5; round++) {
                uint64_t v = 0;
                CHECK_EQ(tc_deq(&r, sc, &v), -PYSHM_EEMPTY);
                CHECK_EQ(tc_enq(&r, sp, 10 + round), 0);
                CHECK_EQ(pyshm_ring_count(&r), 1);
                CHECK_EQ(tc_enq(&r, sp, 99), -PYSHM_EFULL);
                CHECK_EQ(tc_deq(&r, sc, &v), 0);
                CHECK_EQ(v, 10 + round);
            }
        }
        tc_raw_ring_free(&r);
    }
}

/* A sequence word no correct process writes makes the calls give up, not spin. */
static void test_ring_garbage_seq(void)
{
    for (int variant = 0; variant < 4; variant++) {
        int sp = variant & 1, sc = (variant >> 1) & 1;
        struct pyshm_ring r;
        REQUIRE(tc_raw_ring_alloc(&r, 4) == 0);
        pyshm_ring_init(&r, 0);
        CHECK_EQ(tc_enq(&r, sp, 7), 0);
        struct pyshm_ring_slot *head = &r.slots[0];
        uint64_t v = 0;

        /* Head slot claims to be a lap ahead: dequeue gives up with ECORRUPT. */
        atomic_store(&head->seq, pyshm_ring_seq_full(0 + 9 * 4));
        CHECK_EQ(tc_deq(&r, sc, &v), -PYSHM_ECORRUPT);
        /* Far behind: reads as not yet published. */
        atomic_store(&head->seq, pyshm_ring_seq_full(0) - (UINT64_C(1) << 62));
        CHECK_EQ(tc_deq(&r, sc, &v), -PYSHM_EEMPTY);
        atomic_store(&head->seq, pyshm_ring_seq_full(0)); /* repaired: the entry flows again */
        CHECK_EQ(tc_deq(&r, sc, &v), 0);
        CHECK_EQ(v, 7);

        /* Tail slot (position 1) ahead: enqueue gives up; far behind: reads as full. */
        struct pyshm_ring_slot *tail = &r.slots[1];
        atomic_store(&tail->seq, pyshm_ring_seq_free(1 + 3));
        CHECK_EQ(tc_enq(&r, sp, 8), -PYSHM_ECORRUPT);
        atomic_store(&tail->seq, pyshm_ring_seq_free(1) - (UINT64_C(1) << 62));
        CHECK_EQ(tc_enq(&r, sp, 8), -PYSHM_EFULL);
        atomic_store(&tail->seq, pyshm_ring_seq_free(1));
        CHECK_EQ(tc_enq(&r, sp, 8), 0);
        CHECK_EQ(tc_deq(&r, sc, &v), 0);
        CHECK_EQ(v, 8);
        CHECK_EQ(pyshm_ring_count(&r), 0);
        tc_raw_ring_free(&r);
    }
}

/* ------------------------------------------------------------------------------------ */
/* mempool                                                                               */

static void test_invalid_sizes(void)
{
    uint64_t bytes = 0;
    CHECK_EQ(pyshm_pool_footprint(0, 8, &bytes), -EINVAL);
    CHECK_EQ(pyshm_pool_footprint(8, 0, &bytes), -EINVAL);
    CHECK_EQ(pyshm_pool_footprint(PYSHM_MAX_COUNT + 1, 8, &bytes), -EINVAL);
    CHECK_EQ(pyshm_pool_footprint(8, PYSHM_MAX_ELT_SIZE + 1, &bytes), -EINVAL);
    CHECK_EQ(pyshm_pool_footprint(PYSHM_MAX_COUNT, PYSHM_MAX_ELT_SIZE, &bytes), -EINVAL);
    CHECK_EQ(pyshm_pool_footprint(UINT64_MAX, UINT64_MAX, &bytes), -EINVAL);
    CHECK_EQ(pyshm_pool_footprint(PYSHM_MAX_COUNT, 8, &bytes), 0); /* the limits themselves */
    CHECK_EQ(pyshm_pool_footprint(1, PYSHM_MAX_ELT_SIZE, &bytes), 0);
    CHECK_EQ(pyshm_block_ring_footprint(0, &bytes), -EINVAL);
    CHECK_EQ(pyshm_block_ring_footprint(PYSHM_MAX_RING_CAPACITY + 1, &bytes), -EINVAL);
    CHECK_EQ(pyshm_block_ring_footprint(PYSHM_MAX_RING_CAPACITY, &bytes), 0);

    struct pyshm_region r;
    CHECK_EQ(pyshm_region_create(&r, 0), -EINVAL);
    pyshm_region_close(&r);
    CHECK_EQ(pyshm_region_create(&r, (UINT64_C(1) << 46) + 1), -EINVAL);
    pyshm_region_close(&r);

    uint64_t pool_bytes, ring_bytes, too_many_bytes;
    REQUIRE_EQ(pyshm_pool_footprint(10, 100, &pool_bytes), 0);
    REQUIRE_EQ(pyshm_block_ring_footprint(6, &ring_bytes), 0);
    REQUIRE_EQ(pyshm_pool_footprint(20, 100, &too_many_bytes), 0);
    REQUIRE(too_many_bytes > pool_bytes + ring_bytes);
    /* Room for exactly one pool of 10 x 100 bytes and one ring of 6 entries (and no
     * announcement table: nothing here runs a queue operation). */
    REQUIRE(tc_region(&r, pyshm_region_size_for(pool_bytes) - pyshm_announce_table_size() + ring_bytes) == 0);
    struct pyshm_region_header *h = (struct pyshm_region_header *)r.base;
    uint64_t carve_end = atomic_load(&h->carve_end);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    CHECK_EQ(pyshm_pool_create(&r, 0, 100, 0, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, 10, 0, 0, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, PYSHM_MAX_COUNT + 1, 100, 0, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, 10, PYSHM_MAX_ELT_SIZE + 1, 0, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, PYSHM_MAX_COUNT, PYSHM_MAX_ELT_SIZE, 0, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, 10, 100, 4, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, 10, 100, 1u << 31, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, 10, 100, PYSHM_MEMPOOL_FLAGS | 8, NULL, &p), -EINVAL);
    CHECK_EQ(pyshm_pool_create(&r, 20, 100, 0, NULL, &p), -ENOSPC);
    CHECK_EQ(pyshm_pool_create(&r, PYSHM_MAX_COUNT, 8, 0, NULL, &p), -ENOSPC);
    CHECK_EQ(pyshm_pool_create(&r, 1, PYSHM_MAX_ELT_SIZE, 0, NULL, &p), -ENOSPC);
    CHECK_EQ(pyshm_block_ring_create(&r, 0, 0, NULL, &q), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(&r, PYSHM_MAX_RING_CAPACITY + 1, 0, NULL, &q), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(&r, 4, 4, NULL, &q), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(&r, 4, PYSHM_RING_FLAGS | 0x100, NULL, &q), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(&r, PYSHM_MAX_RING_CAPACITY, 0, NULL, &q), -ENOSPC);
    uint64_t off = 0;
    CHECK_EQ(pyshm_region_carve(&r, 0, PYSHM_KIND_POOL, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_region_carve(&r, 32, PYSHM_KIND_POOL, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_region_carve(&r, 100, PYSHM_KIND_POOL, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_region_carve(&r, UINT64_MAX - 63, PYSHM_KIND_POOL, NULL, &off), -ENOSPC);
    /* Nothing refused consumed any space or published anything. */
    CHECK(atomic_load(&h->carve_end) == carve_end);
    CHECK(atomic_load(&h->objects_head) == 0);
    CHECK_EQ(r.pool_count, 0);

    /* What fits exactly fits; then nothing more does. */
    CHECK_EQ(pyshm_pool_create(&r, 10, 100, 0, NULL, &p), 0);
    CHECK_EQ(pyshm_block_ring_create(&r, 10, 0, NULL, &q), -ENOSPC);
    CHECK_EQ(pyshm_block_ring_create(&r, 6, 0, NULL, &q), 0);
    CHECK_EQ(pyshm_block_ring_create(&r, 1, 0, NULL, &q), -ENOSPC);
    CHECK_EQ(pyshm_pool_create(&r, 1, 1, 0, NULL, &p), -ENOSPC);
    CHECK(atomic_load(&h->carve_end) == r.size);
    pyshm_region_close(&r);

    /* A region smaller than its own header takes nothing. */
    REQUIRE(tc_region(&r, 1) == 0);
    CHECK_EQ(pyshm_pool_create(&r, 1, 1, 0, NULL, &p), -ENOSPC);
    CHECK_EQ(pyshm_block_ring_create(&r, 1, 0, NULL, &q), -ENOSPC);
    pyshm_region_close(&r);
}

static void check_get(const struct pyshm_pool *p, uint64_t want_index, uint64_t *gen)
{
    uint64_t index = UINT64_MAX;
    int rc = pyshm_pool_get(p, &index, gen);
    if (rc != 0 || index != want_index)
        tc_fail(__FILE__, __LINE__, "pool_get gave %d index %" PRIu64 ", expected index %" PRIu64, rc, index,
                want_index);
}

/* Get hands out blocks in the order they were put (oldest free first), any flags. */
static void test_pool_fifo(void)
{
    for (uint32_t flags = 0; flags <= PYSHM_MEMPOOL_FLAGS; flags++) {
        struct pyshm_region r;
        REQUIRE(tc_region(&r, 1 << 16) == 0);
        struct pyshm_pool p;
        REQUIRE_EQ(pyshm_pool_create(&r, 8, 24, flags, NULL, &p), 0);
        CHECK_EQ(pyshm_pool_free_count(&p), 8);
        uint64_t gen[8], index;
        for (uint64_t i = 0; i < 8; i++) {
            check_get(&p, i, &gen[i]);
            CHECK_EQ(gen[i], 1);
            CHECK(tc_state(&p, i) == pyshm_block_state(1, PYSHM_BLOCK_HELD));
        }
        CHECK_EQ(pyshm_pool_get(&p, &index, &gen[0]), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_free_count(&p), 0);
        static const uint64_t order[8] = {5, 2, 7, 0, 1, 6, 3, 4};
        for (int i = 0; i < 8; i++) {
            CHECK_EQ(pyshm_pool_put(&p, order[i], &gen[order[i]]), 0);
            CHECK(tc_state(&p, order[i]) == pyshm_block_state(2, PYSHM_BLOCK_FREE));
            CHECK_EQ(pyshm_pool_free_count(&p), i + 1);
        }
        /* Interleaved: take three, give one back, take the rest: order is put order. */
        for (int i = 0; i < 3; i++)
            check_get(&p, order[i], &gen[order[i]]);
        CHECK_EQ(pyshm_pool_put(&p, order[1], &gen[order[1]]), 0);
        for (int i = 3; i < 8; i++)
            check_get(&p, order[i], &gen[order[i]]);
        check_get(&p, order[1], &gen[order[1]]);
        CHECK_EQ(gen[order[1]], 5);
        CHECK_EQ(pyshm_pool_get(&p, &index, &gen[0]), -PYSHM_EEMPTY);
        for (uint64_t i = 0; i < 8; i++)
            CHECK_EQ(pyshm_pool_put(&p, i, &gen[i]), 0);
        CHECK_EQ(pyshm_pool_free_count(&p), 8);
        pyshm_region_close(&r);
    }
}

/* A pool of one block (a free queue of capacity 1 that never holds more than 1). */
static void test_pool_count_1(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 14) == 0);
    struct pyshm_pool p;
    REQUIRE_EQ(pyshm_pool_create(&r, 1, 1, 0, NULL, &p), 0);
    CHECK_EQ(p.stride, 8);
    uint64_t index, gen = 0, g2;
    for (uint64_t round = 0; round < 4; round++) {
        CHECK_EQ(pyshm_pool_get(&p, &index, &gen), 0);
        CHECK_EQ(index, 0);
        CHECK_EQ(gen, 2 * round + 1);
        CHECK_EQ(pyshm_pool_get(&p, &index, &g2), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_free_count(&p), 0);
        uint64_t old = gen;
        CHECK_EQ(pyshm_pool_put(&p, 0, &gen), 0);
        CHECK_EQ(pyshm_pool_put(&p, 0, &old), -PYSHM_ESTALE);
        CHECK_EQ(pyshm_pool_free_count(&p), 1);
    }
    pyshm_region_close(&r);
}

/* Every change of owner is checked against the generation the caller holds. */
static void test_pool_ownership(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 32, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q), 0);
    uint64_t a, ga, b, gb;
    REQUIRE_EQ(pyshm_pool_get(&p, &a, &ga), 0);
    REQUIRE_EQ(pyshm_pool_get(&p, &b, &gb), 0);

    /* Wrong generations are refused and leave the block held. */
    uint64_t wrong[] = {0, ga - 1, ga + 1, ga + 2, UINT64_MAX >> 2};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        uint64_t g = wrong[i];
        CHECK_EQ(pyshm_pool_put(&p, a, &g), -PYSHM_ESTALE);
        g = wrong[i];
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &g), -PYSHM_ESTALE);
    }
    CHECK(tc_state(&p, a) == pyshm_block_state(ga, PYSHM_BLOCK_HELD));
    uint64_t g = ga;
    CHECK_EQ(pyshm_pool_put(&p, 2, &g), -EINVAL);
    CHECK_EQ(pyshm_pool_put(&p, UINT64_MAX, &g), -EINVAL);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, 2, &g), -EINVAL);

    /* Double put. */
    uint64_t stale_a = ga;
    CHECK_EQ(pyshm_pool_put(&p, a, &ga), 0);
    CHECK_EQ(pyshm_pool_put(&p, a, &stale_a), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_free_count(&p), 1);
    /* Enqueue from the stale copy: the block is free now. */
    g = stale_a;
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &g), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);

    /* Get it again (a new generation); the old one still cannot enqueue or put. */
    uint64_t a2, ga2;
    REQUIRE_EQ(pyshm_pool_get(&p, &a2, &ga2), 0);
    CHECK_EQ(a2, a);
    CHECK(ga2 > stale_a);
    g = stale_a;
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &g), -PYSHM_ESTALE);
    g = stale_a;
    CHECK_EQ(pyshm_pool_put(&p, a, &g), -PYSHM_ESTALE);

    /* Queued: neither a second enqueue nor a put under the generation it was queued at. */
    uint64_t queued_gen = ga2;
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &ga2), 0);
    CHECK(tc_state(&p, a) == pyshm_block_state(queued_gen + 1, PYSHM_BLOCK_IN_RING));
    g = queued_gen;
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &g), -PYSHM_ESTALE);
    g = queued_gen;
    CHECK_EQ(pyshm_pool_put(&p, a, &g), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_count(&q), 1);

    /* Taken out: the consumer holds it at a new generation, the producer's is stale. */
    struct pyshm_taken_block t;
    CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
    CHECK(t.pool == r.pools[0]);
    CHECK_EQ(t.index, a);
    CHECK_EQ(t.gen, queued_gen + 2);
    g = queued_gen;
    CHECK_EQ(pyshm_pool_put(&p, a, &g), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_put(t.pool, t.index, &t.gen), 0);
    CHECK_EQ(pyshm_pool_put(&p, b, &gb), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 2);
    CHECK(pyshm_block_kind_of(tc_state(&p, a)) == PYSHM_BLOCK_FREE);
    CHECK(pyshm_block_kind_of(tc_state(&p, b)) == PYSHM_BLOCK_FREE);
    pyshm_region_close(&r);
}

/*
 * put() when the free queue reads full because a get() claimed a slot and stopped
 * before releasing it: -EAGAIN after its bounded retries, the block still held at the
 * generation it reports; once the get finishes, put works.
 */
static void test_pool_put_blocked_by_stopped_get(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 14) == 0);
    struct pyshm_pool p;
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 16, 0, NULL, &p), 0);
    struct pyshm_ring *fq = &p.free_queue;
    /* A get() of position 0 that claimed it and stopped: deq_pos moved, slot kept. */
    uint64_t pos0 = atomic_load(&fq->counters->deq_pos);
    CHECK(atomic_load(&fq->slots[pos0 % 2].seq) == pyshm_ring_seq_full(pos0));
    uint64_t stuck_index = atomic_load(&fq->slots[pos0 % 2].value);
    atomic_store(&fq->counters->deq_pos, pos0 + 1);
    uint64_t index, gen;
    REQUIRE_EQ(pyshm_pool_get(&p, &index, &gen), 0);
    CHECK(index != stuck_index);
    uint64_t before = gen;
    CHECK_EQ(pyshm_pool_put(&p, index, &gen), -EAGAIN);
    CHECK_EQ(gen, before + 2);
    CHECK(tc_state(&p, index) == pyshm_block_state(gen, PYSHM_BLOCK_HELD));
    uint64_t g = before;
    CHECK_EQ(pyshm_pool_put(&p, index, &g), -PYSHM_ESTALE);
    /* The stopped get() finishes. */
    atomic_store(&fq->slots[pos0 % 2].seq, pyshm_ring_seq_free(pos0 + 2));
    CHECK_EQ(pyshm_pool_put(&p, index, &gen), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 1);
    pyshm_region_close(&r);
}

/* A free queue holding an index no correct process puts there. */
static void test_pool_garbage_free_queue(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 14) == 0);
    struct pyshm_pool p;
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 16, 0, NULL, &p), 0);
    uint64_t i0, g0, i1, g1, index, gen;
    REQUIRE_EQ(pyshm_pool_get(&p, &i0, &g0), 0);
    REQUIRE_EQ(pyshm_pool_get(&p, &i1, &g1), 0);
    REQUIRE(tc_inject(&p.free_queue, 2) == 0);          /* out of range */
    CHECK_EQ(pyshm_pool_get(&p, &index, &gen), -PYSHM_ECORRUPT);
    REQUIRE(tc_inject(&p.free_queue, i1) == 0);         /* a block someone holds */
    CHECK_EQ(pyshm_pool_get(&p, &index, &gen), -PYSHM_ECORRUPT);
    CHECK(tc_state(&p, i1) == pyshm_block_state(g1, PYSHM_BLOCK_HELD));
    CHECK_EQ(pyshm_pool_get(&p, &index, &gen), -PYSHM_EEMPTY);
    /* Garbage sequence word ahead at the head and at the tail. */
    CHECK_EQ(pyshm_pool_put(&p, i0, &g0), 0);
    struct pyshm_ring *fq = &p.free_queue;
    uint64_t head = atomic_load(&fq->counters->deq_pos);
    atomic_fetch_add(&fq->slots[head % 2].seq, 6);
    CHECK_EQ(pyshm_pool_get(&p, &index, &gen), -PYSHM_ECORRUPT);
    atomic_fetch_sub(&fq->slots[head % 2].seq, 6);
    uint64_t tail = atomic_load(&fq->counters->enq_pos);
    atomic_fetch_add(&fq->slots[tail % 2].seq, 4);
    CHECK_EQ(pyshm_pool_put(&p, i1, &g1), -PYSHM_ECORRUPT);
    atomic_fetch_sub(&fq->slots[tail % 2].seq, 4);
    /* Repaired, the queue still hands out the block that was in it. */
    CHECK_EQ(pyshm_pool_get(&p, &index, &gen), 0);
    CHECK_EQ(index, i0);
    pyshm_region_close(&r);
}

/* ------------------------------------------------------------------------------------ */
/* block_ring                                                                            */

/* A ring of capacity 1 holds one block; a second enqueue is refused and keeps its block. */
static void test_block_ring_capacity_1(void)
{
    for (uint32_t flags = 0; flags <= PYSHM_RING_FLAGS; flags++) {
        struct pyshm_region r;
        REQUIRE(tc_region(&r, 1 << 14) == 0);
        struct pyshm_pool p;
        struct pyshm_block_ring q;
        REQUIRE_EQ(pyshm_pool_create(&r, 2, 8, 0, NULL, &p), 0);
        REQUIRE_EQ(pyshm_block_ring_create(&r, 1, flags, NULL, &q), 0);
        uint64_t a, ga, b, gb;
        REQUIRE_EQ(pyshm_pool_get(&p, &a, &ga), 0);
        REQUIRE_EQ(pyshm_pool_get(&p, &b, &gb), 0);
        for (int round = 0; round < 3; round++) {
            CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &ga), 0);
            uint64_t before = gb;
            CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, b, &gb), -PYSHM_EFULL);
            CHECK_EQ(gb, before + 2);
            struct pyshm_taken_block t = {0};
            CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
            CHECK_EQ(t.index, a);
            ga = t.gen;
            CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), -PYSHM_EEMPTY);
        }
        CHECK_EQ(pyshm_pool_put(&p, a, &ga), 0);
        CHECK_EQ(pyshm_pool_put(&p, b, &gb), 0);
        CHECK_EQ(pyshm_pool_free_count(&p), 2);
        pyshm_region_close(&r);
    }
}

/* Full ring: enqueue refuses, the block stays held (at gen + 2), FIFO is kept. */
static void test_block_ring_full(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 64, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 2, 0, NULL, &q), 0);
    pyshm_ring_init(&q.ring, UINT64_MAX - 2); /* and across the wrap */
    uint64_t idx[4], gen[4];
    for (int i = 0; i < 4; i++)
        REQUIRE_EQ(pyshm_pool_get(&p, &idx[i], &gen[i]), 0);
    for (int round = 0; round < 4; round++) {
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, idx[0], &gen[0]), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, idx[1], &gen[1]), 0);
        uint64_t before = gen[2];
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, idx[2], &gen[2]), -PYSHM_EFULL);
        CHECK_EQ(gen[2], before + 2);
        CHECK(tc_state(&p, idx[2]) == pyshm_block_state(gen[2], PYSHM_BLOCK_HELD));
        CHECK_EQ(pyshm_block_ring_count(&q), 2);
        struct pyshm_taken_block t;
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
            CHECK_EQ(t.index, idx[i]);
            gen[i] = t.gen;
        }
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), -PYSHM_EEMPTY);
    }
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pyshm_pool_put(&p, idx[i], &gen[i]), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    pyshm_region_close(&r);
}

/* A head block smaller than min_size stays at the head (no skipping ahead). */
static void test_block_ring_too_big(void)
{
    for (uint32_t flags = 0; flags <= PYSHM_RING_FLAGS; flags++) {
        struct pyshm_region r;
        REQUIRE(tc_region(&r, 1 << 16) == 0);
        struct pyshm_pool small, large;
        struct pyshm_block_ring q;
        REQUIRE_EQ(pyshm_pool_create(&r, 2, 40, 0, NULL, &small), 0);
        REQUIRE_EQ(pyshm_pool_create(&r, 2, 300, 0, NULL, &large), 0);
        REQUIRE_EQ(pyshm_block_ring_create(&r, 4, flags, NULL, &q), 0);
        uint64_t s, gs, l, gl;
        REQUIRE_EQ(pyshm_pool_get(&small, &s, &gs), 0);
        REQUIRE_EQ(pyshm_pool_get(&large, &l, &gl), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &small, s, &gs), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &large, l, &gl), 0);
        struct pyshm_taken_block t;
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 41, &t), -PYSHM_ETOOBIG);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, UINT64_MAX, &t), -PYSHM_ETOOBIG);
        CHECK_EQ(pyshm_block_ring_count(&q), 2);
        CHECK(pyshm_block_kind_of(tc_state(&small, s)) == PYSHM_BLOCK_IN_RING);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 40, &t), 0);
        CHECK_EQ(t.pool->offset, small.offset);
        CHECK_EQ(t.index, s);
        CHECK_EQ(pyshm_pool_put(t.pool, t.index, &t.gen), 0);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 301, &t), -PYSHM_ETOOBIG);
        CHECK_EQ(pyshm_block_ring_count(&q), 1);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 300, &t), 0);
        CHECK_EQ(t.pool->offset, large.offset);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 301, &t), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_put(t.pool, t.index, &t.gen), 0);
        CHECK_EQ(pyshm_pool_free_count(&small) + pyshm_pool_free_count(&large), 4);
        pyshm_region_close(&r);
    }
}

/*
 * An entry naming no block in the ring state is reported once as ECORRUPT and dropped;
 * blocks it happens to name are left alone, and the ring keeps working.
 */
static void test_block_ring_garbage_offset(void)
{
    for (uint32_t flags = 0; flags <= PYSHM_RING_FLAGS; flags++) {
        struct pyshm_region r;
        REQUIRE(tc_region(&r, 1 << 16) == 0);
        struct pyshm_pool p;
        struct pyshm_block_ring q;
        REQUIRE_EQ(pyshm_pool_create(&r, 4, 48, 0, NULL, &p), 0);
        REQUIRE_EQ(pyshm_block_ring_create(&r, 4, flags, NULL, &q), 0);
        uint64_t v, gv, held, gh;
        REQUIRE_EQ(pyshm_pool_get(&p, &v, &gv), 0);
        REQUIRE_EQ(pyshm_pool_get(&p, &held, &gh), 0);
        const uint64_t fixed[] = {
            0, 1, 64, p.offset, q.offset, p.data_offset - 8, p.data_offset + 1, p.data_offset + 24,
            pyshm_pool_block_offset(&p, 1) + 8, pyshm_pool_block_offset(&p, 4), r.size, r.map_size,
            UINT64_MAX - 1, UINT64_MAX - 63, UINT64_MAX - p.stride + 1,
        };
        const size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
        for (size_t i = 0; i < nfixed + 2; i++) {
            uint64_t w, gw;
            REQUIRE_EQ(pyshm_pool_get(&p, &w, &gw), 0);
            /* The one block left in the free queue. */
            struct pyshm_ring *fq = &p.free_queue;
            uint64_t free_index = atomic_load(&fq->slots[atomic_load(&fq->counters->deq_pos) % p.count].value);
            REQUIRE_EQ(pyshm_pool_free_count(&p), 1);
            uint64_t garbage = i < nfixed        ? fixed[i]
                               : i == nfixed     ? pyshm_pool_block_offset(&p, free_index) /* valid start, FREE */
                                                 : pyshm_pool_block_offset(&p, held);      /* valid start, HELD */
            CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, v, &gv), 0);
            REQUIRE(tc_inject(&q.ring, garbage) == 0);
            CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, w, &gw), 0);
            struct pyshm_taken_block t = {0};
            CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
            CHECK_EQ(t.index, v);
            gv = t.gen;
            int rc = pyshm_block_ring_dequeue(&q, &r, 0, &t);
            if (rc != -PYSHM_ECORRUPT)
                tc_fail(__FILE__, __LINE__, "garbage entry %" PRIu64 " dequeued with %d", garbage, rc);
            CHECK_EQ(pyshm_block_ring_count(&q), 1);
            CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
            CHECK_EQ(t.index, w);
            CHECK_EQ(pyshm_pool_put(&p, w, &t.gen), 0);
            CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), -PYSHM_EEMPTY);
            /* Blocks the entry named are untouched. */
            CHECK(tc_state(&p, held) == pyshm_block_state(gh, PYSHM_BLOCK_HELD));
            CHECK(pyshm_block_kind_of(tc_state(&p, free_index)) == PYSHM_BLOCK_FREE);
        }
        CHECK_EQ(r.pool_count, 1); /* re-walks found nothing new */
        /* A garbage sequence word at the head: the dequeue gives up instead of spinning. */
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, v, &gv), 0);
        struct pyshm_ring_slot *head = &q.ring.slots[atomic_load(&q.ring.counters->deq_pos) % 4];
        atomic_fetch_add(&head->seq, 8);
        struct pyshm_taken_block t;
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), -PYSHM_ECORRUPT);
        atomic_fetch_sub(&head->seq, 8);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
        CHECK_EQ(pyshm_pool_put(&p, t.index, &t.gen), 0);
        CHECK_EQ(pyshm_pool_put(&p, held, &gh), 0);
        CHECK_EQ(pyshm_pool_free_count(&p), 4);
        pyshm_region_close(&r);
    }
}

const struct tc_test tc_edge_tests[] = {
    {"ring_full_empty_flips", test_ring_full_empty_flips, 0, NULL},
    {"ring_counter_wrap_2^64", test_ring_counter_wrap, 0, NULL},
    {"ring_capacity_1", test_ring_capacity_1, 0, NULL},
    {"ring_garbage_seq", test_ring_garbage_seq, 0, NULL},
    {"invalid_sizes", test_invalid_sizes, 0, NULL},
    {"pool_fifo", test_pool_fifo, 0, NULL},
    {"pool_count_1", test_pool_count_1, 0, NULL},
    {"pool_ownership_stale_generations", test_pool_ownership, 0, NULL},
    {"pool_put_blocked_by_stopped_get", test_pool_put_blocked_by_stopped_get, 0, NULL},
    {"pool_garbage_free_queue", test_pool_garbage_free_queue, 0, NULL},
    {"block_ring_capacity_1", test_block_ring_capacity_1, 0, NULL},
    {"block_ring_full", test_block_ring_full, 0, NULL},
    {"block_ring_too_big", test_block_ring_too_big, 0, NULL},
    {"block_ring_garbage_offset", test_block_ring_garbage_offset, 0, NULL},
};
const size_t tc_edge_test_count = sizeof(tc_edge_tests) / sizeof(tc_edge_tests[0]);
