/*
 * test_ring.c - ring.h alone, single-threaded: the relative encoding that makes zero-filled
 * memory an empty ring (or, start_full, a full one), the five phases of a slot and the
 * repair steps between them, FIFO order against a model (singles and all-or-none bursts),
 * full/empty flips at capacity 1, counters across 2^64, the claim's hook, and sequence
 * words no correct process writes.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

/* ------------------------------------------------------------------------------------ */
/* zero is the initial state                                                             */

static void test_zero_is_empty(void)
{
    static const uint64_t caps[] = {1, 2, 3, 8, 100};
    for (size_t c = 0; c < TC_COUNT(caps); c++) {
        uint64_t cap = caps[c];
        struct pyshm_ring r;
        REQUIRE(tc_raw_ring_alloc(&r, cap, 0) == 0);
        CHECK_EQ(pyshm_ring_count(&r), 0);
        CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_ENQ, memory_order_relaxed), 0);
        CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), 0);
        for (uint64_t i = 0; i < cap; i++) {
            CHECK_EQ(tc_phase(&r, i), PYSHM_RING_EMPTY); /* slot i waits for position i */
            CHECK_EQ(pyshm_ring_distance(&r, i, PYSHM_RING_EMPTY), 0);
        }
        uint64_t v;
        CHECK_EQ(tc_deq(&r, &v), 1);
        for (uint64_t i = 0; i < cap; i++)
            CHECK_EQ(tc_enq(&r, 1000 + i), 0);
        CHECK_EQ(tc_enq(&r, 1), 1);
        CHECK_EQ(pyshm_ring_count(&r), cap);
        for (uint64_t i = 0; i < cap; i++) {
            CHECK_EQ(tc_deq(&r, &v), 0);
            CHECK_EQ(v, 1000 + i);
        }
        CHECK_EQ(tc_deq(&r, &v), 1);
        tc_raw_ring_free(&r);
    }
}

static void test_zero_is_full(void)
{
    static const uint64_t caps[] = {1, 2, 3, 8, 100};
    for (size_t c = 0; c < TC_COUNT(caps); c++) {
        uint64_t cap = caps[c];
        struct pyshm_ring r;
        REQUIRE(tc_raw_ring_alloc(&r, cap, 1) == 0);
        /* Nothing written: the counters and slots are all zero bytes. */
        CHECK_EQ(atomic_load(r.enq_pos), 0);
        CHECK_EQ(pyshm_ring_count(&r), cap);
        CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_ENQ, memory_order_relaxed), cap);
        CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), 0);
        for (uint64_t i = 0; i < cap; i++) {
            CHECK_EQ(tc_phase(&r, i), PYSHM_RING_FULL); /* slot i holds position i, value i */
            CHECK_EQ(pyshm_ring_value(&r, i), i);
        }
        CHECK_EQ(tc_enq(&r, 7), 1);
        uint64_t v;
        for (uint64_t i = 0; i < cap; i++) {
            CHECK_EQ(tc_deq(&r, &v), 0);
            CHECK_EQ(v, i);
        }
        CHECK_EQ(tc_deq(&r, &v), 1);
        CHECK_EQ(pyshm_ring_count(&r), 0);
        /* Back in, in another order: FIFO holds on the second lap. */
        for (uint64_t i = 0; i < cap; i++)
            CHECK_EQ(tc_enq(&r, cap - 1 - i), 0);
        CHECK_EQ(tc_enq(&r, 7), 1);
        for (uint64_t i = 0; i < cap; i++) {
            CHECK_EQ(tc_deq(&r, &v), 0);
            CHECK_EQ(v, cap - 1 - i);
        }
        tc_raw_ring_free(&r);
    }
}

/* ------------------------------------------------------------------------------------ */
/* phases and repair steps                                                               */

