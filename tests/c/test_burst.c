/*
 * test_burst.c - bursts (ring.h, pools, block rings), ring shutdown and drain, object
 * names, and attaching a region by file descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc.h"

/* ------------------------------------------------------------------------------------ */
/* ring.h bursts                                                                         */

static void test_ring_bursts(void)
{
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, 8) == 0);
    pyshm_ring_init(&r, UINT64_MAX - 9);
    uint64_t in[16], out[16];
    for (int i = 0; i < 16; i++)
        in[i] = 100 + (uint64_t)i;
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in, 0), 0);
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 0), 0);
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 4), -PYSHM_EEMPTY);
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in, 9), -PYSHM_EFULL); /* more than the capacity */
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in, 5), 0);
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in + 5, 4), -PYSHM_EFULL); /* all or none */
    CHECK_EQ(pyshm_ring_count(&r), 5);
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in + 5, 3), 0);
    CHECK_EQ(pyshm_ring_enqueue_mp(&r, 1), -PYSHM_EFULL);
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 3), 3);
    CHECK(out[0] == 100 && out[1] == 101 && out[2] == 102);
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in + 8, 3), 0); /* across the 2^64 wrap */
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 16), 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(out[i], 103 + i);
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 16), -PYSHM_EEMPTY);

    /* Model check: random bursts and singles against a FIFO. */
    uint64_t model[8], head = 0, used = 0, next = 1, rng = 12345;
    for (int op = 0; op < 20000; op++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        uint64_t n = 1 + (rng >> 61); /* 1..8 */
        if ((rng >> 40) & 1) {
            for (uint64_t i = 0; i < n; i++)
                in[i] = next + i;
            int rc = pyshm_ring_enqueue_burst(&r, in, n);
            if (used + n > 8) {
                if (rc != -PYSHM_EFULL) {
                    tc_fail(__FILE__, __LINE__, "burst of %" PRIu64 " with %" PRIu64 " used gave %d", n, used, rc);
                    break;
                }
            } else if (rc != 0) {
                tc_fail(__FILE__, __LINE__, "burst of %" PRIu64 " with %" PRIu64 " used gave %d", n, used, rc);
                break;
            } else {
                for (uint64_t i = 0; i < n; i++)
                    model[(head + used++) % 8] = next++;
            }
        } else {
            int64_t got = pyshm_ring_dequeue_burst(&r, out, n);
            uint64_t want = used < n ? used : n;
            if (want == 0 ? got != -PYSHM_EEMPTY : got != (int64_t)want) {
                tc_fail(__FILE__, __LINE__, "dequeue burst of %" PRIu64 " with %" PRIu64 " used gave %" PRId64, n,
                        used, got);
                break;
            }
            for (uint64_t i = 0; i < want; i++, head++, used--)
                if (out[i] != model[head % 8]) {
                    tc_fail(__FILE__, __LINE__, "burst order");
                    op = 1 << 30;
                    break;
                }
        }
        CHECK_EQ(pyshm_ring_count(&r), used);
    }

    /* Garbage sequence words: ahead at the tail gives up; a hole mid-burst ends it. */
    pyshm_ring_init(&r, 0);
    atomic_store(&r.slots[2].seq, pyshm_ring_seq_free(2 + 8));
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in, 4), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_ring_count(&r), 0);
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in, 2), 0);
    atomic_store(&r.slots[2].seq, pyshm_ring_seq_free(2));
    CHECK_EQ(pyshm_ring_enqueue_burst(&r, in + 2, 2), 0);
    atomic_store(&r.slots[0].seq, pyshm_ring_seq_full(0 + 8 * 3));
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 4), -PYSHM_ECORRUPT);
    atomic_store(&r.slots[0].seq, pyshm_ring_seq_full(0));
    atomic_store(&r.slots[2].seq, pyshm_ring_seq_free(2)); /* position 2 not published (yet) */
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 4), 2);
    atomic_store(&r.slots[2].seq, pyshm_ring_seq_full(2));
    CHECK_EQ(pyshm_ring_dequeue_burst(&r, out, 4), 2);
    CHECK(out[0] == in[2] && out[1] == in[3]);
    tc_raw_ring_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* pool bursts                                                                           */

