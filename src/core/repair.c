/* repair.c - finishing or undoing the queue steps of processes that died mid-operation. */
#include "repair.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "announce.h"
#include "block_ring.h"
#include "mempool.h"
#include "process.h"
#include "region.h"
#include "ring.h"

/* Attempts at putting an orphaned free block back into a free queue that reads full
 * (holes may fill it until consumers pass them). */
#define ORPHAN_ENQUEUE_ATTEMPTS 1000u

/* Liveness of holder words, remembered for the length of one repair. */
struct liveness {
    uint64_t holder[16];
    int gone[16];
    unsigned next;
};

static int is_gone(struct liveness *l, uint64_t holder)
{
    if (holder == 0)
        return 0;
    for (unsigned i = 0; i < 16; i++)
        if (l->holder[i] == holder)
            return l->gone[i];
    unsigned i = l->next++ % 16;
    l->holder[i] = holder;
    l->gone[i] = pyshm_holder_is_gone(holder);
    return l->gone[i];
}

/* A queue of the region: a pool's free queue (pool set) or a block ring (pool NULL). */
struct queue_ref {
    struct pyshm_ring ring; /* a copy whose operations announce nothing */
    const struct pyshm_pool *pool;
};

struct repair {
    struct pyshm_region *r;
    struct pyshm_announce_table *t;
    struct pyshm_repair_report *report;
    struct liveness live;
    uint64_t owner[PYSHM_ANNOUNCE_ENTRIES]; /* each entry's owner when the repair began */
    int owner_gone[PYSHM_ANNOUNCE_ENTRIES];
    struct queue_ref *queues;
    size_t queue_count, queue_capacity;
};

/* Put a block this process holds back into its pool, announcing nothing. */
static void put_back(struct repair *rp, const struct pyshm_pool *pool, uint64_t index, uint64_t gen)
{
    struct pyshm_pool quiet = *pool;
    quiet.free_queue.announcer = NULL;
    if (pyshm_pool_put(&quiet, index, &gen) == 0)
        rp->report->returned++;
}

static int add_queue(struct repair *rp, const struct pyshm_ring *ring, const struct pyshm_pool *pool)
{
    if (rp->queue_count == rp->queue_capacity) {
        size_t capacity = rp->queue_capacity ? 2 * rp->queue_capacity : 16;
        struct queue_ref *grown = realloc(rp->queues, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        rp->queues = grown;
        rp->queue_capacity = capacity;
    }
    struct queue_ref *q = &rp->queues[rp->queue_count++];
    q->ring = *ring;
    q->ring.announcer = NULL;
    q->pool = pool;
    return 0;
}

static int add_if_ring(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    struct repair *rp = ctx;
    struct pyshm_block_ring q;
    if (obj->kind == PYSHM_KIND_RING && pyshm_block_ring_attach(rp->r, offset, &q) == 0)
        return add_queue(rp, &q.ring, NULL);
    return 0; /* a forged ring is skipped */
}

static int collect_queues(struct repair *rp)
{
    int rc = pyshm_region_add_new_pools(rp->r);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < rp->r->pool_count; i++)
        if ((rc = add_queue(rp, &rp->r->pools[i]->free_queue, rp->r->pools[i])) < 0)
            return rc;
    return pyshm_region_walk(rp->r, add_if_ring, rp);
}

static struct queue_ref *queue_by_id(struct repair *rp, uint64_t id)
{
    for (size_t i = 0; i < rp->queue_count; i++)
        if (rp->queues[i].ring.id == id)
            return &rp->queues[i];
    return NULL;
}

/* Whether a live process announces position pos of this queue and side. An entry
 * whose owner changed since the repair began counts as live. */
static int announced_by_live(struct repair *rp, uint64_t what, uint64_t pos)
{
    for (uint32_t j = 0; j < PYSHM_ANNOUNCE_ENTRIES; j++) {
        struct pyshm_announce_entry *e = &rp->t->entry[j];
        uint64_t owner = atomic_load_explicit(&e->owner, memory_order_relaxed);
        if (owner == 0 || (owner == rp->owner[j] && rp->owner_gone[j]))
            continue;
        /* A2 acquire: pairs with the release clear, so a cleared entry's slot is finished. */
        if (atomic_load_explicit(&e->what, memory_order_acquire) != what)
            continue;
        uint64_t first = atomic_load_explicit(&e->pos, memory_order_relaxed);
        uint64_t n = atomic_load_explicit(&e->n, memory_order_relaxed);
        if (pos - first < n)
            return 1;
    }
    return 0;
}

