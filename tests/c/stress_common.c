/*
 * stress_common.c - what the stress tests share: the message a block carries (stamp,
 * checksum, owner word), the seen table, and the consumer loop used by threads and by
 * fork()ed processes alike.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "stress.h"

/* ---- the message a block carries (layout in stress.h) ---- */

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint8_t payload_byte(uint64_t producer, uint64_t seq, uint64_t k)
{
    return (uint8_t)(mix(producer << 40 ^ seq) >> ((k & 7) * 8)) ^ (uint8_t)k;
}

/* FNV-1a over everything but the owner word and the checksum itself. */
static uint64_t checksum(const uint8_t *b, uint64_t elt_size)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (uint64_t k = OFF_PRODUCER; k < elt_size; k++) {
        if (k == OFF_SUM) {
            k += 7;
            continue;
        }
        h = (h ^ b[k]) * 0x100000001b3u;
    }
    return h;
}

void stamp_message(uint8_t *b, uint64_t elt_size, uint64_t producer, uint64_t seq)
{
    wr64(b + OFF_PRODUCER, producer);
    wr64(b + OFF_SEQ, seq);
    for (uint64_t k = OFF_PAYLOAD; k < elt_size; k++)
        b[k] = payload_byte(producer, seq, k);
    wr64(b + OFF_SUM, checksum(b, elt_size));
}

/* 0 if the block holds an intact message of a valid (producer, seq); fills them in. */
int check_message(const uint8_t *b, uint64_t elt_size, uint64_t producers, uint64_t per_producer,
                         uint64_t *producer, uint64_t *seq)
{
    *producer = rd64(b + OFF_PRODUCER);
    *seq = rd64(b + OFF_SEQ);
    if (*producer >= producers || *seq >= per_producer) {
        tc_fail(__FILE__, __LINE__, "block names message (%" PRIu64 ", %" PRIu64 ")", *producer, *seq);
        return -1;
    }
    if (rd64(b + OFF_SUM) != checksum(b, elt_size)) {
        tc_fail(__FILE__, __LINE__, "checksum of message (%" PRIu64 ", %" PRIu64 ")", *producer, *seq);
        return -1;
    }
    for (uint64_t k = OFF_PAYLOAD; k < elt_size; k++)
        if (b[k] != payload_byte(*producer, *seq, k)) {
            tc_fail(__FILE__, __LINE__, "payload byte %" PRIu64 " of (%" PRIu64 ", %" PRIu64 ")", k, *producer, *seq);
            return -1;
        }
    return 0;
}

/* Owner word: written on taking a block, checked before giving it away. */
void own_block(uint8_t *b, uint64_t who) { wr64(b + OFF_OWNER, who); }
int still_owner(const uint8_t *b, uint64_t who, const char *when)
{
    uint64_t now = rd64(b + OFF_OWNER);
    if (now == who)
        return 1;
    tc_fail(__FILE__, __LINE__, "owner %" PRIu64 " lost its block to %" PRIu64 " %s", who, now, when);
    return 0;
}

/* Mark a message delivered: 0, or -1 on a second delivery. */
int mark_seen(atomic_uchar *seen, uint64_t producer, uint64_t seq, uint64_t per_producer)
{
    unsigned old = atomic_fetch_add_explicit(&seen[producer * per_producer + seq], 1, memory_order_relaxed);
    if (old == 0)
        return 0;
    tc_fail(__FILE__, __LINE__, "message (%" PRIu64 ", %" PRIu64 ") delivered %u times", producer, seq, old + 1);
    return -1;
}

/* Every message seen exactly once. */
void check_all_seen(atomic_uchar *seen, uint64_t producers, uint64_t per_producer)
{
    uint64_t missing = 0, extra = 0;
    for (uint64_t i = 0; i < producers * per_producer; i++) {
        unsigned n = atomic_load(&seen[i]);
        if (n == 0 && missing++ < 5)
            tc_fail(__FILE__, __LINE__, "message (%" PRIu64 ", %" PRIu64 ") never delivered", i / per_producer,
                    i % per_producer);
        if (n > 1)
            extra++;
    }
    CHECK_EQ(missing, 0);
    CHECK_EQ(extra, 0);
}

uint64_t next_rand(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return *state >> 33;
}

/* Now and then give the CPU away or dawdle, so that on a machine with few cores the
 * threads interleave at many different points rather than run in long solo stretches. */
void jitter(uint64_t *rng)
{
    uint64_t r = next_rand(rng);
    if (r % 64 == 0)
        tc_yield();
    else if (r % 8 == 0)
        for (uint64_t i = 0; i < r % 256; i++)
            pyshm_cpu_relax();
}