static void phases_at(uint64_t cap, int start_full, uint64_t start)
{
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, cap, start_full) == 0);
    tc_ring_place(&r, start, start, NULL); /* empty, next position `start` */
    uint64_t pos = 0, v = 0;

    /* A producer's claim: the counter moves, the slot is untouched (EMPTY, claimed). */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 1, 1, &pos, NULL, NULL), 1);
    CHECK_EQ(pos, start);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_EMPTY);
    CHECK_EQ(pyshm_ring_count(&r), 1);
    CHECK_EQ(tc_deq(&r, &v), 1); /* not visible yet */
    /* Staged: still invisible to consumers; a repairer cannot reserve it for filling. */
    pyshm_ring_stage(&r, pos, 42);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_STAGED);
    CHECK_EQ(tc_deq(&r, &v), 1);
    CHECK_EQ(pyshm_ring_reserve_fill(&r, pos), 0);
    CHECK_EQ(pyshm_ring_reserve_drain(&r, pos), 0);
    CHECK_EQ(pyshm_ring_value(&r, pos), 42);
    /* A repairer completes it (as if the producer died after staging). */
    CHECK_EQ(pyshm_ring_complete(&r, pos), 1);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_FULL);
    CHECK_EQ(pyshm_ring_complete(&r, pos), 0); /* only once */
    CHECK_EQ(pyshm_ring_reserve_fill(&r, pos), 0);
    /* A consumer's claim: counter moves, slot still FULL until released. */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_DEQ, 1, 1, &pos, NULL, NULL), 1);
    CHECK_EQ(pos, start);
    CHECK_EQ(pyshm_ring_value(&r, pos), 42);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_FULL);
    /* The consumer dies: a repairer reserves the slot (twice is fine), then releases it. */
    CHECK_EQ(pyshm_ring_reserve_drain(&r, pos), 1);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_DRAINING);
    CHECK_EQ(pyshm_ring_reserve_drain(&r, pos), 1);
    CHECK_EQ(pyshm_ring_complete(&r, pos), 0);
    /* The next lap's producer of this slot must wait. */
    if (cap == 1) {
        CHECK_EQ(tc_enq(&r, 9), 1);
    }
    pyshm_ring_drained(&r, pos);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_DRAINING + 1); /* a later lap */
    CHECK_EQ(tc_phase(&r, pos + cap), PYSHM_RING_EMPTY);
    CHECK_EQ(pyshm_ring_count(&r), 0);

    /* A producer that dies before staging: the repairer reserves (FILLING), fills, completes. */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 1, 1, &pos, NULL, NULL), 1);
    CHECK_EQ(pos, start + 1);
    CHECK_EQ(tc_phase(&r, pos + cap), -1); /* the slot is in an earlier lap than pos + cap */
    CHECK_EQ(pyshm_ring_reserve_fill(&r, pos), 1);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_FILLING);
    CHECK_EQ(pyshm_ring_reserve_fill(&r, pos), 1); /* a second repairer after a dead first */
    CHECK_EQ(tc_deq(&r, &v), 1);
    pyshm_ring_fill(&r, pos, UINT64_MAX);
    CHECK_EQ(tc_phase(&r, pos), PYSHM_RING_STAGED);
    CHECK_EQ(pyshm_ring_complete(&r, pos), 1);
    CHECK_EQ(tc_deq(&r, &v), 0);
    CHECK_EQ(v, UINT64_MAX);
    CHECK_EQ(pyshm_ring_reserve_drain(&r, pos), 0); /* released by its consumer */
    CHECK_EQ(pyshm_ring_count(&r), 0);
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_ENQ, memory_order_relaxed), start + 2);
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), start + 2);

    /* Round the ring again with ordinary calls. */
    for (uint64_t lap = 0; lap < 3 * cap; lap++) {
        CHECK_EQ(tc_enq(&r, lap), 0);
        CHECK_EQ(tc_deq(&r, &v), 0);
        CHECK_EQ(v, lap);
    }
    tc_raw_ring_free(&r);
}

static void test_phases(void)
{
    static const uint64_t caps[] = {1, 2, 4, 5};
    for (size_t c = 0; c < TC_COUNT(caps); c++)
        for (int full = 0; full < 2; full++) {
            phases_at(caps[c], full, 0);
            phases_at(caps[c], full, 12345);
            if ((caps[c] & (caps[c] - 1)) == 0) {
                phases_at(caps[c], full, UINT64_MAX); /* the second claim wraps */
                phases_at(caps[c], full, UINT64_MAX - caps[c]);
            }
        }
}

