/*
 * test_edge.c - single-threaded edge cases of pools (mempool.h) and Rings (block_ring.h):
 * sizes and limits, FIFO order of the free queue, block states, generations and holder
 * words, refusals (stale, not yours, another pool, out of range) that move nothing, a put
 * held up by a get that stopped mid-way, and garbage in free queues and Rings.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

/* ------------------------------------------------------------------------------------ */
/* sizes                                                                                  */

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
    CHECK_EQ(pyshm_rawbuf_footprint(0, &bytes), -EINVAL);
    CHECK_EQ(pyshm_rawbuf_footprint(PYSHM_MAX_RAWBUF_SIZE + 1, &bytes), -EINVAL);
    CHECK_EQ(pyshm_rawbuf_footprint(1, &bytes), 0);
    CHECK_EQ(bytes, 256);

    struct pyshm_space s;
    CHECK_EQ(pyshm_space_create(&s, 0), -EINVAL);
    pyshm_space_close(&s);
    CHECK_EQ(pyshm_space_create(&s, PYSHM_MIN_REGION_SIZE - 1), -EINVAL);
    pyshm_space_close(&s);
    CHECK_EQ(pyshm_space_create(&s, PYSHM_MAX_REGION_SIZE + 1), -EINVAL);
    pyshm_space_close(&s);

    /* Room for exactly one pool and one ring of 6 entries. */
    uint64_t count = 8, pool_bytes, ring_bytes, too_many_bytes;
    do
        REQUIRE_EQ(pyshm_pool_footprint(++count, 100, &pool_bytes), 0);
    while (pool_bytes < PYSHM_MIN_REGION_SIZE);
    REQUIRE_EQ(pyshm_block_ring_footprint(6, &ring_bytes), 0);
    REQUIRE_EQ(pyshm_pool_footprint(count + 10, 100, &too_many_bytes), 0);
    REQUIRE(too_many_bytes > pool_bytes + ring_bytes);
    REQUIRE(tc_space(&s, pool_bytes + ring_bytes) == 0);
    struct pyshm_region *r = &s.region;
    struct pyshm_region_header *h = (struct pyshm_region_header *)r->base;
    CHECK_EQ(atomic_load(&h->carve_end), PYSHM_OBJECTS_OFFSET);
    CHECK_EQ(pyshm_region_carved(r), 0);
    uint64_t off;
    CHECK_EQ(pyshm_pool_create(r, 0, 100, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, count, 0, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, PYSHM_MAX_COUNT + 1, 100, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, count, PYSHM_MAX_ELT_SIZE + 1, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, PYSHM_MAX_COUNT, PYSHM_MAX_ELT_SIZE, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, count, 100, 8, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, count, 100, 1u << 31, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_pool_create(r, count + 10, 100, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_pool_create(r, PYSHM_MAX_COUNT, 8, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_pool_create(r, 1, PYSHM_MAX_ELT_SIZE, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_block_ring_create(r, 0, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(r, PYSHM_MAX_RING_CAPACITY + 1, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(r, 4, 4, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(r, PYSHM_MAX_RING_CAPACITY, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_rawbuf_create(r, 0, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_rawbuf_create(r, r->size, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_region_carve(r, 0, PYSHM_KIND_POOL, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_region_carve(r, 64, PYSHM_KIND_POOL, NULL, &off), -EINVAL); /* smaller than a header */
    CHECK_EQ(pyshm_region_carve(r, 200, PYSHM_KIND_POOL, NULL, &off), -EINVAL);
    CHECK_EQ(pyshm_region_carve(r, UINT64_MAX - 63, PYSHM_KIND_POOL, NULL, &off), -ENOSPC);
    /* Nothing refused consumed any space or published anything. */
    CHECK_EQ(atomic_load(&h->carve_end), PYSHM_OBJECTS_OFFSET);
    CHECK_EQ(atomic_load(&h->objects_head), 0);

    /* What fits exactly fits; then nothing more does. */
    CHECK_EQ(pyshm_pool_create(r, count, 100, 0, NULL, &off), 0);
    CHECK_EQ(off, PYSHM_OBJECTS_OFFSET);
    CHECK_EQ(pyshm_block_ring_create(r, 10, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_block_ring_create(r, 6, 0, NULL, &off), 0);
    CHECK_EQ(pyshm_block_ring_create(r, 1, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_pool_create(r, 1, 1, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_rawbuf_create(r, 1, NULL, &off), -ENOSPC);
    CHECK_EQ(atomic_load(&h->carve_end), PYSHM_OBJECTS_OFFSET + r->size);
    CHECK_EQ(pyshm_region_carved(r), r->size);
    pyshm_space_close(&s);
}

/* ------------------------------------------------------------------------------------ */
/* pools                                                                                  */

/* Get hands out blocks in the order they were put (oldest free first), any flags. */
static void test_pool_fifo(void)
{
    for (uint32_t flags = 0; flags <= PYSHM_MEMPOOL_FLAGS; flags++) {
        struct pyshm_space s;
        REQUIRE(tc_space(&s, 1 << 16) == 0);
        struct pyshm_member *m = tc_member(&s);
        const struct pyshm_pool *p = tc_pool(&s, 8, 24, flags, NULL);
        REQUIRE(m && p);
        CHECK_EQ(p->stride, 24);
        CHECK_EQ(p->flags, flags);
        CHECK_EQ(pyshm_pool_free_count(p), 8);
        CHECK_EQ(pyshm_pool_touched(p), 0);
        struct pyshm_block b[8], one;
        for (uint64_t i = 0; i < 8; i++) {
            REQUIRE(tc_get1(p, m, &b[i]) == 0);
            CHECK_EQ(b[i].index, i);
            CHECK_EQ(b[i].gen, 1);
            CHECK(b[i].pool == p);
            CHECK_EQ(tc_state(p, i), pyshm_block_state(1, PYSHM_BLOCK_HELD));
            CHECK_EQ(tc_holder(p, i), m->holder);
            CHECK_EQ(pyshm_pool_touched(p), i + 1);
            CHECK_EQ(atomic_load(&m->entry->held), i + 1);
        }
        CHECK_EQ(pyshm_pool_get(p, m, &one, 1), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_free_count(p), 0);
        static const uint64_t order[8] = {5, 2, 7, 0, 1, 6, 3, 4};
        for (int i = 0; i < 8; i++) {
            CHECK_EQ(pyshm_pool_put(p, m, &b[order[i]], 1, TC_PATIENCE_NS), 0);
            CHECK_EQ(tc_state(p, order[i]), pyshm_block_state(2, PYSHM_BLOCK_FREE));
            CHECK_EQ(pyshm_pool_free_count(p), i + 1);
        }
        CHECK_EQ(atomic_load(&m->entry->held), 0);
        /* Interleaved: take three, give one back, take the rest: order is put order. */
        struct pyshm_block t[8];
        for (int i = 0; i < 3; i++) {
            REQUIRE(tc_get1(p, m, &t[i]) == 0);
            CHECK_EQ(t[i].index, order[i]);
            CHECK_EQ(t[i].gen, 3);
        }
        CHECK_EQ(pyshm_pool_put(p, m, &t[1], 1, TC_PATIENCE_NS), 0);
        for (int i = 3; i < 8; i++) {
            REQUIRE(tc_get1(p, m, &t[i]) == 0);
            CHECK_EQ(t[i].index, order[i]);
        }
        REQUIRE(tc_get1(p, m, &t[1]) == 0);
        CHECK_EQ(t[1].index, order[1]);
        CHECK_EQ(t[1].gen, 5);
        CHECK_EQ(pyshm_pool_get(p, m, &one, 1), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_put(p, m, t, 8, TC_PATIENCE_NS), 0);
        CHECK_EQ(pyshm_pool_free_count(p), 8);
        CHECK_EQ(pyshm_pool_touched(p), 8);
        CHECK_EQ(pyshm_pool_get(p, m, &one, 0), 0); /* max 0: nothing, not an error */
        pyshm_space_close(&s);
    }
}

/* A pool of one block: a free queue of capacity 1 flipping full/empty. */
static void test_pool_count_1(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 14) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 1, 1, 0, NULL);
    REQUIRE(m && p);
    CHECK_EQ(p->stride, 8);
    struct pyshm_block b, c;
    for (uint64_t round = 0; round < 5; round++) {
        REQUIRE(tc_get1(p, m, &b) == 0);
        CHECK_EQ(b.index, 0);
        CHECK_EQ(b.gen, 2 * round + 1);
        CHECK_EQ(pyshm_pool_get(p, m, &c, 1), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_get(p, m, &c, 5), -PYSHM_EEMPTY);
        CHECK_EQ(pyshm_pool_put(p, m, &b, 1, TC_PATIENCE_NS), 0);
        CHECK_EQ(pyshm_pool_put(p, m, &b, 1, TC_PATIENCE_NS), -PYSHM_ESTALE);
    }
    CHECK_EQ(pyshm_pool_get(p, m, &b, 7), 1);
    CHECK_EQ(pyshm_pool_put(p, m, &b, 1, TC_PATIENCE_NS), 0);
    pyshm_space_close(&s);
}

/* Every hand-over is checked against the generation and holder before anything moves. */
static void test_pool_ownership(void)
{
    struct pyshm_space s, s2;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    REQUIRE(tc_space_attach(&s2, &s) == 0);
    struct pyshm_member *m = tc_member(&s), *m2 = tc_member(&s2);
    const struct pyshm_pool *p = tc_pool(&s, 2, 16, 0, NULL), *other = tc_pool(&s, 2, 16, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && m2 && p && other && tc_ring(&s, 4, 0, NULL, &q) == 0);
    CHECK(m->holder != m2->holder);
    struct pyshm_block a, b;
    REQUIRE(tc_get1(p, m, &a) == 0);
    REQUIRE(tc_get1(p, m, &b) == 0);
    uint64_t ga = a.gen;

    /* Wrong generations. */
    const uint64_t wrong[] = {0, ga - 1, ga + 1, ga + 2, UINT64_MAX};
    for (size_t i = 0; i < TC_COUNT(wrong); i++) {
        struct pyshm_block w = a;
        w.gen = wrong[i];
        CHECK_EQ(pyshm_pool_put(p, m, &w, 1, TC_PATIENCE_NS), -PYSHM_ESTALE);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &w, 1), -PYSHM_ESTALE);
    }
    /* Not yours: another member (another process) cannot give back or pass on a's block. */
    CHECK_EQ(pyshm_pool_put(p, m2, &a, 1, TC_PATIENCE_NS), -PYSHM_ENOTYOURS);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m2, &a, 1), -PYSHM_ENOTYOURS);
    CHECK_EQ(pyshm_block_check_held(p, a.index, a.gen, m->holder), 0);
    CHECK_EQ(pyshm_block_check_held(p, a.index, a.gen, m2->holder), -PYSHM_ENOTYOURS);
    /* Out of range, and a block of another pool given to this one. */
    struct pyshm_block oob = {p, 2, ga}, huge = {p, UINT64_MAX, ga}, foreign;
    CHECK_EQ(pyshm_pool_put(p, m, &oob, 1, TC_PATIENCE_NS), -EINVAL);
    CHECK_EQ(pyshm_pool_put(p, m, &huge, 1, TC_PATIENCE_NS), -EINVAL);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &oob, 1), -EINVAL);
    REQUIRE(tc_get1(other, m, &foreign) == 0);
    CHECK_EQ(pyshm_pool_put(p, m, &foreign, 1, TC_PATIENCE_NS), -EINVAL);
    /* One refused block in a burst: nothing moves. */
    struct pyshm_block mix[2] = {b, a};
    mix[1].gen = ga + 7;
    CHECK_EQ(pyshm_pool_put(p, m, mix, 2, TC_PATIENCE_NS), -PYSHM_ESTALE);
    mix[1] = foreign;
    CHECK_EQ(pyshm_pool_put(p, m, mix, 2, TC_PATIENCE_NS), -EINVAL);
    mix[1] = a;
    CHECK_EQ(pyshm_pool_put(p, m2, mix, 2, TC_PATIENCE_NS), -PYSHM_ENOTYOURS);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m2, mix, 2), -PYSHM_ENOTYOURS);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    CHECK_EQ(pyshm_pool_free_count(p), 0);
    CHECK_EQ(tc_state(p, a.index), pyshm_block_state(ga, PYSHM_BLOCK_HELD));
    CHECK_EQ(tc_state(p, b.index), pyshm_block_state(b.gen, PYSHM_BLOCK_HELD));
    CHECK_EQ(atomic_load(&m->entry->held), 3);
    CHECK_EQ(atomic_load(&m2->entry->held), 0);

    /* Double put. */
    struct pyshm_block stale = a;
    CHECK_EQ(pyshm_pool_put(p, m, &a, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_put(p, m, &stale, 1, TC_PATIENCE_NS), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &stale, 1), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_free_count(p), 1);
    /* Got again (a new generation): the old copy still cannot enqueue or put. */
    REQUIRE(tc_get1(p, m2, &a) == 0);
    CHECK_EQ(a.index, stale.index);
    CHECK_EQ(a.gen, stale.gen + 2);
    CHECK_EQ(tc_holder(p, a.index), m2->holder);
    CHECK_EQ(pyshm_pool_put(p, m, &stale, 1, TC_PATIENCE_NS), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_put(p, m, &a, 1, TC_PATIENCE_NS), -PYSHM_ENOTYOURS);

    /* Queued: neither a second enqueue nor a put under the generation it was queued at. */
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m2, &a, 1), 0);
    CHECK_EQ(tc_state(p, a.index), pyshm_block_state(a.gen + 1, PYSHM_BLOCK_IN_RING));
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m2, &a, 1), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_put(p, m2, &a, 1, TC_PATIENCE_NS), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_count(&q), 1);
    CHECK_EQ(atomic_load(&m2->entry->held), 0);

    /* Taken out by the other member: held at a new generation under its holder word. */
    struct pyshm_block t;
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), 1);
    CHECK(t.pool == p);
    CHECK_EQ(t.index, a.index);
    CHECK_EQ(t.gen, a.gen + 2);
    CHECK_EQ(tc_holder(p, t.index), m->holder);
    CHECK_EQ(pyshm_pool_put(p, m2, &a, 1, TC_PATIENCE_NS), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_put(p, m, &t, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_put(p, m, &b, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_put(other, m, &foreign, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(atomic_load(&m->entry->held), 0);
    tc_check_quiet(&s, &q, 1);
    tc_space_close(&s2);
    pyshm_space_close(&s);
}

/*
 * The same block twice in one put (or enqueue): the second copy is not held at its
 * generation once the first has moved, so all-or-none (mempool.h) means nothing moves and
 * -PYSHM_ESTALE. The binding refuses such a list before it reaches the core ("a block
 * listed twice"); a C caller is not protected. Observed: with room in the free queue for
 * both copies, the block goes back once, a hole is staged for the second copy, the held
 * count drops by 2, and the call returns -PYSHM_ECORRUPT; without room, the put waits
 * its whole patience and returns -EAGAIN.
 */
static void test_pool_put_duplicate(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 14) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 8, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct pyshm_block b[2], c;
    REQUIRE(tc_get1(p, m, &b[0]) == 0);
    REQUIRE(tc_get1(p, m, &c) == 0); /* two blocks out: room for two entries */
    b[1] = b[0];
    int rc = pyshm_pool_put(p, m, b, 2, 1000000);
    CHECK_EQ(rc, -PYSHM_ESTALE);
    CHECK_EQ(tc_state(p, b[0].index), pyshm_block_state(b[0].gen, PYSHM_BLOCK_HELD));
    CHECK_EQ(pyshm_pool_free_count(p), 2);
    CHECK_EQ(atomic_load(&m->entry->held), 2);
    rc = pyshm_block_ring_enqueue(&q, m, b, 2);
    CHECK_EQ(rc, -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    pyshm_space_close(&s);
}

/* Only one block out: the free queue has room for one entry, the put of two copies waits
 * its whole patience for room that cannot come, and reports -EAGAIN. */
static void test_pool_put_duplicate_no_room(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 14) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 8, 0, NULL);
    REQUIRE(m && p);
    struct pyshm_block b[3];
    REQUIRE(tc_get1(p, m, &b[0]) == 0);
    b[2] = b[1] = b[0];
    CHECK_EQ(pyshm_pool_put(p, m, b, 2, 1000000), -PYSHM_ESTALE);
    CHECK_EQ(tc_state(p, b[0].index), pyshm_block_state(b[0].gen, PYSHM_BLOCK_HELD));
    CHECK_EQ(pyshm_pool_put(p, m, b, 1, TC_PATIENCE_NS), 0);
    pyshm_space_close(&s);
}

/*
 * put() when the free queue reads full because a get() claimed a slot and stopped before
 * releasing it: -EAGAIN once the patience is spent, the block still held at its
 * generation; once the get finishes, put works.
 */
static void test_pool_put_blocked_by_stopped_get(void)
{
    struct pyshm_space s, s2;
    REQUIRE(tc_space(&s, 1 << 14) == 0);
    REQUIRE(tc_space_attach(&s2, &s) == 0);
    struct pyshm_member *m = tc_member(&s), *m2 = tc_member(&s2);
    const struct pyshm_pool *p = tc_pool(&s, 2, 16, 0, NULL);
    REQUIRE(m && m2 && p);
    const struct pyshm_queue *fq = &p->free_queue;
    struct pyshm_block a;
    REQUIRE(tc_get1(p, m, &a) == 0); /* position 0: block 0 */
    /* Another process's get claims position 1 (block 1) and stops there. */
    uint64_t pos = 0;
    REQUIRE_EQ(pyshm_queue_claim(fq, m2, PYSHM_RING_DEQ, 1, 1, &pos, NULL, NULL), 1);
    CHECK_EQ(pos, 1);
    CHECK_EQ(atomic_load(&m2->entry->what), fq->id | PYSHM_ANNOUNCE_DEQ); /* announced */
    CHECK_EQ(pyshm_pool_put(p, m, &a, 1, TC_PATIENCE_NS), 0); /* position 2: slot 0 is free */
    REQUIRE(tc_get1(p, m, &a) == 0);                          /* position 2 again */
    uint64_t gen = a.gen;
    /* Position 3 needs slot 1, which the stopped get still holds. */
    CHECK_EQ(pyshm_pool_put(p, m, &a, 1, 1000000), -EAGAIN);
    CHECK_EQ(a.gen, gen);
    CHECK_EQ(tc_state(p, a.index), pyshm_block_state(gen, PYSHM_BLOCK_HELD));
    CHECK_EQ(atomic_load(&m->entry->what), 0); /* the failed claim left no announcement */
    /* The stopped get finishes: takes its block, releases the slot. */
    uint64_t value = pyshm_queue_value(fq, pos), g2 = 0;
    CHECK_EQ(value, 1);
    pyshm_member_held_add(m2, 1);
    CHECK_EQ(pyshm_block_take(p, value, PYSHM_BLOCK_FREE, m2->holder, &g2), 0);
    pyshm_queue_release(fq, pos);
    pyshm_queue_finish(fq, m2, PYSHM_RING_DEQ);
    CHECK_EQ(pyshm_pool_put(p, m, &a, 1, TC_PATIENCE_NS), 0);
    struct pyshm_block b1 = {p, 1, g2};
    CHECK_EQ(pyshm_pool_put(p, m2, &b1, 1, TC_PATIENCE_NS), 0);
    tc_check_quiet(&s, NULL, 0);
    tc_space_close(&s2);
    pyshm_space_close(&s);
}

/* A free queue holding a value no correct process puts there: dropped, the queue goes on. */
static void test_pool_garbage_free_queue(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 14) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 2, 16, 0, NULL);
    REQUIRE(m && p);
    struct pyshm_block b0, b1, x;
    REQUIRE(tc_get1(p, m, &b0) == 0);
    REQUIRE(tc_get1(p, m, &b1) == 0);
    REQUIRE(tc_inject(&p->free_queue, 2) == 0); /* out of range */
    CHECK_EQ(pyshm_pool_get(p, m, &x, 1), -PYSHM_ECORRUPT);
    REQUIRE(tc_inject(&p->free_queue, b1.index) == 0); /* a block someone holds */
    CHECK_EQ(pyshm_pool_get(p, m, &x, 1), -PYSHM_ECORRUPT);
    CHECK_EQ(tc_state(p, b1.index), pyshm_block_state(b1.gen, PYSHM_BLOCK_HELD));
    CHECK_EQ(tc_holder(p, b1.index), m->holder);
    CHECK_EQ(pyshm_pool_get(p, m, &x, 1), -PYSHM_EEMPTY);
    CHECK_EQ(atomic_load(&m->entry->held), 2);
    /* A hole (what a repair publishes for nothing) is passed over. */
    REQUIRE(tc_inject(&p->free_queue, PYSHM_QUEUE_HOLE) == 0);
    CHECK_EQ(pyshm_pool_put(p, m, &b0, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_get(p, m, &x, 2), 1);
    CHECK_EQ(x.index, b0.index);
    b0 = x;
    /* Garbage sequence words ahead at the head and at the tail. */
    CHECK_EQ(pyshm_pool_put(p, m, &b0, 1, TC_PATIENCE_NS), 0);
    const struct pyshm_ring *fq = &p->free_queue.ring;
    uint64_t head = pyshm_ring_head(fq, PYSHM_RING_DEQ, memory_order_relaxed);
    atomic_fetch_add(&pyshm_ring_slot_at(fq, head)->seq, 8 * 2);
    CHECK_EQ(pyshm_pool_get(p, m, &x, 1), -PYSHM_ECORRUPT);
    atomic_fetch_sub(&pyshm_ring_slot_at(fq, head)->seq, 8 * 2);
    uint64_t tail = pyshm_ring_head(fq, PYSHM_RING_ENQ, memory_order_relaxed);
    atomic_fetch_add(&pyshm_ring_slot_at(fq, tail)->seq, 8 * 2);
    CHECK_EQ(pyshm_pool_put(p, m, &b1, 1, TC_PATIENCE_NS), -PYSHM_ECORRUPT);
    CHECK_EQ(tc_state(p, b1.index), pyshm_block_state(b1.gen, PYSHM_BLOCK_HELD));
    atomic_fetch_sub(&pyshm_ring_slot_at(fq, tail)->seq, 8 * 2);
    /* Put right, the queue still hands out the block that was in it. */
    REQUIRE(tc_get1(p, m, &x) == 0);
    CHECK_EQ(x.index, b0.index);
    CHECK_EQ(pyshm_pool_put(p, m, &x, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_put(p, m, &b1, 1, TC_PATIENCE_NS), 0);
    pyshm_space_close(&s);
}

/* ------------------------------------------------------------------------------------ */
/* Rings                                                                                 */

/* A Ring of capacity 1 holds one block; a second enqueue is refused and keeps its block. */
static void test_block_ring_capacity_1(void)
{
    for (uint32_t flags = 0; flags <= PYSHM_BLOCK_RING_FLAGS; flags++) {
        struct pyshm_space s;
        REQUIRE(tc_space(&s, 1 << 14) == 0);
        struct pyshm_member *m = tc_member(&s);
        const struct pyshm_pool *p = tc_pool(&s, 2, 8, 0, NULL);
        struct pyshm_block_ring q;
        REQUIRE(m && p && tc_ring(&s, 1, flags, NULL, &q) == 0);
        CHECK_EQ(q.flags, flags);
        struct pyshm_block a, b, t;
        REQUIRE(tc_get1(p, m, &a) == 0);
        REQUIRE(tc_get1(p, m, &b) == 0);
        for (int round = 0; round < 4; round++) {
            CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &a, 1), 0);
            CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &b, 1), -PYSHM_EFULL);
            CHECK_EQ(tc_state(p, b.index), pyshm_block_state(b.gen, PYSHM_BLOCK_HELD));
            CHECK_EQ(pyshm_block_ring_count(&q), 1);
            CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 4, &t), 1);
            CHECK_EQ(t.index, a.index);
            CHECK_EQ(t.gen, a.gen + 2);
            a = t;
            CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), -PYSHM_EEMPTY);
        }
        struct pyshm_block both[2] = {a, b};
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, both, 2), -PYSHM_EFULL); /* more than the capacity */
        CHECK_EQ(pyshm_pool_put(p, m, both, 2, TC_PATIENCE_NS), 0);
        tc_check_quiet(&s, &q, 1);
        pyshm_space_close(&s);
    }
}