/* A position a gone producer claimed: publish a hole if it never published. */
static void repair_enq(struct repair *rp, struct queue_ref *q, uint64_t pos)
{
    const struct pyshm_ring *ring = &q->ring;
    /* A1 acquire: pairs with the release claim, so its announcement is visible. */
    uint64_t enq = atomic_load_explicit(&ring->counters->enq_pos, memory_order_acquire);
    struct pyshm_ring_slot *slot = pyshm_ring_slot_at(ring, pos);
    if ((int64_t)(enq - pos) <= 0 ||
        atomic_load_explicit(&slot->seq, memory_order_acquire) != pyshm_ring_seq_free(pos) ||
        announced_by_live(rp, ring->id | PYSHM_ANNOUNCE_ENQ, pos))
        return;
    uint64_t expected = pyshm_ring_seq_free(pos);
    if (atomic_load_explicit(&slot->seq, memory_order_acquire) != expected)
        return;
    atomic_store_explicit(&slot->value, PYSHM_RING_HOLE, memory_order_relaxed);
    /* R1 release, as a publish. */
    if (atomic_compare_exchange_strong_explicit(&slot->seq, &expected, pyshm_ring_seq_full(pos),
                                                memory_order_release, memory_order_relaxed)) {
        rp->report->holes++;
        pyshm_wait_notify(&ring->counters->not_empty);
    }
}

/* A position a gone consumer claimed and never released: give back the block it did not
 * take, then release the slot. */
static void repair_deq(struct repair *rp, struct queue_ref *q, uint64_t pos)
{
    const struct pyshm_ring *ring = &q->ring;
    uint64_t deq = atomic_load_explicit(&ring->counters->deq_pos, memory_order_acquire); /* A1 */
    struct pyshm_ring_slot *slot = pyshm_ring_slot_at(ring, pos);
    uint64_t full = pyshm_ring_seq_full(pos);
    if ((int64_t)(deq - pos) <= 0 || atomic_load_explicit(&slot->seq, memory_order_acquire) != full)
        return;
    uint64_t value = atomic_load_explicit(&slot->value, memory_order_relaxed);
    if (announced_by_live(rp, ring->id | PYSHM_ANNOUNCE_DEQ, pos))
        return;
    /* The value read belongs to this lap only if the slot still reads full for it. */
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != full)
        return;
    const struct pyshm_pool *pool = q->pool;
    uint64_t index = value;
    enum pyshm_block_kind queued = PYSHM_BLOCK_FREE;
    if (!pool) {
        queued = PYSHM_BLOCK_IN_RING;
        if (value == PYSHM_RING_HOLE || pyshm_region_find_block(rp->r, value, &pool, &index) < 0)
            pool = NULL;
    }
    uint64_t gen = 0;
    int took = pool && index < pool->count &&
               pyshm_block_kind_of(atomic_load_explicit(&pool->states[index], memory_order_acquire)) == queued &&
               pyshm_block_take(pool, index, queued, &gen) == 0;
    uint64_t expected = full;
    /* R2 release, as a consumer's release. */
    if (atomic_compare_exchange_strong_explicit(&slot->seq, &expected, pyshm_ring_seq_free(pos + ring->capacity),
                                                memory_order_release, memory_order_relaxed)) {
        rp->report->released++;
        pyshm_wait_notify(&ring->counters->not_full);
    }
    if (took)
        put_back(rp, pool, index, gen);
}

