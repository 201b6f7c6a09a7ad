/* block_ring.c - moving blocks through a Ring, with their ownership. */
#include "block_ring.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "errors.h"
#include "region.h"

/* How long a drain waits for a free queue blocked by an unfinished get. */
#define DRAIN_PATIENCE_NS UINT64_C(1000000000)

static int layout_of(uint64_t capacity, uint64_t *bytes)
{
    if (capacity == 0 || capacity > PYSHM_MAX_RING_CAPACITY)
        return -EINVAL;
    *bytes = PYSHM_ALIGN_UP(sizeof(struct pyshm_block_ring_shared) + capacity * sizeof(struct pyshm_ring_slot),
                            PYSHM_CACHE_LINE);
    return 0;
}

int pyshm_block_ring_footprint(uint64_t capacity, uint64_t *bytes) { return layout_of(capacity, bytes); }

int pyshm_block_ring_create(struct pyshm_region *r, uint64_t capacity, uint32_t flags, const char *name,
                            uint64_t *offset)
{
    uint64_t size;
    int rc = layout_of(capacity, &size);
    if (rc < 0 || (flags & ~(uint64_t)PYSHM_BLOCK_RING_FLAGS))
        return -EINVAL;
    rc = pyshm_region_carve(r, size, PYSHM_KIND_RING, name, offset);
    if (rc < 0)
        return rc;
    /* The header only: zero slots and counters are an empty, open ring. */
    struct pyshm_block_ring_shared *shared = (struct pyshm_block_ring_shared *)(r->base + *offset);
    shared->capacity = capacity;
    shared->flags = flags;
    shared->slots_offset = *offset + sizeof(struct pyshm_block_ring_shared);
    pyshm_region_publish(r, *offset);
    return 0;
}

int pyshm_block_ring_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_block_ring *out)
{
    if (offset % PYSHM_CACHE_LINE != 0 || !pyshm_region_contains(r, offset, sizeof(struct pyshm_block_ring_shared)))
        return -PYSHM_ECORRUPT;
    struct pyshm_block_ring_shared *shared = (struct pyshm_block_ring_shared *)(r->base + offset);
    /* Read every field once; validate the copies, never the shared originals. */
    struct pyshm_object_header object = shared->object;
    uint64_t capacity = shared->capacity, flags = shared->flags, slots = shared->slots_offset, size;
    if (object.magic != PYSHM_OBJECT_MAGIC || object.kind != PYSHM_KIND_RING ||
        object.layout_version != PYSHM_LAYOUT_VERSION || (flags & ~(uint64_t)PYSHM_BLOCK_RING_FLAGS) ||
        layout_of(capacity, &size) < 0 || object.size != size || !pyshm_region_contains(r, offset, size) ||
        slots != offset + sizeof(struct pyshm_block_ring_shared))
        return -PYSHM_ECORRUPT;
    out->offset = offset;
    out->flags = (uint32_t)flags;
    out->shutdown = &shared->shutdown;
    pyshm_queue_init(&out->queue, &shared->queue, (struct pyshm_ring_slot *)(r->base + slots), capacity, 0,
                     offset + offsetof(struct pyshm_block_ring_shared, queue));
    return 0;
}

int pyshm_block_ring_enqueue(const struct pyshm_block_ring *q, struct pyshm_member *m, const struct pyshm_block *blocks,
                             uint64_t n)
{
    if (pyshm_block_ring_shutdown_state(q) != PYSHM_BLOCK_RING_OPEN)
        return -ESHUTDOWN;
    return pyshm_blocks_hand_over(&q->queue, m, blocks, n, PYSHM_BLOCK_IN_RING, 1);
}

struct lookup {
    struct pyshm_pool_table *table;
    const struct pyshm_region *region;
    uint64_t min_size;
    int too_small;
    int failed; /* 0, or -ENOMEM from the table */
};

/* Values of a Ring are block offsets: only the pool table turns them into blocks. */
static int resolve_offset(void *ctx, uint64_t value, const struct pyshm_pool **pool, uint64_t *index)
{
    struct lookup *l = ctx;
    int rc = pyshm_pool_table_find(l->table, l->region, value, pool, index);
    if (rc == -ENOMEM)
        l->failed = rc;
    return rc;
}

/* Before a claim of the head (single dequeue with a size): the oldest block must be big
 * enough, or it stays where it is. Garbage is claimed anyway, to be dropped. */