static void test_pool_bursts(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    REQUIRE_EQ(pyshm_pool_create(&r, 8, 16, 0, NULL, &p), 0);
    uint64_t idx[16], gen[16];
    CHECK_EQ(pyshm_pool_get_burst(&p, idx, gen, 3), 3);
    CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 2 && gen[0] == 1);
    CHECK_EQ(pyshm_pool_get_burst(&p, idx + 3, gen + 3, 16), 5);
    for (uint64_t i = 0; i < 8; i++) {
        CHECK_EQ(idx[i], i);
        CHECK(tc_state(&p, i) == pyshm_block_state(gen[i], PYSHM_BLOCK_HELD));
    }
    CHECK_EQ(pyshm_pool_get_burst(&p, idx, gen, 4), -PYSHM_EEMPTY);

    /* Put 5, 2, 7: all go back, in that order. */
    uint64_t bi[3] = {5, 2, 7}, bg[3] = {gen[5], gen[2], gen[7]};
    CHECK_EQ(pyshm_pool_put_burst(&p, bi, bg, 3), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 3);
    /* One stale generation (5 was just put) among held blocks: none go back, and the
     * others are still held, at the generations reported in gens[]. */
    uint64_t si[3] = {0, 5, 1}, sg[3] = {gen[0], gen[5], gen[1]};
    CHECK_EQ(pyshm_pool_put_burst(&p, si, sg, 3), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_free_count(&p), 3);
    CHECK(tc_state(&p, 0) == pyshm_block_state(sg[0], PYSHM_BLOCK_HELD));
    CHECK(tc_state(&p, 1) == pyshm_block_state(sg[2], PYSHM_BLOCK_HELD));
    gen[0] = sg[0];
    gen[1] = sg[2];
    /* The same block twice in one burst. */
    uint64_t di[2] = {3, 3}, dg[2] = {gen[3], gen[3]};
    CHECK_EQ(pyshm_pool_put_burst(&p, di, dg, 2), -PYSHM_ESTALE);
    CHECK(tc_state(&p, 3) == pyshm_block_state(dg[0], PYSHM_BLOCK_HELD));
    gen[3] = dg[0];
    /* An index out of range: none go back. */
    uint64_t oi[2] = {4, 8}, og[2] = {gen[4], 1};
    CHECK_EQ(pyshm_pool_put_burst(&p, oi, og, 2), -EINVAL);
    CHECK(tc_state(&p, 4) == pyshm_block_state(og[0], PYSHM_BLOCK_HELD));
    gen[4] = og[0];
    CHECK_EQ(pyshm_pool_free_count(&p), 3);

    /* FIFO through bursts. */
    uint64_t ri[5] = {6, 0, 4, 1, 3}, rg[5] = {gen[6], gen[0], gen[4], gen[1], gen[3]};
    CHECK_EQ(pyshm_pool_put_burst(&p, ri, rg, 5), 0);
    CHECK_EQ(pyshm_pool_get_burst(&p, idx, gen, 16), 8);
    static const uint64_t order[8] = {5, 2, 7, 6, 0, 4, 1, 3};
    for (int i = 0; i < 8; i++)
        CHECK_EQ(idx[i], order[i]);
    /* A garbage index in the free queue is dropped, the valid ones still handed out. */
    CHECK_EQ(pyshm_pool_put_burst(&p, idx, gen, 2), 0);
    REQUIRE(tc_inject(&p.free_queue, 99) == 0);
    CHECK_EQ(pyshm_pool_put(&p, idx[2], &gen[2]), 0);
    uint64_t gi[4], gg[4];
    CHECK_EQ(pyshm_pool_get_burst(&p, gi, gg, 4), 3);
    CHECK(gi[0] == idx[0] && gi[1] == idx[1] && gi[2] == idx[2]);
    REQUIRE(tc_inject(&p.free_queue, 98) == 0);
    CHECK_EQ(pyshm_pool_get_burst(&p, gi + 3, gg + 3, 1), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_put_burst(&p, gi, gg, 3), 0);
    CHECK_EQ(pyshm_pool_put_burst(&p, idx + 3, gen + 3, 5), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 8);
    pyshm_region_close(&r);
}