/* The hook before the claiming CAS: sees the claim, can stop it. */
struct hook_log {
    uint64_t pos, n;
    int calls, stop;
};
static int hook(void *ctx, uint64_t pos, uint64_t n)
{
    struct hook_log *h = ctx;
    h->pos = pos;
    h->n = n;
    h->calls++;
    return h->stop;
}

static void test_claim_hook(void)
{
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, 8, 0) == 0);
    uint64_t pos = 0;
    struct hook_log h = {0, 0, 0, 1};
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 2, 5, &pos, hook, &h), 0);
    CHECK(h.calls == 1 && h.pos == 0 && h.n == 5);
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_ENQ, memory_order_relaxed), 0);
    h.stop = 0;
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 2, 5, &pos, hook, &h), 5);
    CHECK(h.calls == 2 && h.pos == 0 && h.n == 5 && pos == 0);
    /* Only 3 slots left: a claim of at least 4 is refused before the hook runs. */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 4, 4, &pos, hook, &h), 0);
    CHECK_EQ(h.calls, 2);
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 1, 8, &pos, hook, &h), 3);
    CHECK(h.n == 3 && pos == 5);
    /* Consumers: nothing is staged, let alone published: nothing is ready. */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_DEQ, 1, 8, &pos, hook, &h), 0);
    CHECK_EQ(h.calls, 3);
    for (uint64_t p = 0; p < 8; p++)
        pyshm_ring_stage(&r, p, 100 + p);
    for (uint64_t p = 0; p < 8; p += 2)
        pyshm_ring_publish(&r, p); /* 0, 2, 4, 6 */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_DEQ, 1, 8, &pos, hook, &h), 1); /* stops at 1 */
    CHECK(h.n == 1 && pos == 0);
    for (uint64_t p = 1; p < 8; p += 2)
        pyshm_ring_publish(&r, p);
    h.stop = 1;
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_DEQ, 1, 8, &pos, hook, &h), 0);
    CHECK(h.pos == 1 && h.n == 7);
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), 1);
    tc_raw_ring_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* FIFO against a model                                                                  */

struct model_cfg {
    uint64_t cap;
    int start_full;
    uint64_t start; /* first position; 0 with start_full: the zero-filled full ring */
    unsigned ops;
    uint64_t seed;
};

static void model_run(const struct model_cfg *cfg)
{
    uint64_t cap = cfg->cap;
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, cap, cfg->start_full) == 0);
    uint64_t *model = calloc(cap, sizeof(uint64_t)), *buf = calloc(cap, sizeof(uint64_t));
    uint64_t *out = calloc(cap, sizeof(uint64_t));
    REQUIRE(model && buf && out);
    uint64_t head = 0, used = 0, next = 1, enqueued = 0;
    if (cfg->start_full) {
        for (uint64_t i = 0; i < cap; i++)
            model[i] = cfg->start ? 500000 + i : i;
        if (cfg->start)
            tc_ring_place(&r, cfg->start, cfg->start + cap, model);
        used = cap;
    } else if (cfg->start) {
        tc_ring_place(&r, cfg->start, cfg->start, NULL);
    }
    uint64_t rng = cfg->seed ^ cap * 7919 ^ cfg->start;
    long bad = 0;
    for (unsigned op = 0; op < cfg->ops && bad < 5; op++) {
        uint64_t x = tc_rand(&rng);
        /* Phases of mostly-enqueue and mostly-dequeue so full and empty are both hit, at
         * every slot index, many times. */
        int enq_phase = (op / (2 * cap + 3)) & 1;
        int want_enq = enq_phase ? x % 8 < 6 : x % 8 < 2;
        int burst = (x >> 8) % 3 == 0;
        uint64_t n = burst ? 1 + (x >> 12) % cap : 1;
        if (want_enq) {
            for (uint64_t i = 0; i < n; i++)
                buf[i] = next + i;
            int64_t rc = burst ? tc_enq_burst(&r, buf, n) : tc_enq(&r, buf[0]);
            int64_t want = used + n > cap ? 1 : 0;
            if (rc != want) {
                bad++;
                tc_fail(__FILE__, __LINE__, "cap %" PRIu64 " start %" PRIu64 ": enqueue of %" PRIu64 " with %" PRIu64
                        " used gave %" PRId64, cap, cfg->start, n, used, rc);
            } else if (rc == 0) {
                for (uint64_t i = 0; i < n; i++)
                    model[(head + used++) % cap] = next++;
                enqueued += n;
            }
        } else {
            int64_t got = burst ? tc_deq_burst(&r, out, n) : (tc_deq(&r, out) == 0 ? 1 : 0);
            int64_t want = (int64_t)(used < n ? used : n);
            if (got != want) {
                bad++;
                tc_fail(__FILE__, __LINE__, "cap %" PRIu64 " start %" PRIu64 ": dequeue of up to %" PRIu64
                        " with %" PRIu64 " used gave %" PRId64, cap, cfg->start, n, used, got);
            }
            for (int64_t i = 0; i < got && i < want; i++) {
                if (out[i] != model[head % cap]) {
                    bad++;
                    tc_fail(__FILE__, __LINE__, "cap %" PRIu64 ": dequeued %" PRIu64 ", expected %" PRIu64, cap, out[i],
                            model[head % cap]);
                }
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
    uint64_t first_enq = cfg->start + (cfg->start_full ? cap : 0);
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), cfg->start + head);
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_ENQ, memory_order_relaxed), first_enq + enqueued);
    free(model);
    free(buf);
    free(out);
    tc_raw_ring_free(&r);
}

