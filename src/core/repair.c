/* repair.c - finishing or undoing what dead members left, acting for them (repair.h). */
#include "repair.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block_ring.h"
#include "errors.h"
#include "fault.h"
#include "mempool.h"
#include "member.h"
#include "queue.h"
#include "space.h"

/* How long a repair waits for a free queue held up by a live process's unfinished get. */
#define REPAIR_PATIENCE_NS UINT64_C(200000000)
/* Blocks put back per claim. */
#define PUT_BURST 64

/* A queue of the region: a pool's free queue (pool set) or a Ring's (pool NULL). */
struct queue_ref {
    struct pyshm_queue queue;
    const struct pyshm_pool *pool;
};

/* A dead member being repaired, and the blocks it holds. */
struct dead {
    uint32_t index;
    uint64_t owner;
    struct pyshm_member actor;
    struct pyshm_block *held;
    size_t held_count, held_capacity;
    uint64_t *staged; /* block indices staged in its claim on a free queue: not to fill with */
    size_t staged_count;
    int blocked; /* something could not be repaired now: keep the entry for later */
};

struct repair {
    struct pyshm_space *s;
    struct pyshm_repair_report *report;
    struct queue_ref *queues;
    size_t queue_count, queue_capacity;
    struct dead dead[PYSHM_MEMBER_ENTRIES];
    size_t dead_count;
    uint8_t is_dead[PYSHM_MEMBER_ENTRIES];
    struct dead *current; /* whose claims are being repaired */
    int failed;           /* -ENOMEM on the way */
};

/* ---- the region's queues ---------------------------------------------------------------- */