/* Full Ring: enqueue refuses, the blocks stay held at their generation, FIFO is kept;
 * the Ring's counters start just below 2^64. */
static void test_block_ring_full(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 64, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 2, 0, NULL, &q) == 0);
    tc_ring_place(&q.queue.ring, UINT64_MAX - 2, UINT64_MAX - 2, NULL);
    struct pyshm_block b[4], t;
    for (int i = 0; i < 4; i++)
        REQUIRE(tc_get1(p, m, &b[i]) == 0);
    for (int round = 0; round < 4; round++) {
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &b[0], 1), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &b[1], 1), 0);
        uint64_t before = b[2].gen;
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &b[2], 1), -PYSHM_EFULL);
        CHECK_EQ(b[2].gen, before);
        CHECK_EQ(tc_state(p, b[2].index), pyshm_block_state(before, PYSHM_BLOCK_HELD));
        CHECK_EQ(pyshm_block_ring_count(&q), 2);
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), 1);
            CHECK_EQ(t.index, b[i].index);
            b[i] = t;
        }
        CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), -PYSHM_EEMPTY);
    }
    CHECK_EQ(pyshm_ring_head(&q.queue.ring, PYSHM_RING_DEQ, memory_order_relaxed), UINT64_MAX - 2 + 8);
    CHECK_EQ(pyshm_pool_put(p, m, b, 4, TC_PATIENCE_NS), 0);
    tc_check_quiet(&s, &q, 1);
    pyshm_space_close(&s);
}