/* Take up to `want` blocks of one pool (waiting while it is empty): how many, or -1. */
int64_t get_blocks(const struct pyshm_pool *pool, int burst, uint64_t want, uint64_t *idx, uint64_t *gen,
                   atomic_int *abort)
{
    for (;;) {
        int64_t n = burst ? pyshm_pool_get_burst(pool, idx, gen, want) : pyshm_pool_get(pool, idx, gen);
        if (n == 0 && !burst)
            return 1;
        if (n > 0)
            return n;
        if (n != -PYSHM_EEMPTY) {
            tc_fail(__FILE__, __LINE__, "pool_get%s gave %" PRId64, burst ? "_burst" : "", n);
            return -1;
        }
        if (atomic_load_explicit(abort, memory_order_relaxed))
            return -1;
        tc_yield();
    }
}

/* Verify a block just taken out of the ring, record its message, wipe it. 0 or -1. */
static int check_taken(struct consumer_ctx *c, const struct pyshm_taken_block *t, uint64_t min_size)
{
    uint8_t *b = tc_block(t->pool, t->index);
    own_block(b, c->me);
    uint64_t p, seq;
    if (t->pool->elt_size < min_size) {
        tc_fail(__FILE__, __LINE__, "asked for %" PRIu64 " bytes, got a block of %" PRIu64, min_size,
                t->pool->elt_size);
        return -1;
    }
    if (check_message(b, t->pool->elt_size, c->producers, c->per, &p, &seq) < 0)
        return -1;
    if (t->pool->offset != c->expected_pool(c->pool_ctx, p, seq)) {
        tc_fail(__FILE__, __LINE__, "message (%" PRIu64 ", %" PRIu64 ") came in the wrong pool", p, seq);
        return -1;
    }
    if (mark_seen(c->seen, p, seq, c->per) < 0)
        return -1;
    if ((int64_t)seq <= c->last[p]) {
        tc_fail(__FILE__, __LINE__, "producer %" PRIu64 ": seq %" PRIu64 " after %" PRId64, p, seq, c->last[p]);
        return -1;
    }
    c->last[p] = (int64_t)seq;
    /* Wipe the message, so a stale second delivery cannot pass as a good one. */
    memset(b + OFF_PRODUCER, 0xee, t->pool->elt_size - OFF_PRODUCER);
    return 0;
}

/* Give blocks back: one put, or one put_burst per pool. 0 or -1. */
static int put_taken(struct consumer_ctx *c, struct pyshm_taken_block *t, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!still_owner(tc_block(t[i].pool, t[i].index), c->me, "before put"))
            return -1;
    for (int64_t i = 0; i < n; i++) {
        if (!t[i].pool)
            continue; /* already put with an earlier entry of its pool */
        uint64_t idx[8], gen[8], k = 0;
        int64_t at[8];
        const struct pyshm_pool *pool = t[i].pool;
        for (int64_t j = i; j < n; j++)
            if (t[j].pool == pool) {
                at[k] = j;
                idx[k] = t[j].index;
                gen[k++] = t[j].gen;
            }
        int rc;
        while ((rc = c->burst ? pyshm_pool_put_burst(pool, idx, gen, k) : pyshm_pool_put(pool, idx[0], &gen[0])) ==
               -EAGAIN) {
            c->eagain++;
            tc_yield();
        }
        if (rc != 0) {
            tc_fail(__FILE__, __LINE__, "pool_put%s gave %d", c->burst ? "_burst" : "", rc);
            return -1;
        }
        for (uint64_t j = 0; j < k; j++)
            t[at[j]].pool = NULL;
    }
    return 0;
}

void consume(struct consumer_ctx *c)
{
    for (int i = 0; i < 8; i++)
        c->last[i] = -1;
    uint64_t rng = c->me;
    for (uint64_t iter = 0; !atomic_load_explicit(c->abort, memory_order_relaxed); iter++) {
        uint64_t min_size = !c->burst && c->picky && iter % 4 == 0 ? c->large_elt : iter % 3;
        int done = c->producers_done(c->done_ctx);
        struct pyshm_taken_block t[8];
        int64_t n = c->burst ? pyshm_block_ring_dequeue_burst(c->ring, c->region, t, 1 + next_rand(&rng) % 8)
                             : pyshm_block_ring_dequeue(c->ring, c->region, c->burst ? 0 : min_size, &t[0]);
        if (n == -PYSHM_EEMPTY) {
            if (done)
                break;
            tc_yield();
            continue;
        }
        if (n == -PYSHM_ETOOBIG && !c->burst && min_size > MIN_ELT) {
            c->too_big++;
            continue;
        }
        if (n == 0 && !c->burst)
            n = 1;
        else if (n <= 0) {
            tc_fail(__FILE__, __LINE__, "block_ring_dequeue%s gave %" PRId64, c->burst ? "_burst" : "", n);
            goto fail;
        }
        for (int64_t i = 0; i < n; i++)
            if (check_taken(c, &t[i], c->burst ? 0 : min_size) < 0)
                goto fail;
        jitter(&rng);
        if (put_taken(c, t, n) < 0)
            goto fail;
        c->handled += (uint64_t)n;
    }
    return;
fail:
    atomic_store(c->abort, 1); /* stop everyone: the run has failed */
}