/* A burst of zero is not corruption. */
static void test_bursts_of_zero(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 16, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q), 0);
    uint64_t idx[1], gen[1];
    struct pyshm_taken_block t[1];
    CHECK_EQ(pyshm_pool_put_burst(&p, idx, gen, 0), 0);
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&q, NULL, 0), 0);
    int64_t rc = pyshm_pool_get_burst(&p, idx, gen, 0);
    if (rc != 0 && rc != -EINVAL)
        tc_fail(__FILE__, __LINE__, "pool_get_burst(max 0) gave %" PRId64, rc);
    rc = pyshm_block_ring_dequeue_burst(&q, &r, t, 0);
    if (rc != 0 && rc != -EINVAL && rc != -PYSHM_EEMPTY)
        tc_fail(__FILE__, __LINE__, "block_ring_dequeue_burst(max 0) on an empty ring gave %" PRId64, rc);
    pyshm_region_close(&r);
}

/* ------------------------------------------------------------------------------------ */
/* block ring bursts                                                                     */

static void test_block_ring_bursts(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 18) == 0);
    struct pyshm_pool a, b;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 100, 16, 0, NULL, &a), 0);
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 200, 0, NULL, &b), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 128, 0, NULL, &q), 0);
    struct pyshm_held_block h[100];
    struct pyshm_taken_block t[100];
    for (int i = 0; i < 3; i++) {
        h[i].pool = i == 1 ? &b : &a;
        REQUIRE_EQ(pyshm_pool_get(h[i].pool, &h[i].index, &h[i].gen), 0);
    }
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&q, h, 3), 0);
    for (int i = 0; i < 3; i++)
        CHECK(tc_state(h[i].pool, h[i].index) == pyshm_block_state(h[i].gen + 1, PYSHM_BLOCK_IN_RING));
    /* Again, from the stale generations: refused. */
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&q, h, 3), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_count(&q), 3);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t, 100), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(t[i].pool->offset, h[i].pool->offset);
        CHECK_EQ(t[i].index, h[i].index);
        CHECK_EQ(t[i].gen, h[i].gen + 2);
        h[i].gen = t[i].gen;
    }
    /* One stale block among held ones: none queued, the others held at h[].gen. */
    uint64_t good_gen = h[1].gen;
    h[1].gen -= 2;
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&q, h, 3), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    h[1].gen = good_gen;
    for (int i = 0; i < 3; i++)
        CHECK(tc_state(h[i].pool, h[i].index) == pyshm_block_state(h[i].gen, PYSHM_BLOCK_HELD));
    for (int i = 0; i < 3; i++)
        CHECK_EQ(pyshm_pool_put(h[i].pool, h[i].index, &h[i].gen), 0);

    /* 100 blocks at once (more than the on-stack batch of 64), both ways. */
    for (int i = 0; i < 100; i++) {
        h[i].pool = &a;
        REQUIRE_EQ(pyshm_pool_get(&a, &h[i].index, &h[i].gen), 0);
    }
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&q, h, 100), 0);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t, 100), 100);
    for (int i = 0; i < 100; i++) {
        CHECK_EQ(t[i].index, h[i].index);
        h[i].gen = t[i].gen;
    }
    /* A burst larger than the room left: refused whole, every block still held. */
    struct pyshm_block_ring small;
    REQUIRE_EQ(pyshm_block_ring_create(&r, 8, 0, NULL, &small), 0);
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&small, h, 5), 0);
    uint64_t before[4];
    for (int i = 0; i < 4; i++)
        before[i] = h[5 + i].gen;
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&small, h + 5, 4), -PYSHM_EFULL);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(h[5 + i].gen, before[i] + 2);
        CHECK(tc_state(&a, h[5 + i].index) == pyshm_block_state(h[5 + i].gen, PYSHM_BLOCK_HELD));
    }
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&small, h + 5, 9), -PYSHM_EFULL); /* more than the capacity */
    CHECK_EQ(pyshm_block_ring_count(&small), 5);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&small, &r, t, 8), 5);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(t[i].index, h[i].index);
        h[i].gen = t[i].gen;
    }
    for (int i = 0; i < 100; i++)
        CHECK_EQ(pyshm_pool_put(&a, h[i].index, &h[i].gen), 0);

    /* Garbage entries among valid ones are dropped, the valid ones delivered. */
    uint64_t x, gx, y, gy;
    REQUIRE_EQ(pyshm_pool_get(&a, &x, &gx), 0);
    REQUIRE_EQ(pyshm_pool_get(&b, &y, &gy), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &a, x, &gx), 0);
    REQUIRE(tc_inject(&q.ring, a.data_offset + 3) == 0);
    REQUIRE(tc_inject(&q.ring, 0) == 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &b, y, &gy), 0);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t, 10), 2);
    CHECK(t[0].index == x && t[0].pool->offset == a.offset && t[1].index == y && t[1].pool->offset == b.offset);
    REQUIRE(tc_inject(&q.ring, 12345) == 0);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t + 2, 10), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t + 2, 10), -PYSHM_EEMPTY);
    CHECK_EQ(pyshm_pool_put(t[0].pool, t[0].index, &t[0].gen), 0);
    CHECK_EQ(pyshm_pool_put(t[1].pool, t[1].index, &t[1].gen), 0);
    CHECK_EQ(pyshm_pool_free_count(&a), 100);
    CHECK_EQ(pyshm_pool_free_count(&b), 4);
    pyshm_region_close(&r);
}