/* A head block smaller than min_size stays at the head (no skipping ahead). */
static void test_block_ring_too_big(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *small = tc_pool(&s, 2, 40, 0, NULL), *large = tc_pool(&s, 2, 300, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && small && large && tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct pyshm_block sb, lb, t;
    REQUIRE(tc_get1(small, m, &sb) == 0);
    REQUIRE(tc_get1(large, m, &lb) == 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &sb, 1), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &lb, 1), 0);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 41, 1, &t), -PYSHM_ETOOBIG);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, UINT64_MAX, 2, &t), -PYSHM_ETOOBIG);
    CHECK_EQ(pyshm_block_ring_count(&q), 2);
    CHECK_EQ(pyshm_block_kind_of(tc_state(small, sb.index)), PYSHM_BLOCK_IN_RING);
    CHECK_EQ(atomic_load(&m->entry->what), 0);
    /* With min_size, at most one block comes out, even if more are asked for. */
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 40, 8, &t), 1);
    CHECK(t.pool == small && t.index == sb.index);
    CHECK_EQ(pyshm_pool_put(small, m, &t, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 301, 1, &t), -PYSHM_ETOOBIG);
    CHECK_EQ(pyshm_block_ring_count(&q), 1);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 300, 1, &t), 1);
    CHECK(t.pool == large);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 301, 1, &t), -PYSHM_EEMPTY);
    CHECK_EQ(pyshm_pool_put(large, m, &t, 1, TC_PATIENCE_NS), 0);
    tc_check_quiet(&s, &q, 1);
    pyshm_space_close(&s);
}