static int big_enough(void *ctx, uint64_t value)
{
    struct lookup *l = ctx;
    const struct pyshm_pool *pool;
    uint64_t index;
    if (value != PYSHM_QUEUE_HOLE && resolve_offset(l, value, &pool, &index) == 0 && pool->elt_size < l->min_size) {
        l->too_small = 1;
        return 1;
    }
    return 0;
}

/* What an empty ring means once shutdown may have been set. */
static int64_t empty_or_shutdown(const struct pyshm_block_ring *q)
{
    return pyshm_block_ring_shutdown_state(q) != PYSHM_BLOCK_RING_OPEN ? -ESHUTDOWN : -PYSHM_EEMPTY;
}

static int64_t take(const struct pyshm_block_ring *q, struct pyshm_member *m, struct lookup *l, uint64_t max,
                    struct pyshm_block *out)
{
    int64_t n = pyshm_blocks_take(&q->queue, m, max, PYSHM_BLOCK_IN_RING, resolve_offset, l,
                                  l->min_size ? big_enough : NULL, l, out);
    if (l->failed)
        return l->failed;
    if (n == -PYSHM_EEMPTY && l->too_small)
        return -PYSHM_ETOOBIG;
    return n;
}

int64_t pyshm_block_ring_dequeue(const struct pyshm_block_ring *q, struct pyshm_member *m, struct pyshm_pool_table *t,
                                 const struct pyshm_region *r, uint64_t min_size, uint64_t max, struct pyshm_block *out)
{
    if (pyshm_block_ring_shutdown_state(q) == PYSHM_BLOCK_RING_SHUTDOWN_NOW)
        return -ESHUTDOWN;
    if (max == 0)
        return 0;
    struct lookup l = {t, r, min_size, 0, 0};
    int64_t n = take(q, m, &l, min_size ? 1 : max, out);
    return n == -PYSHM_EEMPTY ? empty_or_shutdown(q) : n;
}

int64_t pyshm_block_ring_drain(const struct pyshm_block_ring *q, struct pyshm_member *m, struct pyshm_pool_table *t,
                               const struct pyshm_region *r)
{
    struct pyshm_block taken[64];
    int64_t returned = 0;
    /* Each round takes at least one entry, so a full ring drains within capacity rounds;
     * the bound also ends the loop if garbage keeps coming. */
    for (uint64_t round = 0; round <= q->queue.ring.capacity; round++) {
        struct lookup l = {t, r, 0, 0, 0};
        uint64_t head = pyshm_ring_head(&q->queue.ring, PYSHM_RING_DEQ, memory_order_relaxed);
        int64_t n = take(q, m, &l, 64, taken);
        if (n == -PYSHM_EEMPTY)
            return returned;
        if (n == -PYSHM_ECORRUPT && pyshm_ring_head(&q->queue.ring, PYSHM_RING_DEQ, memory_order_relaxed) != head)
            continue; /* garbage entries, dropped: the drain goes on */
        if (n < 0)
            return n; /* the counters or slots are garbage: no use spinning on */
        for (int64_t i = 0; i < n; i++) {
            int rc = pyshm_pool_put(taken[i].pool, m, &taken[i], 1, DRAIN_PATIENCE_NS);
            if (rc == 0) {
                returned++;
                continue;
            }
            /* A free queue that will not take it now: back into the ring, rather than left
             * in this process's hands; the next drain goes on. */
            pyshm_blocks_hand_over(&q->queue, m, &taken[i], (uint64_t)(n - i), PYSHM_BLOCK_IN_RING, 1);
            return rc == -EAGAIN ? -EAGAIN : -PYSHM_ECORRUPT;
        }
    }
    return returned;
}

void pyshm_block_ring_shutdown(const struct pyshm_block_ring *q, int immediate)
{
    uint64_t want = immediate ? PYSHM_BLOCK_RING_SHUTDOWN_NOW : PYSHM_BLOCK_RING_SHUTDOWN;
    uint64_t seen = atomic_load_explicit(q->shutdown, memory_order_relaxed);
    /* Release: pairs with the acquire load in pyshm_block_ring_shutdown_state. */
    while (seen < want &&
           !atomic_compare_exchange_weak_explicit(q->shutdown, &seen, want, memory_order_release, memory_order_relaxed))
        ;
    pyshm_wait_wake_all(&q->queue.shared->not_empty);
    pyshm_wait_wake_all(&q->queue.shared->not_full);
}