static void test_model_fifo(void)
{
    static const uint64_t caps[] = {1, 2, 3, 4, 5, 7, 8, 64};
    for (size_t c = 0; c < TC_COUNT(caps); c++)
        for (int full = 0; full < 2; full++)
            for (uint64_t start = 0; start < 3; start++)
                model_run(&(struct model_cfg){caps[c], full, start * 1000 + (start ? caps[c] / 2 : 0), 3000, 17});
}

/* Power-of-two capacities keep pos % capacity continuous across 2^64 (ring.h): start
 * just below it, empty or full, and run through the wrap. */
static void test_counter_wrap(void)
{
    static const uint64_t caps[] = {1, 2, 4, 8, 16, 1024};
    for (size_t c = 0; c < TC_COUNT(caps); c++) {
        uint64_t cap = caps[c];
        const uint64_t starts[] = {UINT64_MAX, UINT64_MAX - 5, UINT64_MAX - cap + 1, UINT64_MAX - 3 * cap,
                                   (UINT64_C(1) << 63) - 3};
        for (size_t s = 0; s < TC_COUNT(starts); s++)
            for (int full = 0; full < 2; full++)
                model_run(&(struct model_cfg){cap, full, starts[s], (unsigned)(12 * cap + 200), 99});
    }
    /* And plainly: fill across the wrap, check full, drain, check empty. */
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, 8, 0) == 0);
    tc_ring_place(&r, UINT64_MAX - 5, UINT64_MAX - 5, NULL);
    for (uint64_t i = 0; i < 8; i++)
        CHECK_EQ(tc_enq(&r, 100 + i), 0);
    CHECK_EQ(tc_enq(&r, 999), 1);
    CHECK_EQ(pyshm_ring_count(&r), 8);
    CHECK_EQ(atomic_load(r.enq_pos), 2); /* wrapped */
    for (uint64_t i = 0; i < 8; i++) {
        uint64_t v = 0;
        CHECK_EQ(tc_deq(&r, &v), 0);
        CHECK_EQ(v, 100 + i);
    }
    uint64_t v;
    CHECK_EQ(tc_deq(&r, &v), 1);
    CHECK_EQ(pyshm_ring_count(&r), 0);
    tc_raw_ring_free(&r);
    /* A ring that starts full (a free queue), placed so its enq counter is stored across
     * the wrap from its deq counter: the stored enq counter is 2^64 - 8 + 3. */
    REQUIRE(tc_raw_ring_alloc(&r, 8, 1) == 0);
    uint64_t vals[8];
    for (int i = 0; i < 8; i++)
        vals[i] = 7 - (uint64_t)i;
    tc_ring_place(&r, UINT64_MAX - 4, UINT64_MAX + 4 /* = 3 */, vals);
    CHECK_EQ(pyshm_ring_count(&r), 8);
    CHECK_EQ(tc_enq(&r, 1), 1);
    for (uint64_t i = 0; i < 8; i++) {
        CHECK_EQ(tc_deq(&r, &v), 0);
        CHECK_EQ(v, 7 - i);
        CHECK_EQ(tc_enq(&r, 20 + i), 0);
    }
    for (uint64_t i = 0; i < 8; i++) {
        CHECK_EQ(tc_deq(&r, &v), 0);
        CHECK_EQ(v, 20 + i);
    }
    CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), 11);
    tc_raw_ring_free(&r);
}

