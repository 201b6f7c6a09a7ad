/*
 * stress_common.c - what the stress tests share: the message a block carries (stamp,
 * checksum, owner word), the seen table, and the producer and consumer loops used by
 * threads and by fork()ed processes alike (see stress.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

/* ---- the message a block carries ---- */

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

static void stamp_message(uint8_t *b, uint64_t elt_size, uint64_t producer, uint64_t seq)
{
    wr64(b + OFF_PRODUCER, producer);
    wr64(b + OFF_SEQ, seq);
    for (uint64_t k = OFF_PAYLOAD; k < elt_size; k++)
        b[k] = payload_byte(producer, seq, k);
    wr64(b + OFF_SUM, checksum(b, elt_size));
}

static int check_message(const uint8_t *b, uint64_t elt_size, const struct stress_cfg *cfg, uint64_t *producer,
                         uint64_t *seq)
{
    *producer = rd64(b + OFF_PRODUCER);
    *seq = rd64(b + OFF_SEQ);
    if (*producer >= (uint64_t)cfg->producers || *seq >= cfg->per) {
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
static void own_block(uint8_t *b, uint64_t who) { wr64(b + OFF_OWNER, who); }
static int still_owner(struct stress_ctl *ctl, const uint8_t *b, uint64_t who, const char *when)
{
    uint64_t now = rd64(b + OFF_OWNER);
    if (now == who)
        return 1;
    atomic_fetch_add(&ctl->duplicates, 1);
    tc_fail(__FILE__, __LINE__, "owner %" PRIu64 " lost its block to %" PRIu64 " %s", who, now, when);
    return 0;
}

void jitter(uint64_t *rng)
{
    uint64_t r = tc_rand(rng);
    if (r % 64 == 0)
        tc_yield();
    else if (r % 8 == 0)
        for (uint64_t i = 0; i < r % 256; i++)
            pyshm_cpu_relax();
}

/* ---- shared state ---- */

size_t stress_ctl_size(const struct stress_cfg *cfg)
{
    uint64_t total = (uint64_t)cfg->producers * cfg->per;
    return PYSHM_ALIGN_UP(sizeof(struct stress_ctl), 64) + PYSHM_ALIGN_UP(2 * total, 64) + total * sizeof(uint64_t);
}

struct stress_ctl *stress_ctl_init(void *mem, const struct stress_cfg *cfg)
{
    uint64_t total = (uint64_t)cfg->producers * cfg->per;
    struct stress_ctl *ctl = mem;
    uint8_t *p = (uint8_t *)mem + PYSHM_ALIGN_UP(sizeof(struct stress_ctl), 64);
    ctl->seen = (atomic_uchar *)p;
    ctl->sent = (atomic_uchar *)(p + total);
    ctl->sent_pool = (uint64_t *)(p + PYSHM_ALIGN_UP(2 * total, 64));
    return ctl;
}

int stress_setup(struct stress_env *e, struct pyshm_space *creator, const struct stress_cfg *cfg,
                 struct stress_ctl *ctl)
{
    memset(e, 0, sizeof(*e));
    e->cfg = cfg;
    e->creator = creator;
    e->ctl = ctl;
    for (int i = 0; i < cfg->npools; i++) {
        if (cfg->late_pool && i == 1)
            break;
        const struct pyshm_pool *p = tc_pool(creator, cfg->count[i], cfg->elt[i], 0, NULL);
        if (!p)
            return -1;
        e->pool_off[i] = p->offset;
        if (cfg->free_queue_near_wrap) {
            uint64_t values[256];
            if (p->count > 256 || (p->count & (p->count - 1)))
                return -1;
            for (uint64_t k = 0; k < p->count; k++)
                values[k] = k;
            uint64_t start = UINT64_MAX - p->count * 3 - 5;
            tc_ring_place(&p->free_queue.ring, start, start + p->count, values);
        }
    }
    struct pyshm_block_ring q;
    if (tc_ring(creator, cfg->capacity, 0, NULL, &q) < 0)
        return -1;
    e->ring_off = q.offset;
    if (cfg->ring_start)
        tc_ring_place(&q.queue.ring, cfg->ring_start, cfg->ring_start, NULL);
    return 0;
}

static int aborted(const struct stress_ctl *ctl) { return atomic_load_explicit(&ctl->abort, memory_order_relaxed); }

static int fail_run(struct stress_ctl *ctl)
{
    atomic_store(&ctl->abort, 1);
    return 1;
}

/* Stuck for a while (a dead actor's claim may be in the way): try a repair, as the
 * binding's waiting calls do. Errors (EBUSY: someone else repairs; ENOTSUP: no lock
 * description) are fine. */
static void maybe_repair(struct pyshm_space *own, uint64_t *stuck)
{
    if (++*stuck % 256 != 0)
        return;
    struct pyshm_repair_report rep;
    int rc = pyshm_repair(own, 1, &rep);
    if (rc != 0 && rc != -EBUSY && rc != -ENOTSUP)
        tc_fail(__FILE__, __LINE__, "pyshm_repair = %d", rc);
}

/* ---- producers ---- */

int stress_producer(const struct stress_env *e, struct pyshm_space *own, int id)
{
    const struct stress_cfg *cfg = e->cfg;
    struct stress_ctl *ctl = e->ctl;
    struct pyshm_member *m = tc_member(own);
    struct pyshm_block_ring q;
    if (!m || pyshm_block_ring_attach(&own->region, e->ring_off, &q) != 0)
        return fail_run(ctl);
    const struct pyshm_pool *pools[STRESS_MAX_POOLS];
    int npools = cfg->npools;
    for (int i = 0; i < cfg->npools; i++) {
        uint64_t off = e->pool_off[i];
        if (cfg->late_pool && i == 1) {
            if (id != 1) {
                npools = 1;
                break;
            }
            if (pyshm_pool_create(&own->region, cfg->count[1], cfg->elt[1], 0, NULL, &off) != 0)
                return fail_run(ctl);
            atomic_store(&ctl->late_pool_off, off);
        }
        if (!(pools[i] = tc_pool_at(own, off)))
            return fail_run(ctl);
    }
    uint64_t me = 1 + (uint64_t)id, rng = 5 + (uint64_t)id * 7919, stuck = 0;
    uint64_t max_burst = cfg->capacity < 8 ? cfg->capacity : 8;
    for (uint64_t seq = 0; seq < cfg->per && !aborted(ctl);) {
        uint64_t pi = cfg->burst ? tc_rand(&rng) % (uint64_t)npools : ((uint64_t)id + seq) % (uint64_t)npools;
        const struct pyshm_pool *pool = pools[pi];
        uint64_t want = cfg->burst ? 1 + tc_rand(&rng) % max_burst : 1;
        if (want > cfg->per - seq)
            want = cfg->per - seq;
        if (want > pool->count)
            want = pool->count;
        struct pyshm_block b[8];
        int64_t n;
        while ((n = pyshm_pool_get(pool, m, b, want)) == -PYSHM_EEMPTY && !aborted(ctl)) {
            maybe_repair(own, &stuck);
            tc_yield();
        }
        if (n <= 0) {
            if (!aborted(ctl))
                tc_fail(__FILE__, __LINE__, "pool_get(%" PRIu64 ") = %" PRId64, want, n);
            return fail_run(ctl);
        }
        for (int64_t i = 0; i < n; i++) {
            uint8_t *bytes = tc_bytes(&b[i]);
            own_block(bytes, me);
            stamp_message(bytes, pool->elt_size, (uint64_t)id, seq + (uint64_t)i);
            e->ctl->sent_pool[(uint64_t)id * cfg->per + seq + (uint64_t)i] = pool->offset;
        }
        jitter(&rng);
        for (int64_t i = 0; i < n; i++)
            if (!still_owner(ctl, tc_bytes(&b[i]), me, "before enqueue"))
                return fail_run(ctl);
        int rc;
        while ((rc = pyshm_block_ring_enqueue(&q, m, b, (uint64_t)n)) == -PYSHM_EFULL && !aborted(ctl)) {
            maybe_repair(own, &stuck);
            tc_yield();
        }
        if (rc != 0) {
            if (!aborted(ctl))
                tc_fail(__FILE__, __LINE__, "block_ring_enqueue(%" PRId64 ") = %d", n, rc);
            return fail_run(ctl);
        }
        for (int64_t i = 0; i < n; i++)
            atomic_store_explicit(&ctl->sent[(uint64_t)id * cfg->per + seq + (uint64_t)i], 1, memory_order_relaxed);
        seq += (uint64_t)n;
    }
    return aborted(ctl);
}

/* ---- consumers ---- */

int stress_consumer(const struct stress_env *e, struct pyshm_space *own, int id)
{
    const struct stress_cfg *cfg = e->cfg;
    struct stress_ctl *ctl = e->ctl;
    struct pyshm_member *m = tc_member(own);
    struct pyshm_block_ring q;
    if (!m || pyshm_block_ring_attach(&own->region, e->ring_off, &q) != 0)
        return fail_run(ctl);
    uint64_t me = 100 + (uint64_t)id, rng = 1000 + (uint64_t)id * 104729, stuck = 0;
    int64_t last[STRESS_MAX_ACTORS];
    for (int i = 0; i < STRESS_MAX_ACTORS; i++)
        last[i] = -1;
    uint64_t large = cfg->elt[cfg->npools - 1];
    for (uint64_t iter = 0; !aborted(ctl); iter++) {
        int done = atomic_load_explicit(&ctl->producers_done, memory_order_acquire);
        uint64_t max = cfg->burst ? 1 + tc_rand(&rng) % 8 : 1;
        uint64_t min_size = !cfg->burst && cfg->picky && iter % 4 == 0 ? large : iter % 3;
        struct pyshm_block t[8];
        int64_t n = pyshm_block_ring_dequeue(&q, m, &own->pools, &own->region, min_size, max, t);
        if (n == -PYSHM_EEMPTY) {
            if (done)
                break;
            maybe_repair(own, &stuck);
            tc_yield();
            continue;
        }
        if (n == -PYSHM_ETOOBIG && min_size > MIN_ELT)
            continue;
        if (n <= 0) {
            tc_fail(__FILE__, __LINE__, "block_ring_dequeue(min %" PRIu64 ", max %" PRIu64 ") = %" PRId64, min_size, max,
                    n);
            return fail_run(ctl);
        }
        for (int64_t i = 0; i < n; i++) {
            uint8_t *bytes = tc_bytes(&t[i]);
            own_block(bytes, me);
            uint64_t p, seq;
            if (t[i].pool->elt_size < min_size) {
                tc_fail(__FILE__, __LINE__, "asked for %" PRIu64 " bytes, got %" PRIu64, min_size, t[i].pool->elt_size);
                return fail_run(ctl);
            }
            if (check_message(bytes, t[i].pool->elt_size, cfg, &p, &seq) < 0) {
                atomic_fetch_add(&ctl->bad, 1);
                return fail_run(ctl);
            }
            if (t[i].pool->offset != ctl->sent_pool[p * cfg->per + seq]) {
                tc_fail(__FILE__, __LINE__, "message (%" PRIu64 ", %" PRIu64 ") came in the wrong pool", p, seq);
                atomic_fetch_add(&ctl->bad, 1);
                return fail_run(ctl);
            }
            unsigned old = atomic_fetch_add_explicit(&ctl->seen[p * cfg->per + seq], 1, memory_order_relaxed);
            if (old != 0) {
                tc_fail(__FILE__, __LINE__, "message (%" PRIu64 ", %" PRIu64 ") delivered %u times", p, seq, old + 1);
                atomic_fetch_add(&ctl->duplicates, 1);
                return fail_run(ctl);
            }
            if ((int64_t)seq <= last[p]) {
                tc_fail(__FILE__, __LINE__, "producer %" PRIu64 ": seq %" PRIu64 " after %" PRId64, p, seq, last[p]);
                atomic_fetch_add(&ctl->bad, 1);
                return fail_run(ctl);
            }
            last[p] = (int64_t)seq;
            /* Wipe the message, so a stale second delivery cannot pass as a good one. */
            memset(bytes + OFF_PRODUCER, 0xee, t[i].pool->elt_size - OFF_PRODUCER);
        }
        atomic_fetch_add_explicit(&ctl->handled[id], (uint64_t)n, memory_order_relaxed);
        jitter(&rng);
        for (int64_t i = 0; i < n; i++)
            if (!still_owner(ctl, tc_bytes(&t[i]), me, "before put"))
                return fail_run(ctl);
        /* One put per pool. */
        int done_put[8] = {0};
        for (int64_t i = 0; i < n; i++) {
            if (done_put[i])
                continue;
            struct pyshm_block same[8];
            uint64_t k = 0;
            for (int64_t j = i; j < n; j++)
                if (!done_put[j] && t[j].pool == t[i].pool) {
                    same[k++] = t[j];
                    done_put[j] = 1;
                }
            int rc;
            while ((rc = pyshm_pool_put(t[i].pool, m, same, k, UINT64_C(1000000000))) == -EAGAIN && !aborted(ctl)) {
                atomic_fetch_add(&ctl->eagain, 1);
                maybe_repair(own, &stuck);
                tc_yield();
            }
            if (rc != 0) {
                if (!aborted(ctl))
                    tc_fail(__FILE__, __LINE__, "pool_put(%" PRIu64 ") = %d", k, rc);
                return fail_run(ctl);
            }
        }
    }
    return aborted(ctl);
}

/* ---- the end ---- */

void stress_check(const struct stress_env *e, struct pyshm_space *creator, uint64_t may_lose, int may_be_unsent)
{
    const struct stress_cfg *cfg = e->cfg;
    struct stress_ctl *ctl = e->ctl;
    uint64_t total = (uint64_t)cfg->producers * cfg->per, missing = 0, lost = 0, extra = 0, unsent = 0;
    for (uint64_t i = 0; i < total; i++) {
        unsigned seen = atomic_load(&ctl->seen[i]), sent = atomic_load(&ctl->sent[i]);
        if (seen > 1)
            extra++;
        if (!sent)
            unsent++;
        if (!seen && sent && ++lost > may_lose && lost <= may_lose + 3)
            tc_fail(__FILE__, __LINE__, "message (%" PRIu64 ", %" PRIu64 ") sent, never delivered", i / cfg->per,
                    i % cfg->per);
        missing += !seen;
    }
    if (getenv("TC_VERBOSE")) {
        printf("      handled:");
        for (int i = 0; i < cfg->consumers; i++)
            printf(" %" PRIu64, (uint64_t)atomic_load(&ctl->handled[i]));
        printf("; lost %" PRIu64 ", unsent %" PRIu64 ", put retries %" PRIu64 "\n", lost, unsent,
               (uint64_t)atomic_load(&ctl->eagain));
    }
    CHECK_EQ(extra, 0);
    CHECK_EQ(atomic_load(&ctl->duplicates), 0);
    CHECK_EQ(atomic_load(&ctl->bad), 0);
    CHECK(lost <= may_lose);
    if (!may_be_unsent)
        CHECK_EQ(unsent, 0);
    if (may_lose == 0)
        CHECK(missing <= unsent);
    CHECK_EQ(atomic_load(&ctl->abort), 0);
    struct pyshm_block_ring q;
    if (pyshm_block_ring_attach(&creator->region, e->ring_off, &q) != 0) {
        tc_fail(__FILE__, __LINE__, "ring attach");
        return;
    }
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    CHECK_EQ(tc_other_members(creator), 0);
    CHECK_EQ(tc_check_conservation(creator, &q, 1), 0);
}