/*
 * An entry naming no block in the Ring state is dropped (-PYSHM_ECORRUPT when it was all a
 * dequeue claimed); blocks it happens to name are left alone; holes are passed over; the
 * Ring keeps working.
 */
static void test_block_ring_garbage_offsets(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 48, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct pyshm_block v, held, t;
    REQUIRE(tc_get1(p, m, &v) == 0);
    REQUIRE(tc_get1(p, m, &held) == 0);
    const uint64_t end = PYSHM_OBJECTS_OFFSET + s.region.size;
    const uint64_t fixed[] = {
        0, 1, 64, PYSHM_OBJECTS_OFFSET, p->offset, q.offset, p->data_offset - 8, p->data_offset + 1,
        p->data_offset + 24, pyshm_pool_block_offset(p, 1) + 8, pyshm_pool_block_offset(p, 4), end, end - 64,
        s.region.map_size, UINT64_MAX - 1, UINT64_MAX - 63, UINT64_MAX - p->stride + 1,
    };
    const size_t nfixed = TC_COUNT(fixed);
    size_t pools_known = s.pools.count;
    for (size_t i = 0; i < nfixed + 2; i++) {
        struct pyshm_block w;
        REQUIRE(tc_get1(p, m, &w) == 0);
        /* The one block left in the free queue. */
        REQUIRE_EQ(pyshm_pool_free_count(p), 1);
        uint64_t free_index = pyshm_queue_value(&p->free_queue,
                                                pyshm_ring_head(&p->free_queue.ring, PYSHM_RING_DEQ, memory_order_relaxed));
        uint64_t garbage = i < nfixed ? fixed[i]
                           : i == nfixed ? pyshm_pool_block_offset(p, free_index) /* a block start, FREE */
                                         : pyshm_pool_block_offset(p, held.index); /* a block start, HELD */
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &v, 1), 0);
        REQUIRE(tc_inject(&q.queue, garbage) == 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &w, 1), 0);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), 1);
        CHECK_EQ(t.index, v.index);
        v = t;
        int64_t rc = pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t);
        if (rc != -PYSHM_ECORRUPT)
            tc_fail(__FILE__, __LINE__, "garbage entry %" PRIu64 " dequeued with %" PRId64, garbage, rc);
        CHECK_EQ(pyshm_block_ring_count(&q), 1);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), 1);
        CHECK_EQ(t.index, w.index);
        CHECK_EQ(pyshm_pool_put(p, m, &t, 1, TC_PATIENCE_NS), 0);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), -PYSHM_EEMPTY);
        /* Blocks the entry named are untouched. */
        CHECK_EQ(tc_state(p, held.index), pyshm_block_state(held.gen, PYSHM_BLOCK_HELD));
        CHECK_EQ(pyshm_block_kind_of(tc_state(p, free_index)), PYSHM_BLOCK_FREE);
    }
    CHECK_EQ(s.pools.count, pools_known); /* re-walks found nothing new */
    /* Garbage among valid entries in one burst: the valid ones come out. */
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &v, 1), 0);
    REQUIRE(tc_inject(&q.queue, 12345) == 0);
    REQUIRE(tc_inject(&q.queue, PYSHM_QUEUE_HOLE) == 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, &held, 1), 0);
    struct pyshm_block out[4];
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 4, out), 2);
    CHECK(out[0].index == v.index && out[1].index == held.index);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    /* Only holes: passed over, then the Ring reads as empty. */
    REQUIRE(tc_inject(&q.queue, PYSHM_QUEUE_HOLE) == 0);
    REQUIRE(tc_inject(&q.queue, PYSHM_QUEUE_HOLE) == 0);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), -PYSHM_EEMPTY);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    /* A garbage sequence word at the head: the dequeue gives up instead of spinning. */
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, out, 1), 0);
    uint64_t head = pyshm_ring_head(&q.queue.ring, PYSHM_RING_DEQ, memory_order_relaxed);
    atomic_fetch_add(&pyshm_ring_slot_at(&q.queue.ring, head)->seq, 8 * 4);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), -PYSHM_ECORRUPT);
    atomic_fetch_sub(&pyshm_ring_slot_at(&q.queue.ring, head)->seq, 8 * 4);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), 1);
    CHECK_EQ(pyshm_pool_put(p, m, &t, 1, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_put(p, m, &out[1], 1, TC_PATIENCE_NS), 0);
    tc_check_quiet(&s, &q, 1);
    pyshm_space_close(&s);
}

const struct tc_test tc_edge_tests[] = {
    {"invalid_sizes_and_exact_fit", test_invalid_sizes, 0, NULL},
    {"pool_fifo_states_holders", test_pool_fifo, 0, NULL},
    {"pool_count_1", test_pool_count_1, 0, NULL},
    {"pool_ownership_stale_notyours_einval", test_pool_ownership, 0, NULL},
    {"pool_put_same_block_twice_all_or_none", test_pool_put_duplicate, 0, NULL},
    {"pool_put_same_block_twice_no_room", test_pool_put_duplicate_no_room, 0, NULL},
    {"pool_put_blocked_by_stopped_get", test_pool_put_blocked_by_stopped_get, 0, NULL},
    {"pool_garbage_in_free_queue", test_pool_garbage_free_queue, 0, NULL},
    {"block_ring_capacity_1", test_block_ring_capacity_1, 0, NULL},
    {"block_ring_full_near_2^64", test_block_ring_full, 0, NULL},
    {"block_ring_min_size_too_big", test_block_ring_too_big, 0, NULL},
    {"block_ring_garbage_offsets_and_holes", test_block_ring_garbage_offsets, 0, NULL},
};
const size_t tc_edge_test_count = TC_COUNT(tc_edge_tests);