/*
 * A burst taken by a handle that meets a pool it did not know: looking it up grows the
 * handle's pool table (realloc), and the pool pointers already written into out[] for
 * earlier entries of the same burst must still point into the table. (Checked by
 * address only: dereferencing a stale one is a use-after-free.)
 */
static void test_dequeue_burst_pool_pointers(void)
{
    struct pyshm_region r, v;
    REQUIRE(tc_region(&r, 1 << 18) == 0);
    struct pyshm_pool p[5];
    struct pyshm_block_ring q;
    for (int i = 0; i < 4; i++)
        REQUIRE_EQ(pyshm_pool_create(&r, 2, 64, 0, NULL, &p[i]), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 8, 0, NULL, &q), 0);
    REQUIRE(tc_view_open(&r, &v) == 0);
    struct pyshm_block_ring vq;
    REQUIRE_EQ(pyshm_block_ring_attach(&v, q.offset, &vq), 0);
    /* The view learns pools 0..3: its table is full at its first capacity. */
    const struct pyshm_pool *found;
    uint64_t index;
    REQUIRE_EQ(pyshm_region_find_block(&v, pyshm_pool_block_offset(&p[0], 0), &found, &index), 0);
    REQUIRE_EQ(v.pool_count, 4);
    REQUIRE_EQ(v.pool_capacity, 4);
    /* A fifth pool appears. */
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 64, 0, NULL, &p[4]), 0);
    uint64_t i0, g0, i4, g4;
    REQUIRE_EQ(pyshm_pool_get(&p[0], &i0, &g0), 0);
    REQUIRE_EQ(pyshm_pool_get(&p[4], &i4, &g4), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p[0], i0, &g0), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p[4], i4, &g4), 0);
    struct pyshm_taken_block t[2];
    REQUIRE_EQ(pyshm_block_ring_dequeue_burst(&vq, &v, t, 2), 2);
    int valid = 1;
    for (int i = 0; i < 2; i++) {
        int known = 0;
        for (size_t k = 0; k < v.pool_count; k++)
            known |= t[i].pool == v.pools[k];
        if (!known) {
            tc_fail(__FILE__, __LINE__, "out[%d].pool is not one of the handle's pools", i);
            valid = 0;
        }
    }
    if (valid) {
        CHECK_EQ(pyshm_pool_put(t[0].pool, t[0].index, &t[0].gen), 0);
        CHECK_EQ(pyshm_pool_put(t[1].pool, t[1].index, &t[1].gen), 0);
    }
    tc_view_close(&r, &v);
    pyshm_region_close(&r);
}

/* The same for drain, which puts each block back through the pointer it got: a handle
 * that meets five new pools while draining must grow its table safely (ASan checks). */
static void test_drain_meets_new_pools(void)
{
    struct pyshm_region r, v;
    REQUIRE(tc_region(&r, 1 << 18) == 0);
    struct pyshm_pool p[9];
    struct pyshm_block_ring q;
    for (int i = 0; i < 4; i++)
        REQUIRE_EQ(pyshm_pool_create(&r, 2, 32, 0, NULL, &p[i]), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 16, 0, NULL, &q), 0);
    REQUIRE(tc_view_open(&r, &v) == 0);
    struct pyshm_block_ring vq;
    REQUIRE_EQ(pyshm_block_ring_attach(&v, q.offset, &vq), 0);
    const struct pyshm_pool *found;
    uint64_t index, gen;
    REQUIRE_EQ(pyshm_region_find_block(&v, pyshm_pool_block_offset(&p[0], 0), &found, &index), 0);
    REQUIRE_EQ(v.pool_count, 4);
    for (int i = 4; i < 9; i++)
        REQUIRE_EQ(pyshm_pool_create(&r, 2, 32, 0, NULL, &p[i]), 0);
    for (int i = 0; i < 9; i++) {
        REQUIRE_EQ(pyshm_pool_get(&p[i], &index, &gen), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p[i], index, &gen), 0);
    }
    CHECK_EQ(pyshm_block_ring_drain(&vq, &v), 9);
    CHECK_EQ(v.pool_count, 9);
    for (int i = 0; i < 9; i++)
        CHECK_EQ(pyshm_pool_free_count(&p[i]), 2);
    tc_view_close(&r, &v);
    pyshm_region_close(&r);
}