/* Capacity 1: one entry fits, a second is refused, flipping full/empty, across the wrap. */
static void test_capacity_1(void)
{
    const uint64_t starts[] = {0, 7, UINT64_MAX - 2, UINT64_MAX};
    for (int full = 0; full < 2; full++)
        for (size_t s = 0; s < TC_COUNT(starts); s++) {
            struct pyshm_ring r;
            REQUIRE(tc_raw_ring_alloc(&r, 1, full) == 0);
            uint64_t v = 0, seed = 55;
            if (full) {
                seed = starts[s] ? 55 : 0;
                tc_ring_place(&r, starts[s], starts[s] + 1, &seed);
                CHECK_EQ(tc_enq(&r, 1), 1);
                CHECK_EQ(tc_deq(&r, &v), 0);
                CHECK_EQ(v, seed);
            } else if (starts[s]) {
                tc_ring_place(&r, starts[s], starts[s], NULL);
            }
            for (uint64_t round = 0; round < 6; round++) {
                CHECK_EQ(pyshm_ring_count(&r), 0);
                CHECK_EQ(tc_deq(&r, &v), 1);
                CHECK_EQ(tc_deq_burst(&r, &v, 1), 0);
                CHECK_EQ(tc_enq(&r, 10 + round), 0);
                CHECK_EQ(pyshm_ring_count(&r), 1);
                CHECK_EQ(tc_enq(&r, 99), 1);
                CHECK_EQ(tc_enq_burst(&r, &v, 1), 1);
                CHECK_EQ(tc_deq(&r, &v), 0);
                CHECK_EQ(v, 10 + round);
            }
            uint64_t first = full ? starts[s] + 1 : starts[s];
            CHECK_EQ(pyshm_ring_head(&r, PYSHM_RING_DEQ, memory_order_relaxed), first + 6);
            tc_raw_ring_free(&r);
        }
}

/* ------------------------------------------------------------------------------------ */
/* bursts                                                                                */

static void test_bursts(void)
{
    struct pyshm_ring r;
    REQUIRE(tc_raw_ring_alloc(&r, 8, 0) == 0);
    tc_ring_place(&r, UINT64_MAX - 9, UINT64_MAX - 9, NULL);
    uint64_t in[16], out[16];
    for (int i = 0; i < 16; i++)
        in[i] = 100 + (uint64_t)i;
    CHECK_EQ(tc_deq_burst(&r, out, 4), 0);
    CHECK_EQ(tc_enq_burst(&r, in, 5), 0);
    CHECK_EQ(tc_enq_burst(&r, in + 5, 4), 1); /* all or none */
    CHECK_EQ(pyshm_ring_count(&r), 5);
    CHECK_EQ(tc_enq_burst(&r, in + 5, 3), 0);
    CHECK_EQ(tc_enq(&r, 1), 1);
    CHECK_EQ(tc_deq_burst(&r, out, 3), 3);
    CHECK(out[0] == 100 && out[1] == 101 && out[2] == 102);
    CHECK_EQ(tc_enq_burst(&r, in + 8, 3), 0); /* across the 2^64 wrap */
    CHECK_EQ(tc_deq_burst(&r, out, 8), 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(out[i], 103 + i);
    CHECK_EQ(tc_deq_burst(&r, out, 8), 0);

    /* A burst dequeue takes the ready run at the head and stops at the first slot not
     * published; a burst enqueue needs every slot of the claim ready. */
    tc_ring_place(&r, 0, 0, NULL);
    uint64_t pos = 0;
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 4, 4, &pos, NULL, NULL), 4);
    for (uint64_t i = 0; i < 4; i++)
        pyshm_ring_stage(&r, pos + i, 10 + i);
    pyshm_ring_publish(&r, 0);
    pyshm_ring_publish(&r, 1);
    pyshm_ring_publish(&r, 3); /* 2 still staged */
    CHECK_EQ(tc_deq_burst(&r, out, 8), 2);
    CHECK(out[0] == 10 && out[1] == 11);
    CHECK_EQ(tc_deq_burst(&r, out, 8), 0);
    pyshm_ring_publish(&r, 2);
    CHECK_EQ(tc_deq_burst(&r, out, 8), 2);
    CHECK(out[0] == 12 && out[1] == 13);
    /* A consumer that claimed position 4 and has not released it holds back the producer
     * of position 12 only. */
    CHECK_EQ(tc_enq_burst(&r, in, 8), 0); /* positions 4..11 */
    CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_DEQ, 1, 1, &pos, NULL, NULL), 1);
    CHECK_EQ(pos, 4);
    CHECK_EQ(tc_deq_burst(&r, out, 7), 7);
    CHECK_EQ(tc_enq_burst(&r, in, 2), 1); /* needs slot 4 (unreleased) */
    CHECK_EQ(pyshm_ring_count(&r), 0);
    pyshm_ring_release(&r, 4);
    CHECK_EQ(tc_enq_burst(&r, in, 8), 0);
    CHECK_EQ(tc_deq_burst(&r, out, 8), 8);
    tc_raw_ring_free(&r);
}

