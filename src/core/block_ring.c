/* block_ring.c - moving blocks through a ring, with their ownership. */
#include "block_ring.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "region.h"

static int layout_of(uint64_t capacity, uint64_t *bytes)
{
    if (capacity == 0 || capacity > PYSHM_MAX_RING_CAPACITY)
        return -EINVAL;
    *bytes = PYSHM_ALIGN_UP(sizeof(struct pyshm_ring_shared) + capacity * sizeof(struct pyshm_ring_slot),
                            PYSHM_CACHE_LINE);
    return 0;
}

int pyshm_block_ring_footprint(uint64_t capacity, uint64_t *bytes) { return layout_of(capacity, bytes); }

static void fill_handle(const struct pyshm_region *r, uint64_t offset, uint64_t capacity, uint32_t flags,
                        struct pyshm_block_ring *q)
{
    struct pyshm_ring_shared *shared = (struct pyshm_ring_shared *)(r->base + offset);
    q->offset = offset;
    q->flags = flags;
    q->shutdown = &shared->shutdown;
    q->ring.counters = &shared->counters;
    q->ring.slots = (struct pyshm_ring_slot *)(r->base + offset + sizeof(struct pyshm_ring_shared));
    q->ring.capacity = capacity;
    /* The announcer is this process's cache of its table entry: mutable, not shared. */
    q->ring.announcer = (struct pyshm_announcer *)&r->announcer;
    q->ring.id = offset + offsetof(struct pyshm_ring_shared, counters);
}

int pyshm_block_ring_create(struct pyshm_region *r, uint64_t capacity, uint32_t flags, const char *name,
                            struct pyshm_block_ring *out)
{
    uint64_t size, offset;
    int rc = layout_of(capacity, &size);
    if (rc < 0 || (flags & ~(uint64_t)PYSHM_RING_FLAGS))
        return -EINVAL;
    rc = pyshm_region_carve(r, size, PYSHM_KIND_RING, name, &offset);
    if (rc < 0)
        return rc;
    struct pyshm_ring_shared *shared = (struct pyshm_ring_shared *)(r->base + offset);
    shared->capacity = capacity;
    shared->flags = flags;
    shared->slots_offset = offset + sizeof(struct pyshm_ring_shared);
    atomic_store_explicit(&shared->shutdown, PYSHM_RING_OPEN, memory_order_relaxed);
    fill_handle(r, offset, capacity, flags, out);
    pyshm_ring_init(&out->ring, 0);
    pyshm_region_publish(r, offset);
    return 0;
}

int pyshm_block_ring_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_block_ring *out)
{
    if (offset % PYSHM_CACHE_LINE != 0 || offset > r->size || r->size - offset < sizeof(struct pyshm_ring_shared))
        return -PYSHM_ECORRUPT;
    const struct pyshm_ring_shared *shared = (const struct pyshm_ring_shared *)(r->base + offset);
    /* Read every field once; validate the copies, never the shared originals. */
    struct pyshm_object_header object = shared->object;
    uint64_t capacity = shared->capacity, flags = shared->flags, slots = shared->slots_offset, size;
    if (object.magic != PYSHM_OBJECT_MAGIC || object.kind != PYSHM_KIND_RING ||
        object.layout_version != PYSHM_LAYOUT_VERSION || (flags & ~(uint64_t)PYSHM_RING_FLAGS) ||
        layout_of(capacity, &size) < 0 || object.size != size || size > r->size - offset ||
        slots != offset + sizeof(struct pyshm_ring_shared))
        return -PYSHM_ECORRUPT;
    fill_handle(r, offset, capacity, (uint32_t)flags, out);
    return 0;
}

/* Undo HELD -> IN_RING for blocks that did not make it into the ring. */
static int take_back(struct pyshm_held_block *blocks, uint64_t n)
{
    int rc = 0;
    for (uint64_t i = 0; i < n; i++) {
        pyshm_atomic64 *state = &blocks[i].pool->states[blocks[i].index];
        if (pyshm_block_transition(state, PYSHM_BLOCK_IN_RING, blocks[i].gen + 1, PYSHM_BLOCK_HELD) < 0)
            rc = -PYSHM_ECORRUPT;
        else
            blocks[i].gen += 2;
    }
    return rc;
}