static void repair_slots(struct repair *rp)
{
    for (uint32_t j = 0; j < PYSHM_ANNOUNCE_ENTRIES; j++) {
        if (!rp->owner_gone[j])
            continue;
        struct pyshm_announce_entry *e = &rp->t->entry[j];
        uint64_t what = atomic_load_explicit(&e->what, memory_order_acquire);
        uint64_t first = atomic_load_explicit(&e->pos, memory_order_relaxed);
        uint64_t n = atomic_load_explicit(&e->n, memory_order_relaxed);
        struct queue_ref *q = what ? queue_by_id(rp, what & ~(uint64_t)3) : NULL;
        if (q && n <= q->ring.capacity) {
            for (uint64_t i = 0; i < n; i++) {
                if ((what & 3) == PYSHM_ANNOUNCE_ENQ)
                    repair_enq(rp, q, first + i);
                else if ((what & 3) == PYSHM_ANNOUNCE_DEQ)
                    repair_deq(rp, q, first + i);
            }
        }
        atomic_store_explicit(&e->what, 0, memory_order_relaxed);
        uint64_t owner = rp->owner[j];
        if (atomic_compare_exchange_strong_explicit(&e->owner, &owner, 0, memory_order_release,
                                                    memory_order_relaxed))
            rp->report->entries++;
    }
}

/* Step 2 of repair.h, for every pool the region handle knows. */
static int return_orphans(struct repair *rp)
{
    size_t pools = rp->r->pool_count;
    uint64_t **snapshot = calloc(pools ? pools : 1, sizeof(*snapshot));
    uint8_t **present = calloc(pools ? pools : 1, sizeof(*present));
    int rc = snapshot && present ? 0 : -ENOMEM;
    /* Candidates: FREE or IN_RING, held last by a process that is gone. */
    uint64_t candidates = 0;
    for (size_t k = 0; k < pools && rc == 0; k++) {
        const struct pyshm_pool *p = rp->r->pools[k];
        snapshot[k] = malloc(p->count * sizeof(uint64_t));
        present[k] = calloc(p->count, 1);
        if (!snapshot[k] || !present[k]) {
            rc = -ENOMEM;
            break;
        }
        for (uint64_t i = 0; i < p->count; i++) {
            uint64_t state = atomic_load_explicit(&p->states[i], memory_order_acquire);
            enum pyshm_block_kind kind = pyshm_block_kind_of(state);
            uint64_t holder = atomic_load_explicit(&p->holders[i], memory_order_relaxed);
            int candidate = (kind == PYSHM_BLOCK_FREE || kind == PYSHM_BLOCK_IN_RING) && is_gone(&rp->live, holder);
            snapshot[k][i] = candidate ? state : UINT64_MAX;
            candidates += (uint64_t)candidate;
        }
    }
    /* Which blocks sit in a queue slot (published, or claimed and not yet released). */
    for (size_t qi = 0; qi < rp->queue_count && rc == 0 && candidates > 0; qi++) {
        const struct pyshm_ring *ring = &rp->queues[qi].ring;
        uint64_t enq = atomic_load_explicit(&ring->counters->enq_pos, memory_order_acquire);
        for (uint64_t pos = enq - ring->capacity; pos != enq; pos++) {
            struct pyshm_ring_slot *slot = pyshm_ring_slot_at(ring, pos);
            if (atomic_load_explicit(&slot->seq, memory_order_acquire) != pyshm_ring_seq_full(pos))
                continue;
            uint64_t value = atomic_load_explicit(&slot->value, memory_order_relaxed);
            const struct pyshm_pool *pool = rp->queues[qi].pool;
            uint64_t index = value;
            if (!pool && (value == PYSHM_RING_HOLE || pyshm_region_find_block(rp->r, value, &pool, &index) < 0))
                continue;
            if (pool->slot < pools && index < pool->count)
                present[pool->slot][index] = 1;
        }
    }
    /* A candidate in no slot whose state has not changed meanwhile goes back. */
    for (size_t k = 0; k < pools && rc == 0 && candidates > 0; k++) {
        const struct pyshm_pool *p = rp->r->pools[k];
        for (uint64_t i = 0; i < p->count; i++) {
            uint64_t state = snapshot[k][i];
            if (state == UINT64_MAX || present[k][i] ||
                atomic_load_explicit(&p->states[i], memory_order_acquire) != state)
                continue;
            if (pyshm_block_kind_of(state) == PYSHM_BLOCK_IN_RING) {
                uint64_t gen = 0;
                if (pyshm_block_take(p, i, PYSHM_BLOCK_IN_RING, &gen) == 0)
                    put_back(rp, p, i, gen);
                continue;
            }
            /* FREE: only its place in the free queue is missing. */
            struct pyshm_ring quiet = p->free_queue;
            quiet.announcer = NULL;
            for (unsigned attempt = 0; attempt < ORPHAN_ENQUEUE_ATTEMPTS; attempt++) {
                int erc = pyshm_ring_enqueue_mp(&quiet, i);
                if (erc == 0) {
                    rp->report->returned++;
                    pyshm_wait_notify(&quiet.counters->not_empty);
                    break;
                }
                if (erc != -PYSHM_EFULL)
                    break;
                sched_yield();
            }
        }
    }
    for (size_t k = 0; k < pools; k++) {
        if (snapshot)
            free(snapshot[k]);
        if (present)
            free(present[k]);
    }
    free(snapshot);
    free(present);
    return rc;
}