/* ------------------------------------------------------------------------------------ */
/* a look ahead                                                                          */

/* pyshm_ring_ready_at(side, k): whether the k-th position from that side's head is ready,
 * against the count, for an empty-start and a full-start ring, across the 2^64 wrap, with
 * a staged (not yet published) slot in the way, and without writing anything. */
static void test_ready_at(void)
{
    for (int full = 0; full < 2; full++) {
        struct pyshm_ring r;
        REQUIRE(tc_raw_ring_alloc(&r, 8, full) == 0);
        for (int wrap = 0; wrap < 2; wrap++) {
            if (wrap)
                tc_ring_place(&r, UINT64_MAX - 3, UINT64_MAX - 3, NULL);
            uint64_t v;
            while (tc_deq(&r, &v) == 0)
                ;
            for (uint64_t n = 0; n <= 8; n++) {
                for (uint64_t k = 1; k <= 8; k++) {
                    CHECK_EQ(pyshm_ring_ready_at(&r, PYSHM_RING_DEQ, k), k <= n);
                    CHECK_EQ(pyshm_ring_ready_at(&r, PYSHM_RING_ENQ, k), k <= 8 - n);
                }
                if (n < 8)
                    CHECK_EQ(tc_enq(&r, 100 + n), 0);
            }
            /* Looking changes nothing: the values come out in order. */
            for (uint64_t n = 0; n < 8; n++) {
                CHECK_EQ(tc_deq(&r, &v), 0);
                CHECK_EQ(v, 100 + n);
            }
            /* A claimed and staged position is not ready for consumers; a look at a later
             * one sees that one alone (a claim would stop at the first). */
            uint64_t pos = 0;
            CHECK_EQ(tc_enq(&r, 1), 0);
            CHECK_EQ(pyshm_ring_claim(&r, PYSHM_RING_ENQ, 1, 1, &pos, NULL, NULL), 1);
            pyshm_ring_stage(&r, pos, 2);
            CHECK_EQ(tc_enq(&r, 3), 0);
            CHECK_EQ(pyshm_ring_ready_at(&r, PYSHM_RING_DEQ, 1), 1);
            CHECK_EQ(pyshm_ring_ready_at(&r, PYSHM_RING_DEQ, 2), 0);
            CHECK_EQ(pyshm_ring_ready_at(&r, PYSHM_RING_DEQ, 3), 1);
            pyshm_ring_publish(&r, pos);
            CHECK_EQ(pyshm_ring_ready_at(&r, PYSHM_RING_DEQ, 2), 1);
            for (uint64_t want = 1; want <= 3; want++) {
                CHECK_EQ(tc_deq(&r, &v), 0);
                CHECK_EQ(v, want);
            }
        }
        tc_raw_ring_free(&r);
    }
}