int pyshm_block_ring_enqueue_burst(const struct pyshm_block_ring *q, struct pyshm_held_block *blocks, uint64_t n)
{
    if (pyshm_block_ring_shutdown_state(q) != PYSHM_RING_OPEN)
        return -ESHUTDOWN;
    uint64_t offsets_small[64];
    uint64_t *offsets = n <= 64 ? offsets_small : malloc(n * sizeof(*offsets));
    if (!offsets)
        return -ENOMEM;
    /* Ownership first: a consumer that sees an offset must find IN_RING. */
    uint64_t moved = 0;
    int rc = 0;
    for (; moved < n; moved++) {
        const struct pyshm_held_block *b = &blocks[moved];
        if (b->index >= b->pool->count) {
            rc = -EINVAL;
            break;
        }
        rc = pyshm_block_transition(&b->pool->states[b->index], PYSHM_BLOCK_HELD, b->gen, PYSHM_BLOCK_IN_RING);
        if (rc < 0)
            break;
        PYSHM_FAULT("ring.enqueue.in_ring");
        offsets[moved] = pyshm_pool_block_offset(b->pool, b->index);
    }
    if (rc == 0) {
        if (n == 1)
            rc = (q->flags & PYSHM_RING_F_SP_ENQ) ? pyshm_ring_enqueue_sp(&q->ring, offsets[0])
                                                  : pyshm_ring_enqueue_mp(&q->ring, offsets[0]);
        else
            rc = pyshm_ring_enqueue_burst(&q->ring, offsets, n);
    }
    if (offsets != offsets_small)
        free(offsets);
    if (rc == 0) {
        pyshm_wait_notify(&q->ring.counters->not_empty);
        return 0;
    }
    /* Not queued: nobody else can have seen these blocks, take them back. */
    int undo = take_back(blocks, moved);
    return undo < 0 ? undo : rc;
}

int pyshm_block_ring_enqueue(const struct pyshm_block_ring *q, const struct pyshm_pool *pool, uint64_t index,
                             uint64_t *gen)
{
    struct pyshm_held_block b = {.pool = pool, .index = index, .gen = *gen};
    int rc = pyshm_block_ring_enqueue_burst(q, &b, 1);
    *gen = b.gen;
    return rc;
}

struct dequeue_check {
    struct pyshm_region *region;
    uint64_t min_size;
    int found; /* 0 or the error find_block gave */
    const struct pyshm_pool *pool;
    uint64_t index;
};

/* Called on the head entry before it is claimed (ring.h accept). */
static int check_head(void *ctx, uint64_t offset)
{
    struct dequeue_check *c = ctx;
    c->found = pyshm_region_find_block(c->region, offset, &c->pool, &c->index);
    if (c->found == -ENOMEM)
        return -ENOMEM;
    if (c->found == 0 && c->pool->elt_size < c->min_size)
        return -PYSHM_ETOOBIG;
    return 0; /* claim it, even if it is garbage: dropping it keeps the ring flowing */
}

/* After a claim: IN_RING -> HELD at the next generation, which the taker holds. */
static int take_ownership(const struct pyshm_pool *pool, uint64_t index, struct pyshm_taken_block *out)
{
    int rc = pyshm_block_take(pool, index, PYSHM_BLOCK_IN_RING, &out->gen);
    if (rc < 0)
        return rc;
    out->pool = pool;
    out->index = index;
    return 0;
}

/* What an empty ring means once shutdown may have been set. */
static int empty_or_shutdown(const struct pyshm_block_ring *q)
{
    return pyshm_block_ring_shutdown_state(q) != PYSHM_RING_OPEN ? -ESHUTDOWN : -PYSHM_EEMPTY;
}

int pyshm_block_ring_dequeue(const struct pyshm_block_ring *q, struct pyshm_region *r, uint64_t min_size,
                             struct pyshm_taken_block *out)
{
    if (pyshm_block_ring_shutdown_state(q) == PYSHM_RING_SHUTDOWN_NOW)
        return -ESHUTDOWN;
    struct dequeue_check check = {.region = r, .min_size = min_size};
    uint64_t offset;
    uint64_t pos;
    int rc = pyshm_ring_claim(&q->ring, (q->flags & PYSHM_RING_F_SC_DEQ) != 0, &pos, &offset, check_head, &check);
    if (rc == -PYSHM_EEMPTY)
        return empty_or_shutdown(q);
    if (rc < 0)
        return rc;
    /* Taken before the slot is released (ring.h): garbage is dropped with the slot. */
    rc = check.found < 0 ? -PYSHM_ECORRUPT : take_ownership(check.pool, check.index, out);
    pyshm_ring_finish(&q->ring, pos, 1);
    pyshm_wait_notify(&q->ring.counters->not_full);
    return rc;
}