/* ------------------------------------------------------------------------------------ */
/* shutdown and drain                                                                    */

static void test_shutdown_and_drain(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 32, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q), 0);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q), PYSHM_RING_OPEN);
    uint64_t idx[4], gen[4];
    for (int i = 0; i < 4; i++)
        REQUIRE_EQ(pyshm_pool_get(&p, &idx[i], &gen[i]), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, idx[0], &gen[0]), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, idx[1], &gen[1]), 0);

    /* Graceful: no more enqueues (the block stays held, same generation); what is in
     * the ring still comes out, then dequeue reports the shutdown, not "empty". */
    pyshm_block_ring_shutdown(&q, 0);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q), PYSHM_RING_SHUTDOWN);
    uint64_t g = gen[2];
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, idx[2], &g), -ESHUTDOWN);
    CHECK_EQ(g, gen[2]);
    CHECK(tc_state(&p, idx[2]) == pyshm_block_state(gen[2], PYSHM_BLOCK_HELD));
    struct pyshm_held_block hb = {&p, idx[2], gen[2]};
    CHECK_EQ(pyshm_block_ring_enqueue_burst(&q, &hb, 1), -ESHUTDOWN);
    struct pyshm_taken_block t[4];
    CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t[0]), 0);
    CHECK_EQ(t[0].index, idx[0]);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t + 1, 4), 1);
    CHECK_EQ(t[1].index, idx[1]);
    CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t[2]), -ESHUTDOWN);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q, &r, t + 2, 4), -ESHUTDOWN);
    gen[0] = t[0].gen;
    gen[1] = t[1].gen;
    /* Never back: graceful after graceful stays, immediate wins, graceful after it stays. */
    pyshm_block_ring_shutdown(&q, 0);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q), PYSHM_RING_SHUTDOWN);
    pyshm_block_ring_shutdown(&q, 1);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q), PYSHM_RING_SHUTDOWN_NOW);
    pyshm_block_ring_shutdown(&q, 0);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q), PYSHM_RING_SHUTDOWN_NOW);
    atomic_store(q.shutdown, 77); /* garbage reads as the strongest state */
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q), PYSHM_RING_SHUTDOWN_NOW);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pyshm_pool_put(&p, idx[i], &gen[i]), 0);

    /* Immediate with entries in the ring: dequeue refuses at once, drain returns them
     * to their pools, garbage entries are dropped on the way. */
    struct pyshm_block_ring q2;
    REQUIRE_EQ(pyshm_block_ring_create(&r, 8, 0, NULL, &q2), 0);
    for (int i = 0; i < 3; i++) {
        REQUIRE_EQ(pyshm_pool_get(&p, &idx[i], &gen[i]), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q2, &p, idx[i], &gen[i]), 0);
        if (i == 1)
            REQUIRE(tc_inject(&q2.ring, 7) == 0);
    }
    pyshm_block_ring_shutdown(&q2, 1);
    CHECK_EQ(pyshm_block_ring_dequeue(&q2, &r, 0, &t[0]), -ESHUTDOWN);
    CHECK_EQ(pyshm_block_ring_dequeue_burst(&q2, &r, t, 4), -ESHUTDOWN);
    CHECK_EQ(pyshm_block_ring_count(&q2), 4);
    CHECK_EQ(pyshm_block_ring_drain(&q2, &r), 3);
    CHECK_EQ(pyshm_block_ring_count(&q2), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    for (int i = 0; i < 4; i++)
        CHECK(pyshm_block_kind_of(tc_state(&p, (uint64_t)i)) == PYSHM_BLOCK_FREE);
    CHECK_EQ(pyshm_block_ring_drain(&q2, &r), 0);

    /* Drain of an open ring, full, across the wrap. */
    struct pyshm_block_ring q3;
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q3), 0);
    pyshm_ring_init(&q3.ring, UINT64_MAX - 1);
    for (int i = 0; i < 4; i++) {
        REQUIRE_EQ(pyshm_pool_get(&p, &idx[i], &gen[i]), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q3, &p, idx[i], &gen[i]), 0);
    }
    CHECK_EQ(pyshm_block_ring_drain(&q3, &r), 4);
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&q3), PYSHM_RING_OPEN);
    pyshm_region_close(&r);
}