/* ------------------------------------------------------------------------------------ */
/* garbage                                                                               */

/* A sequence word no correct process writes: far ahead makes a claim give up
 * (PYSHM_RING_CORRUPT after its retry budget), behind reads as not ready. */
static void test_garbage_seq(void)
{
    for (int full = 0; full < 2; full++) {
        struct pyshm_ring r;
        REQUIRE(tc_raw_ring_alloc(&r, 4, full) == 0);
        tc_ring_place(&r, 0, 0, NULL);
        CHECK_EQ(tc_enq(&r, 7), 0);
        struct pyshm_ring_slot *head = &r.slots[0];
        uint64_t v = 0, good = atomic_load(&head->seq);

        /* Head slot claims to be a lap ahead. */
        atomic_store(&head->seq, good + 8 * 4 * 9);
        CHECK_EQ(tc_deq(&r, &v), PYSHM_RING_CORRUPT);
        /* Far behind: not yet published. */
        atomic_store(&head->seq, good - (UINT64_C(1) << 62));
        CHECK_EQ(tc_deq(&r, &v), 1);
        atomic_store(&head->seq, good); /* put right: the entry flows again */
        CHECK_EQ(tc_deq(&r, &v), 0);
        CHECK_EQ(v, 7);

        /* Tail slot (position 1) ahead: enqueue gives up; far behind: reads as full. */
        struct pyshm_ring_slot *tail = &r.slots[1];
        good = atomic_load(&tail->seq);
        atomic_store(&tail->seq, good + 8 * 3);
        CHECK_EQ(tc_enq(&r, 8), PYSHM_RING_CORRUPT);
        atomic_store(&tail->seq, good - (UINT64_C(1) << 62));
        CHECK_EQ(tc_enq(&r, 8), 1);
        atomic_store(&tail->seq, good);
        CHECK_EQ(tc_enq(&r, 8), 0);
        CHECK_EQ(tc_deq(&r, &v), 0);
        CHECK_EQ(v, 8);

        /* Counters no correct process writes: the count stays within [0, capacity]. */
        atomic_store(r.deq_pos, 1000);
        CHECK_EQ(pyshm_ring_count(&r), 0);
        atomic_store(r.deq_pos, 0);
        atomic_store(r.enq_pos, UINT64_MAX / 4);
        CHECK_EQ(pyshm_ring_count(&r), 4);
        /* A claim at a garbage counter meets slots of other laps: not ready, corrupt, or
         * (sequence words are 8 x position modulo 2^64, so positions 2^61 apart look
         * alike) a slot that reads as ready. Whatever it is, it stays inside the ring. */
        int rc = tc_enq(&r, 9);
        CHECK(rc == 0 || rc == 1 || rc == PYSHM_RING_CORRUPT);
        atomic_store(r.enq_pos, (uint64_t)-(int64_t)pyshm_ring_counter_bias(&r, PYSHM_RING_ENQ) + (UINT64_C(1) << 61));
        rc = tc_enq(&r, 9); /* position 2^61: its sequence word is that of position 0 */
        CHECK(rc == 0 || rc == 1 || rc == PYSHM_RING_CORRUPT);
        CHECK(pyshm_ring_count(&r) <= 4);
        tc_raw_ring_free(&r);
    }
}

const struct tc_test tc_ring_tests[] = {
    {"ring_zero_filled_is_empty", test_zero_is_empty, 0, NULL},
    {"ring_zero_filled_start_full_is_full", test_zero_is_full, 0, NULL},
    {"ring_phases_and_repair_steps", test_phases, 0, NULL},
    {"ring_claim_hook", test_claim_hook, 0, NULL},
    {"ring_model_fifo_singles_and_bursts", test_model_fifo, 0, NULL},
    {"ring_counter_wrap_2^64", test_counter_wrap, 0, NULL},
    {"ring_capacity_1_flips", test_capacity_1, 0, NULL},
    {"ring_bursts", test_bursts, 0, NULL},
    {"ring_ready_at_looks_ahead", test_ready_at, 0, NULL},
    {"ring_garbage_seq", test_garbage_seq, 0, NULL},
};
const size_t tc_ring_test_count = TC_COUNT(tc_ring_tests);
