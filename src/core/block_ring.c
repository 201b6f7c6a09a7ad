/* block_ring.c - moving blocks through a ring, with their ownership. */
#include "block_ring.h"

#include <errno.h>

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
    q->ring.counters = &shared->counters;
    q->ring.slots = (struct pyshm_ring_slot *)(r->base + offset + sizeof(struct pyshm_ring_shared));
    q->ring.capacity = capacity;
}

int pyshm_block_ring_create(struct pyshm_region *r, uint64_t capacity, uint32_t flags,
                            struct pyshm_block_ring *out)
{
    uint64_t size, offset;
    int rc = layout_of(capacity, &size);
    if (rc < 0 || (flags & ~PYSHM_RING_FLAGS))
        return -EINVAL;
    rc = pyshm_region_carve(r, size, PYSHM_KIND_RING, &offset);
    if (rc < 0)
        return rc;
    struct pyshm_ring_shared *shared = (struct pyshm_ring_shared *)(r->base + offset);
    shared->capacity = capacity;
    shared->flags = flags;
    shared->slots_offset = offset + sizeof(struct pyshm_ring_shared);
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
    struct pyshm_object_header object = shared->object;
    uint64_t capacity = shared->capacity, flags = shared->flags, slots = shared->slots_offset, size;
    if (object.magic != PYSHM_OBJECT_MAGIC || object.kind != PYSHM_KIND_RING ||
        object.layout_version != PYSHM_LAYOUT_VERSION || (flags & ~PYSHM_RING_FLAGS) ||
        layout_of(capacity, &size) < 0 || object.size != size || size > r->size - offset ||
        slots != offset + sizeof(struct pyshm_ring_shared))
        return -PYSHM_ECORRUPT;
    fill_handle(r, offset, capacity, (uint32_t)flags, out);
    return 0;
}

int pyshm_block_ring_enqueue(const struct pyshm_block_ring *q, const struct pyshm_pool *pool, uint64_t index,
                             uint64_t *gen)
{
    if (index >= pool->count)
        return -EINVAL;
    pyshm_atomic64 *state = &pool->states[index];
    /* Ownership first: a consumer that sees the offset must find IN_RING. */
    int rc = pyshm_block_transition(state, PYSHM_BLOCK_HELD, *gen, PYSHM_BLOCK_IN_RING);
    if (rc < 0)
        return rc;
    uint64_t offset = pyshm_pool_block_offset(pool, index);
    rc = (q->flags & PYSHM_RING_F_SP_ENQ) ? pyshm_ring_enqueue_sp(&q->ring, offset)
                                          : pyshm_ring_enqueue_mp(&q->ring, offset);
    if (rc == 0)
        return 0;
    /* Not queued: nobody else can have seen the block, take it back. */
    if (pyshm_block_transition(state, PYSHM_BLOCK_IN_RING, *gen + 1, PYSHM_BLOCK_HELD) < 0)
        return -PYSHM_ECORRUPT;
    *gen += 2;
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

int pyshm_block_ring_dequeue(const struct pyshm_block_ring *q, struct pyshm_region *r, uint64_t min_size,
                             struct pyshm_taken_block *out)
{
    struct dequeue_check check = {.region = r, .min_size = min_size};
    uint64_t offset;
    int rc = (q->flags & PYSHM_RING_F_SC_DEQ) ? pyshm_ring_dequeue_sc(&q->ring, &offset, check_head, &check)
                                              : pyshm_ring_dequeue_mc(&q->ring, &offset, check_head, &check);
    if (rc < 0)
        return rc;
    if (check.found < 0)
        return -PYSHM_ECORRUPT;
    pyshm_atomic64 *state = &check.pool->states[check.index];
    uint64_t seen = atomic_load_explicit(state, memory_order_relaxed);
    if (pyshm_block_kind_of(seen) != PYSHM_BLOCK_IN_RING ||
        pyshm_block_transition(state, PYSHM_BLOCK_IN_RING, pyshm_block_gen_of(seen), PYSHM_BLOCK_HELD) < 0)
        return -PYSHM_ECORRUPT;
    out->pool = check.pool;
    out->index = check.index;
    out->gen = pyshm_block_gen_of(seen) + 1;
    return 0;
}