/* dequeue_burst without the shutdown check: the count of valid blocks taken, which is 0 when
 * every entry taken from the ring was garbage (dropped); or -PYSHM_EEMPTY, -PYSHM_ECORRUPT
 * (the ring's own counters are corrupt), -ENOMEM. max >= 1. */
static int64_t take_burst(const struct pyshm_block_ring *q, struct pyshm_region *r, struct pyshm_taken_block *out,
                          uint64_t max)
{
    uint64_t small[64];
    uint64_t *offsets = max <= 64 ? small : malloc(max * sizeof(*offsets));
    if (!offsets)
        return -ENOMEM;
    uint64_t pos = 0;
    int64_t n = pyshm_ring_claim_burst(&q->ring, &pos, offsets, max);
    int64_t taken = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct pyshm_pool *pool;
        uint64_t index;
        /* Holes are passed over, garbage entries dropped; the valid ones are delivered. */
        if (offsets[i] != PYSHM_RING_HOLE && pyshm_region_find_block(r, offsets[i], &pool, &index) == 0 &&
            take_ownership(pool, index, &out[taken]) == 0)
            taken++;
    }
    if (offsets != small)
        free(offsets);
    if (n < 0)
        return n;
    pyshm_ring_finish(&q->ring, pos, (uint64_t)n);
    pyshm_wait_notify(&q->ring.counters->not_full);
    return taken;
}

int64_t pyshm_block_ring_dequeue_burst(const struct pyshm_block_ring *q, struct pyshm_region *r,
                                       struct pyshm_taken_block *out, uint64_t max)
{
    if (pyshm_block_ring_shutdown_state(q) == PYSHM_RING_SHUTDOWN_NOW)
        return -ESHUTDOWN;
    if (max == 0)
        return 0;
    int64_t n = take_burst(q, r, out, max);
    if (n == 0)
        return -PYSHM_ECORRUPT; /* entries were taken, all of them garbage */
    return n == -PYSHM_EEMPTY ? empty_or_shutdown(q) : n;
}

int64_t pyshm_block_ring_drain(const struct pyshm_block_ring *q, struct pyshm_region *r)
{
    struct pyshm_taken_block taken[64];
    int64_t returned = 0;
    /* Each round takes at least one entry, so a full ring drains within capacity rounds;
     * the bound also ends the loop if garbage keeps the ring from draining. Garbage entries
     * are dropped and draining goes on; corrupt counters end it at once (each such failure
     * has already cost the ring's whole retry budget). */
    for (uint64_t round = 0; round <= q->ring.capacity; round++) {
        int64_t n = take_burst(q, r, taken, 64);
        if (n == -PYSHM_EEMPTY)
            return returned;
        if (n < 0)
            return n;
        for (int64_t i = 0; i < n; i++) {
            int rc = pyshm_pool_put(taken[i].pool, taken[i].index, &taken[i].gen);
            if (rc == 0)
                returned++;
            else if (rc != -PYSHM_ESTALE)
                return -PYSHM_ECORRUPT; /* a free queue that will not take it: stop here */
        }
    }
    return returned;
}

void pyshm_block_ring_shutdown(const struct pyshm_block_ring *q, int immediate)
{
    uint64_t want = immediate ? PYSHM_RING_SHUTDOWN_NOW : PYSHM_RING_SHUTDOWN;
    uint64_t seen = atomic_load_explicit(q->shutdown, memory_order_relaxed);
    /* Release: pairs with the acquire load in pyshm_block_ring_shutdown_state. */
    while (seen < want &&
           !atomic_compare_exchange_weak_explicit(q->shutdown, &seen, want, memory_order_release, memory_order_relaxed))
        ;
    pyshm_wait_wake_all(&q->ring.counters->not_empty);
    pyshm_wait_wake_all(&q->ring.counters->not_full);
}