/* ------------------------------------------------------------------------------------ */
/* names                                                                                 */

static void test_names(void)
{
    struct pyshm_region r, v;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    char longest[PYSHM_NAME_MAX + 1], too_long[PYSHM_NAME_MAX + 2];
    memset(longest, 'n', PYSHM_NAME_MAX);
    longest[PYSHM_NAME_MAX] = 0;
    memset(too_long, 'n', PYSHM_NAME_MAX + 1);
    too_long[PYSHM_NAME_MAX + 1] = 0;
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 8, 0, "alpha", &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 2, 0, "beta", &q), 0);
    CHECK_EQ(pyshm_pool_create(&r, 2, 8, 0, NULL, &(struct pyshm_pool){0}), 0);
    CHECK_EQ(pyshm_pool_create(&r, 2, 8, 0, "", &(struct pyshm_pool){0}), 0);
    CHECK_EQ(pyshm_pool_create(&r, 2, 8, 0, "beta", &(struct pyshm_pool){0}), -EEXIST);
    CHECK_EQ(pyshm_block_ring_create(&r, 2, 0, "alpha", &(struct pyshm_block_ring){0}), -EEXIST);
    CHECK_EQ(pyshm_pool_create(&r, 2, 8, 0, too_long, &(struct pyshm_pool){0}), -EINVAL);
    CHECK_EQ(pyshm_block_ring_create(&r, 2, 0, too_long, &(struct pyshm_block_ring){0}), -EINVAL);
    struct pyshm_pool lp;
    CHECK_EQ(pyshm_pool_create(&r, 2, 8, 0, longest, &lp), 0);
    REQUIRE(tc_view_open(&r, &v) == 0); /* another process looks them up */
    uint32_t kind = 0;
    uint64_t off = 0;
    CHECK_EQ(pyshm_region_find_named(&v, "alpha", &kind, &off), 0);
    CHECK(kind == PYSHM_KIND_POOL && off == p.offset);
    CHECK_EQ(pyshm_region_find_named(&v, "beta", &kind, &off), 0);
    CHECK(kind == PYSHM_KIND_RING && off == q.offset);
    CHECK_EQ(pyshm_region_find_named(&v, longest, &kind, &off), 0);
    CHECK(off == lp.offset);
    CHECK_EQ(pyshm_region_find_named(&v, "alph", &kind, &off), -ENOENT);
    CHECK_EQ(pyshm_region_find_named(&v, "alphabet", &kind, &off), -ENOENT);
    CHECK_EQ(pyshm_region_find_named(&v, too_long, &kind, &off), -ENOENT);
    struct pyshm_pool vp;
    CHECK_EQ(pyshm_pool_attach(&v, p.offset, &vp), 0);
    /* A name without its terminating zero (written by a faulty process) is not read past. */
    struct pyshm_object_header *h = (struct pyshm_object_header *)(r.base + lp.offset);
    h->name[PYSHM_NAME_MAX] = 'x';
    CHECK_EQ(pyshm_region_find_named(&v, longest, &kind, &off), -ENOENT);
    tc_view_close(&r, &v);
    pyshm_region_close(&r);
}