static int add_queue(struct repair *rp, const struct pyshm_queue *q, const struct pyshm_pool *pool)
{
    if (rp->queue_count == rp->queue_capacity) {
        size_t capacity = rp->queue_capacity ? 2 * rp->queue_capacity : 16;
        struct queue_ref *grown = realloc(rp->queues, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        rp->queues = grown;
        rp->queue_capacity = capacity;
    }
    rp->queues[rp->queue_count].queue = *q;
    rp->queues[rp->queue_count].pool = pool;
    rp->queue_count++;
    return 0;
}

static int add_if_ring(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    struct repair *rp = ctx;
    struct pyshm_block_ring ring;
    if (obj->kind == PYSHM_KIND_RING && pyshm_block_ring_attach(&rp->s->region, offset, &ring) == 0)
        return add_queue(rp, &ring.queue, NULL);
    return 0; /* a forged ring is skipped */
}

static int collect_queues(struct repair *rp)
{
    struct pyshm_space *s = rp->s;
    int rc = pyshm_pool_table_add_new(&s->pools, &s->region);
    for (size_t i = 0; rc == 0 && i < s->pools.count; i++)
        rc = add_queue(rp, &s->pools.pools[i]->free_queue, s->pools.pools[i]);
    return rc < 0 ? rc : pyshm_region_walk(&s->region, add_if_ring, rp);
}

static const struct queue_ref *queue_by_id(const struct repair *rp, uint64_t id)
{
    for (size_t i = 0; i < rp->queue_count; i++)
        if (rp->queues[i].queue.id == id)
            return &rp->queues[i];
    return NULL;
}

static const struct queue_ref *ref_of(const struct repair *rp, const struct pyshm_queue *q)
{
    return queue_by_id(rp, q->id);
}

/* ---- dead members and their blocks ----------------------------------------------------- */

static int hold(struct repair *rp, struct dead *d, const struct pyshm_pool *pool, uint64_t index, uint64_t gen)
{
    if (d->held_count == d->held_capacity) {
        size_t capacity = d->held_capacity ? 2 * d->held_capacity : 64;
        struct pyshm_block *grown = realloc(d->held, capacity * sizeof(*grown));
        if (!grown) {
            rp->failed = -ENOMEM;
            return -ENOMEM;
        }
        d->held = grown;
        d->held_capacity = capacity;
    }
    d->held[d->held_count++] = (struct pyshm_block){pool, index, gen};
    return 0;
}

/* Forget a block from d's list (it moved on). */
static void unhold(struct dead *d, const struct pyshm_pool *pool, uint64_t index)
{
    for (size_t i = 0; i < d->held_count; i++)
        if (d->held[i].pool->offset == pool->offset && d->held[i].index == index) {
            d->held[i] = d->held[--d->held_count];
            return;
        }
}

/* Step 2: the blocks HELD under d's holder word. */
static int scan_held(struct repair *rp, struct dead *d)
{
    if (atomic_load_explicit(&d->actor.entry->held, memory_order_relaxed) == 0)
        return 0;
    struct pyshm_pool_table *t = &rp->s->pools;
    for (size_t k = 0; k < t->count; k++) {
        const struct pyshm_pool *p = t->pools[k];
        uint64_t touched = pyshm_pool_touched(p);
        for (uint64_t i = 0; i < touched; i++) {
            /* S2 acquire: pairs with the release CAS of a take; then the holder word. */
            uint64_t state = atomic_load_explicit(&p->words[i].state, memory_order_acquire);
            if (pyshm_block_kind_of(state) != PYSHM_BLOCK_HELD ||
                atomic_load_explicit(&p->words[i].holder, memory_order_relaxed) != d->actor.holder)
                continue;
            if (hold(rp, d, p, i, pyshm_block_gen_of(state)) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Step 1. */
static void find_dead(struct repair *rp)
{
    struct pyshm_space *s = rp->s;
    int self = pyshm_member_is_current(&s->self) ? (int)s->self.index : -1;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++) {
        if ((int)i == self)
            continue;
        uint64_t owner = atomic_load_explicit(&s->members.table->entry[i].owner, memory_order_acquire);
        if (!(owner & PYSHM_OWNER_OWNED))
            continue;
        /* An owner without a lock is judged by its identity; one with a lock is gone when
         * its lock can be taken (the lock then also keeps joiners off the entry). */
        if ((owner & PYSHM_OWNER_NOLOCK) && pyshm_member_alive(&s->members, i, owner))
            continue;
        uint64_t offset = pyshm_member_lock_offset(i);
        if (pyshm_members_lock(&s->members, offset) != 0)
            continue;
        if (atomic_load_explicit(&s->members.table->entry[i].owner, memory_order_acquire) != owner) {
            pyshm_members_unlock(&s->members, offset); /* left cleanly meanwhile */
            continue;
        }
        struct dead *d = &rp->dead[rp->dead_count++];
        memset(d, 0, sizeof(*d));
        d->index = i;
        d->owner = owner;
        pyshm_member_act_for(&s->members, i, owner, &d->actor);
        rp->is_dead[i] = 1;
    }
}

/* ---- step 3: claims, through queue.h's repair with these callbacks ---------------------- */

/* Whether a live member announces position pos of q on `side`. */
static int live_claim(void *ctx, const struct pyshm_queue *q, enum pyshm_announce_side side, uint64_t pos)
{
    struct repair *rp = ctx;
    for (uint32_t j = 0; j < PYSHM_MEMBER_ENTRIES; j++) {
        if (rp->is_dead[j])
            continue;
        const struct pyshm_member_entry *e = &rp->s->members.table->entry[j];
        if (!(atomic_load_explicit(&e->owner, memory_order_acquire) & PYSHM_OWNER_OWNED))
            continue;
        struct pyshm_announcement a;
        if (!pyshm_member_read(e, &a, PYSHM_READ_LIVE))
            return 1; /* mid-write all along: it could be claiming anything */
        if (a.what == (q->id | (uint64_t)side) && pos - a.pos < a.n)
            return 1;
    }
    return 0;
}

/* The block a queue's value names: 0, or -1 for none. */
static int block_of(struct repair *rp, const struct queue_ref *ref, uint64_t value, const struct pyshm_pool **pool,
                    uint64_t *index)
{
    if (ref->pool) {
        *pool = ref->pool;
        *index = value;
        return value < ref->pool->count ? 0 : -1;
    }
    return pyshm_pool_table_find(&rp->s->pools, &rp->s->region, value, pool, index) == 0 ? 0 : -1;
}

/* An unstaged position of a dead producer: a free queue gets one of its held blocks of
 * that pool (mempool.h: the CAS comes after staging, so one is there), a Ring a hole. */
static int fill_position(void *ctx, const struct pyshm_queue *q, uint64_t pos, uint64_t *value)
{
    struct repair *rp = ctx;
    struct dead *d = rp->current;
    const struct queue_ref *ref = ref_of(rp, q);
    (void)pos;
    if (!ref || !ref->pool) {
        rp->report->holes++;
        return 1;
    }
    for (size_t i = 0; i < d->held_count; i++) {
        if (d->held[i].pool->offset != ref->pool->offset)
            continue;
        /* Not one it staged at another position of this claim (still HELD: its CAS comes
         * after staging), or the block would be queued twice. */
        size_t k = 0;
        while (k < d->staged_count && d->staged[k] != d->held[i].index)
            k++;
        if (k == d->staged_count) {
            *value = d->held[i].index;
            return 0;
        }
    }
    rp->report->holes++;
    return 1; /* it holds none: only a faulty process gets here */
}

/* A staged value: move its block to FREE (free queue) or IN_RING (Ring) unless the dead
 * producer did. 0 to publish it, non-zero for a hole. */
static int complete_position(void *ctx, const struct pyshm_queue *q, uint64_t value)
{
    struct repair *rp = ctx;
    const struct queue_ref *ref = ref_of(rp, q);
    const struct pyshm_pool *pool;
    uint64_t index;
    if (!ref || block_of(rp, ref, value, &pool, &index) < 0)
        return 1;
    enum pyshm_block_kind to = ref->pool ? PYSHM_BLOCK_FREE : PYSHM_BLOCK_IN_RING;
    uint64_t state = atomic_load_explicit(&pool->words[index].state, memory_order_acquire);
    if (pyshm_block_kind_of(state) == PYSHM_BLOCK_HELD &&
        pyshm_block_transition(&pool->words[index].state, PYSHM_BLOCK_HELD, pyshm_block_gen_of(state), to) == 0)
        state = pyshm_block_state(pyshm_block_gen_of(state) + 1, to);
    if (pyshm_block_kind_of(state) != to)
        return 1;
    for (size_t k = 0; k < rp->dead_count; k++)
        unhold(&rp->dead[k], pool, index);
    rp->report->finished++;
    return 0;
}

/* A dead consumer's claimed value: the block is the consumer's, taken for it if it had not
 * done so yet (it then goes back to its pool with the rest of what it held). */
static void take_position(void *ctx, const struct pyshm_queue *q, uint64_t value)
{
    struct repair *rp = ctx;
    struct dead *d = rp->current;
    const struct queue_ref *ref = ref_of(rp, q);
    const struct pyshm_pool *pool;
    uint64_t index, gen;
    rp->report->released++;
    if (!ref || block_of(rp, ref, value, &pool, &index) < 0)
        return;
    enum pyshm_block_kind from = ref->pool ? PYSHM_BLOCK_FREE : PYSHM_BLOCK_IN_RING;
    uint64_t state = atomic_load_explicit(&pool->words[index].state, memory_order_acquire);
    if (pyshm_block_kind_of(state) != from)
        return; /* taken already (then it is in the held list), or garbage */
    pyshm_member_held_add(&d->actor, 1);
    if (pyshm_block_take(pool, index, from, d->actor.holder, &gen) == 0)
        hold(rp, d, pool, index, gen);
}

/* The values the dead producer staged in its claim on a free queue. */
static int note_staged(struct repair *rp, struct dead *d, const struct pyshm_queue *q, const struct pyshm_announcement *a)
{
    d->staged = malloc((size_t)a->n * sizeof(*d->staged));
    if (!d->staged) {
        rp->failed = -ENOMEM;
        return -ENOMEM;
    }
    for (uint64_t k = 0; k < a->n; k++)
        if (pyshm_ring_phase_now(&q->ring, a->pos + k) == PYSHM_RING_STAGED)
            d->staged[d->staged_count++] = pyshm_queue_value(q, a->pos + k);
    return 0;
}

static void repair_claims(struct repair *rp, struct dead *d)
{
    struct pyshm_announcement a;
    /* The owner is dead: nobody writes the entry. A sequence left odd means it died
     * mid-write, with nothing claimed (member.h). */
    if (!pyshm_member_read(d->actor.entry, &a, 1) || a.what == 0)
        return;
    const struct queue_ref *ref = queue_by_id(rp, a.what & ~PYSHM_ANNOUNCE_SIDES);
    uint64_t side = a.what & PYSHM_ANNOUNCE_SIDES;
    if (ref && a.n <= ref->queue.ring.capacity) {
        struct pyshm_queue_repairer how = {live_claim, fill_position, complete_position, take_position, rp};
        rp->current = d;
        if (side == PYSHM_ANNOUNCE_ENQ && ref->pool && note_staged(rp, d, &ref->queue, &a) < 0)
            return;
        for (uint64_t k = 0; k < a.n; k++) {
            enum pyshm_position_fate fate =
                side == PYSHM_ANNOUNCE_ENQ ? pyshm_queue_repair_enq(&ref->queue, a.pos + k, &how)
                : side == PYSHM_ANNOUNCE_DEQ ? pyshm_queue_repair_deq(&ref->queue, a.pos + k, &how)
                                             : PYSHM_POSITION_DONE;
            if (fate == PYSHM_POSITION_LIVE)
                d->blocked = 1;
        }
    }
    if (!d->blocked)
        pyshm_member_clear(&d->actor);
}

/* ---- step 4: held blocks back to their pools --------------------------------------------- */

static void return_held(struct repair *rp, struct dead *d)
{
    size_t i = 0;
    while (i < d->held_count && !d->blocked) {
        /* A run of blocks of one pool, put back with one claim. */
        const struct pyshm_pool *pool = d->held[i].pool;
        size_t n = 1;
        while (i + n < d->held_count && n < PUT_BURST && d->held[i + n].pool == pool)
            n++;
        int rc = pyshm_pool_put(pool, &d->actor, &d->held[i], n, REPAIR_PATIENCE_NS);
        if (rc == 0) {
            rp->report->returned += n;
            i += n;
        } else if (rc == -EAGAIN) {
            d->blocked = 1;
        } else if (n > 1) {
            /* One of them moved on or is garbage: one by one, skipping those. */
            for (size_t k = 0; k < n && !d->blocked; k++) {
                int one = pyshm_pool_put(pool, &d->actor, &d->held[i + k], 1, REPAIR_PATIENCE_NS);
                rp->report->returned += one == 0;
                d->blocked = one == -EAGAIN;
            }
            i += n;
        } else {
            i++;
        }
    }
}

/* ---- the whole repair ------------------------------------------------------------------- */

static int any_gone(struct pyshm_space *s)
{
    int self = pyshm_member_is_current(&s->self) ? (int)s->self.index : -1;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++) {
        uint64_t owner = atomic_load_explicit(&s->members.table->entry[i].owner, memory_order_acquire);
        if ((int)i != self && (owner & PYSHM_OWNER_OWNED) && !pyshm_member_alive(&s->members, i, owner))
            return 1;
    }
    return 0;
}

int pyshm_repair_needed(struct pyshm_space *s) { return s->members.table != NULL && any_gone(s); }

int pyshm_repair(struct pyshm_space *s, int only_after_deaths, struct pyshm_repair_report *report)
{
    memset(report, 0, sizeof(*report));
    if (only_after_deaths && !pyshm_repair_needed(s))
        return 0;
    int rc = pyshm_members_lock(&s->members, PYSHM_REPAIR_LOCK_OFFSET);
    if (rc == -EAGAIN)
        return -EBUSY;
    if (rc < 0)
        return rc;
    struct repair *rp = calloc(1, sizeof(*rp));
    if (!rp) {
        pyshm_members_unlock(&s->members, PYSHM_REPAIR_LOCK_OFFSET);
        return -ENOMEM;
    }
    rp->s = s;
    rp->report = report;
    rc = collect_queues(rp);
    if (rc == 0)
        find_dead(rp);
    for (size_t k = 0; rc == 0 && k < rp->dead_count; k++)
        rc = scan_held(rp, &rp->dead[k]);
    /* Every dead member's claims before any block goes back (step 4 needs free queues
     * that no dead getter holds up). */
    for (size_t k = 0; rc == 0 && k < rp->dead_count; k++)
        repair_claims(rp, &rp->dead[k]);
    for (size_t k = 0; rc == 0 && k < rp->dead_count; k++)
        return_held(rp, &rp->dead[k]);
    if (rc == 0 && rp->failed)
        rc = rp->failed;
    for (size_t k = 0; k < rp->dead_count; k++) {
        struct dead *d = &rp->dead[k];
        if (rc == 0 && !d->blocked) {
            PYSHM_FAULT("repair.entry.done");
            if (pyshm_member_retire(&s->members, d->index, d->owner, NULL) == 0)
                report->entries++;
        } else {
            pyshm_members_unlock(&s->members, pyshm_member_lock_offset(d->index));
            report->pending++;
        }
        free(d->held);
        free(d->staged);
    }
    free(rp->queues);
    free(rp);
    pyshm_members_unlock(&s->members, PYSHM_REPAIR_LOCK_OFFSET);
    return rc;
}