static int return_held(struct repair *rp)
{
    for (size_t k = 0; k < rp->r->pool_count; k++) {
        struct pyshm_pool quiet = *rp->r->pools[k];
        quiet.free_queue.announcer = NULL;
        int64_t n = pyshm_pool_reclaim(&quiet);
        if (n < 0)
            return (int)n;
        rp->report->returned += (uint64_t)n;
    }
    return 0;
}

static int lock(struct repair *rp, uint64_t self)
{
    uint64_t holder = 0;
    /* Acquire: sees what the previous repairer did before it unlocked. */
    if (atomic_compare_exchange_strong_explicit(&rp->t->repair_lock, &holder, self, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    if (holder != self && pyshm_holder_is_gone(holder) &&
        atomic_compare_exchange_strong_explicit(&rp->t->repair_lock, &holder, self, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    return -EBUSY;
}

/* Whether some entry of the table is owned by a process that is gone. */
static int any_gone_owner(const struct pyshm_announce_table *t, uint64_t self)
{
    struct liveness live = {{0}, {0}, 0};
    for (uint32_t j = 0; j < PYSHM_ANNOUNCE_ENTRIES; j++) {
        uint64_t owner = atomic_load_explicit(&t->entry[j].owner, memory_order_relaxed);
        if (owner != 0 && owner != self && is_gone(&live, owner))
            return 1;
    }
    return 0;
}

int pyshm_region_repair(struct pyshm_region *r, int only_after_deaths, struct pyshm_repair_report *report)
{
    memset(report, 0, sizeof(*report));
    if (only_after_deaths) {
        const struct pyshm_announce_table *t = pyshm_announce_table_of(r);
        if (!t || !any_gone_owner(t, pyshm_holder_self()))
            return 0;
    }
    struct repair *rp = calloc(1, sizeof(*rp));
    if (!rp)
        return -ENOMEM;
    rp->r = r;
    rp->t = pyshm_announce_table_of(r);
    rp->report = report;
    uint64_t self = pyshm_holder_self();
    int rc = 0;
    if (!rp->t) {
        /* Nobody ever announced, so no slot can be stuck on record: held blocks only. */
        rc = pyshm_region_add_new_pools(r);
        if (rc == 0)
            rc = return_held(rp);
    } else if ((rc = lock(rp, self)) == 0) {
        for (uint32_t j = 0; j < PYSHM_ANNOUNCE_ENTRIES; j++) {
            rp->owner[j] = atomic_load_explicit(&rp->t->entry[j].owner, memory_order_relaxed);
            rp->owner_gone[j] = rp->owner[j] != self && is_gone(&rp->live, rp->owner[j]);
        }
        rc = collect_queues(rp);
        if (rc == 0) {
            repair_slots(rp);
            rc = return_orphans(rp);
        }
        if (rc == 0)
            rc = return_held(rp);
        /* Release: the next repairer sees everything this one did. */
        atomic_store_explicit(&rp->t->repair_lock, 0, memory_order_release);
    }
    free(rp->queues);
    free(rp);
    return rc;
}