/* ------------------------------------------------------------------------------------ */
/* attach by file descriptor                                                             */

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static void test_region_attach_fd(void)
{
    struct pyshm_region r, a;
    REQUIRE(tc_region(&r, 100000) == 0);
    if (r.fd < 0) {
        printf("      (no memfd on this system: attach_fd not tested)\n");
        pyshm_region_close(&r);
        return;
    }
    struct pyshm_pool p, ap;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 64, 0, "pool", &p), 0);
    int fd = dup(r.fd);
    REQUIRE(fd >= 0);
    REQUIRE_EQ(pyshm_region_attach_fd(&a, fd), 0);
    CHECK_EQ(a.size, r.size);
    CHECK(a.base != r.base);
    uint32_t kind;
    uint64_t off;
    CHECK_EQ(pyshm_region_find_named(&a, "pool", &kind, &off), 0);
    CHECK_EQ(off, p.offset);
    CHECK_EQ(pyshm_pool_attach(&a, off, &ap), 0);
    uint64_t index, gen;
    REQUIRE_EQ(pyshm_pool_get(&p, &index, &gen), 0);
    memset(tc_block(&p, index), 0x5a, 64);
    CHECK(tc_block(&ap, index)[63] == 0x5a);
    CHECK_EQ(pyshm_pool_put(&ap, index, &gen), 0); /* through the other mapping */
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    pyshm_region_close(&a);

    /* Mangled region headers; the fd is taken (closed) on failure too. */
    struct pyshm_region_header *h = (struct pyshm_region_header *)r.base;
    struct pyshm_region_header saved = *h;
    struct {
        const char *what;
        int expect;
    } cases[] = {
        {"magic", -PYSHM_ENOTREGION}, {"version", -PYSHM_EVERSION}, {"header_size", -PYSHM_ECORRUPT},
        {"size 0", -PYSHM_ECORRUPT},  {"size > file", -PYSHM_ECORRUPT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        *h = saved;
        switch (i) {
        case 0: h->magic ^= 1; break;
        case 1: h->layout_version++; break;
        case 2: h->header_size = 128; break;
        case 3: h->size = 0; break;
        default: h->size = r.map_size + 1; break;
        }
        fd = dup(r.fd);
        REQUIRE(fd >= 0);
        int rc = pyshm_region_attach_fd(&a, fd);
        if (rc != cases[i].expect)
            tc_fail(__FILE__, __LINE__, "attach_fd with bad %s gave %d, expected %d", cases[i].what, rc, cases[i].expect);
        CHECK(!fd_is_open(fd));
        if (rc == 0)
            pyshm_region_close(&a);
    }
    *h = saved;
    /* A file too small to hold a header. */
    fd = memfd_create("pyshm-test", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 10) == 0);
    CHECK_EQ(pyshm_region_attach_fd(&a, fd), -PYSHM_ENOTREGION);
    CHECK(!fd_is_open(fd));
    pyshm_region_close(&r);
}

/*
 * A region smaller than one object header, whose object list head a faulty process set
 * to a far offset: the walk must refuse it rather than read it. Run in a child, since
 * the failure mode is a crash.
 */
static void test_tiny_region_walk(void)
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2); /* a crash report here is the expected failure, not noise */
        struct pyshm_region r;
        if (pyshm_region_create(&r, 100) != 0)
            _exit(2);
        struct pyshm_region_header *h = (struct pyshm_region_header *)r.base;
        atomic_store(&h->objects_head, UINT64_C(1) << 40);
        const struct pyshm_pool *p;
        uint64_t index, off;
        uint32_t kind;
        int a = pyshm_region_find_block(&r, 64, &p, &index);
        int b = pyshm_region_find_named(&r, "x", &kind, &off);
        _exit(a == -PYSHM_ECORRUPT && b == -PYSHM_ECORRUPT ? 0 : 1);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        tc_fail(__FILE__, __LINE__, "walking a 100-byte region's bad list: child %s %d",
                WIFSIGNALED(status) ? "killed by signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status)
                                                                                             : WEXITSTATUS(status));
}

const struct tc_test tc_burst_tests[] = {
    {"ring_bursts", test_ring_bursts, 0, NULL},
    {"pool_bursts", test_pool_bursts, 0, NULL},
    {"bursts_of_zero", test_bursts_of_zero, 0, NULL},
    {"block_ring_bursts", test_block_ring_bursts, 0, NULL},
    {"block_ring_dequeue_burst_pool_pointers", test_dequeue_burst_pool_pointers, 0, NULL},
    {"block_ring_drain_meets_new_pools", test_drain_meets_new_pools, 0, NULL},
    {"block_ring_shutdown_and_drain", test_shutdown_and_drain, 0, NULL},
    {"object_names", test_names, 0, NULL},
    {"region_attach_fd", test_region_attach_fd, 0, NULL},
    {"tiny_region_bad_object_list", test_tiny_region_walk, TC_FORK, NULL},
};
const size_t tc_burst_test_count = sizeof(tc_burst_tests) / sizeof(tc_burst_tests[0]);
