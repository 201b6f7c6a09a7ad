/* mempool.c - pools of fixed-size blocks, and moving blocks between queues and holders. */
#include "mempool.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "fault.h"
#include "region.h"

/* Blocks under a cache line are packed 8-byte aligned; larger ones start a cache line. */
static uint64_t stride_for(uint64_t elt_size)
{
    return elt_size < PYSHM_CACHE_LINE ? PYSHM_ALIGN_UP(elt_size, 8) : PYSHM_ALIGN_UP(elt_size, PYSHM_CACHE_LINE);
}

struct pool_layout {
    uint64_t stride, slots, states, holders, data, size; /* offsets relative to the pool object */
};

static int layout_of(uint64_t count, uint64_t elt_size, struct pool_layout *l)
{
    if (count == 0 || count > PYSHM_MAX_COUNT || elt_size == 0 || elt_size > PYSHM_MAX_ELT_SIZE)
        return -EINVAL;
    l->stride = stride_for(elt_size);
    l->slots = sizeof(struct pyshm_pool_shared);
    l->states = l->slots + count * sizeof(struct pyshm_ring_slot);
    l->holders = l->states + offsetof(struct pyshm_block_words, holder);
    l->data = PYSHM_ALIGN_UP(l->states + count * sizeof(struct pyshm_block_words), PYSHM_CACHE_LINE);
    /* count and stride are below 2^41: the product fits comfortably in 64 bits. */
    if (count > (UINT64_C(1) << 62) / l->stride)
        return -EINVAL;
    l->size = PYSHM_ALIGN_UP(l->data + count * l->stride, PYSHM_CACHE_LINE);
    return 0;
}

int pyshm_pool_footprint(uint64_t count, uint64_t elt_size, uint64_t *bytes)
{
    struct pool_layout l;
    int rc = layout_of(count, elt_size, &l);
    if (rc == 0)
        *bytes = l.size;
    return rc;
}

int pyshm_pool_create(struct pyshm_region *r, uint64_t count, uint64_t elt_size, uint32_t flags, const char *name,
                      uint64_t *offset)
{
    struct pool_layout l;
    int rc = layout_of(count, elt_size, &l);
    if (rc < 0 || (flags & ~(uint64_t)PYSHM_MEMPOOL_FLAGS))
        return -EINVAL;
    rc = pyshm_region_carve(r, l.size, PYSHM_KIND_POOL, name, offset);
    if (rc < 0)
        return rc;
    /* The header only: the free queue, states and holders are zero, which is a full pool. */
    struct pyshm_pool_shared *shared = (struct pyshm_pool_shared *)(r->base + *offset);
    shared->count = count;
    shared->elt_size = elt_size;
    shared->stride = l.stride;
    shared->flags = flags;
    shared->slots_offset = *offset + l.slots;
    shared->states_offset = *offset + l.states;
    shared->holders_offset = *offset + l.holders;
    shared->data_offset = *offset + l.data;
    pyshm_region_publish(r, *offset);
    return 0;
}

int pyshm_pool_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_pool *out)
{
    if (offset % PYSHM_CACHE_LINE != 0 || !pyshm_region_contains(r, offset, sizeof(struct pyshm_pool_shared)))
        return -PYSHM_ECORRUPT;
    struct pyshm_pool_shared *shared = (struct pyshm_pool_shared *)(r->base + offset);
    /* Read every field once; validate the copies, never the shared originals. */
    struct pyshm_object_header object = shared->object;
    uint64_t count = shared->count, elt_size = shared->elt_size, flags = shared->flags, stride = shared->stride;
    uint64_t slots = shared->slots_offset, states = shared->states_offset, holders = shared->holders_offset;
    uint64_t data = shared->data_offset;
    struct pool_layout l;
    if (object.magic != PYSHM_OBJECT_MAGIC || object.kind != PYSHM_KIND_POOL ||
        object.layout_version != PYSHM_LAYOUT_VERSION || (flags & ~(uint64_t)PYSHM_MEMPOOL_FLAGS) ||
        layout_of(count, elt_size, &l) < 0)
        return -PYSHM_ECORRUPT;
    /* The layout is a function of the geometry: any other offsets were not written by us. */
    if (object.size != l.size || slots != offset + l.slots || states != offset + l.states ||
        holders != offset + l.holders || data != offset + l.data || stride != l.stride ||
        !pyshm_region_contains(r, offset, l.size))
        return -PYSHM_ECORRUPT;
    memset(out, 0, sizeof(*out));
    out->offset = offset;
    out->count = count;
    out->elt_size = elt_size;
    out->stride = l.stride;
    out->flags = (uint32_t)flags;
    out->data_offset = offset + l.data;
    out->data = r->base + offset + l.data;
    out->words = (struct pyshm_block_words *)(r->base + offset + l.states);
    out->lapped = &shared->lapped;
    pyshm_queue_init(&out->free_queue, &shared->free_queue, (struct pyshm_ring_slot *)(r->base + offset + l.slots),
                     count, 1, offset + offsetof(struct pyshm_pool_shared, free_queue));
    return 0;
}

/* Once the consumers' head has passed count, every block has been out. */
static void note_lap(const struct pyshm_pool *p)
{
    if (!atomic_load_explicit(p->lapped, memory_order_relaxed) &&
        pyshm_ring_head(&p->free_queue.ring, PYSHM_RING_DEQ, memory_order_relaxed) >= p->count)
        atomic_store_explicit(p->lapped, 1, memory_order_relaxed);
}

uint64_t pyshm_pool_touched(const struct pyshm_pool *p)
{
    /* The first lap of the free queue hands out blocks 0, 1, 2, ... and every block put
     * back was handed out before: no block at or past the consumers' head was ever out. */
    if (atomic_load_explicit(p->lapped, memory_order_acquire))
        return p->count;
    uint64_t head = pyshm_ring_head(&p->free_queue.ring, PYSHM_RING_DEQ, memory_order_acquire);
    return head < p->count ? head : p->count;
}

/* The one body of every take (pyshm_blocks_take): inlined where its callers pass
 * constants, so that the single-block path of get() and dequeue() is compiled for one. */
static PYSHM_ALWAYS_INLINE int64_t take_blocks(const struct pyshm_queue *q, struct pyshm_member *m, uint64_t max,
                                               enum pyshm_block_kind from, pyshm_block_resolver resolve,
                                               void *resolve_ctx, pyshm_queue_check check, void *check_ctx,
                                               struct pyshm_block *blocks)
{
    if (max > q->ring.capacity)
        max = q->ring.capacity;
    for (uint64_t rounds = 0; rounds <= q->ring.capacity; rounds++) {
        uint64_t pos;
        int64_t n = pyshm_queue_claim(q, m, PYSHM_RING_DEQ, 1, max, &pos, check, check_ctx);
        if (n < 0)
            return n;
        uint64_t holes = 0, taken = 0;
        for (int64_t i = 0; i < n; i++) {
            uint64_t value = pyshm_queue_value(q, pos + (uint64_t)i);
            if (value == PYSHM_QUEUE_HOLE) {
                holes++;
                continue;
            }
            const struct pyshm_pool *pool;
            uint64_t index;
            if (resolve(resolve_ctx, value, &pool, &index) == 0) {
                blocks[taken].pool = pool;
                blocks[taken].index = index;
                taken++;
            }
        }
        /* Raised before the takes: an upper bound at every instant (member.h). */
        pyshm_member_held_add(m, (int64_t)taken);
        uint64_t kept = 0;
        for (uint64_t i = 0; i < taken; i++)
            if (pyshm_block_take(blocks[i].pool, blocks[i].index, from, m->holder, &blocks[i].gen) == 0)
                blocks[kept++] = blocks[i];
        if (kept < taken)
            pyshm_member_held_add(m, -(int64_t)(taken - kept));
        /* Taken before released: a block is in a slot or on record as held, always. */
        for (int64_t i = 0; i < n; i++)
            pyshm_queue_release(q, pos + (uint64_t)i);
        pyshm_queue_finish(q, m, PYSHM_RING_DEQ);
        if (kept > 0)
            return (int64_t)kept;
        if (holes < (uint64_t)n)
            return -PYSHM_ECORRUPT; /* only garbage: dropped, so the queue goes on */
        /* Only holes (positions of dead producers): passed over, look again. */
    }
    return -PYSHM_ECORRUPT;
}

static int by_place(const void *a, const void *b)
{
    const struct pyshm_block *x = a, *y = b;
    uint64_t px = x->pool->offset, py = y->pool->offset;
    if (px != py)
        return px < py ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Whether a block is listed twice (an all-or-none hand-over must refuse it up front). */
static int listed_twice(const struct pyshm_block *blocks, uint64_t n)
{
    /* First a bitmap of places: a batch of distinct blocks (get_many hands out neighbours)
     * rarely collides in it, and only a collision needs the exact answer below. */
    uint64_t seen[64] = {0};
    int collided = 0;
    for (uint64_t i = 0; i < n && !collided; i++) {
        uint64_t h = (blocks[i].index ^ (blocks[i].pool->offset >> 6)) & 4095;
        collided = (seen[h >> 6] >> (h & 63)) & 1;
        seen[h >> 6] |= UINT64_C(1) << (h & 63);
    }
    if (!collided)
        return 0;
    struct pyshm_block small[16];
    struct pyshm_block *sorted = n <= 16 ? small : malloc(n * sizeof(*sorted));
    if (!sorted)
        return 0; /* cannot tell: a duplicate then fails its CAS, reported as corruption */
    memcpy(sorted, blocks, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), by_place);
    int twice = 0;
    for (uint64_t i = 1; i < n && !twice; i++)
        twice = by_place(&sorted[i - 1], &sorted[i]) == 0;
    if (sorted != small)
        free(sorted);
    return twice;
}

/* The one body of every hand-over (pyshm_blocks_hand_over), inlined like take_blocks. */
static PYSHM_ALWAYS_INLINE int hand_over_blocks(const struct pyshm_queue *q, struct pyshm_member *m,
                                                const struct pyshm_block *blocks, uint64_t n,
                                                enum pyshm_block_kind to, int by_offset)
{
    if (n == 0)
        return 0;
    if (n > q->ring.capacity)
        return -PYSHM_EFULL;
    /* Everything that can refuse, before anything moves. Only the holder changes a HELD
     * block, so what is checked here still holds at the gives below. */
    for (uint64_t i = 0; i < n; i++) {
        int rc = pyshm_block_check_held(blocks[i].pool, blocks[i].index, blocks[i].gen, m->holder);
        if (rc < 0)
            return rc;
    }
    if (n > 1 && listed_twice(blocks, n))
        return -PYSHM_ESTALE; /* the second one would not be held any more */
    uint64_t pos;
    int64_t claimed = pyshm_queue_claim(q, m, PYSHM_RING_ENQ, n, n, &pos, NULL, NULL);
    if (claimed < 0)
        return (int)claimed;
    /* Staged first: from here on each position names its block (ring.h). */
    for (uint64_t i = 0; i < n; i++) {
        const struct pyshm_block *b = &blocks[i];
        pyshm_queue_stage(q, pos + i, by_offset ? pyshm_pool_block_offset(b->pool, b->index) : b->index);
    }
    for (uint64_t i = 0; i < n; i++) {
        const struct pyshm_block *b = &blocks[i];
        pyshm_block_give(&b->pool->words[b->index].state, b->gen, to);
        PYSHM_FAULT("block.give.done");
    }
    /* Lowered after the gives: an upper bound at every instant (member.h). */
    pyshm_member_held_add(m, -(int64_t)n);
    for (uint64_t i = 0; i < n; i++)
        pyshm_queue_publish(q, pos + i);
    pyshm_queue_finish(q, m, PYSHM_RING_ENQ);
    return 0;
}

int64_t pyshm_blocks_take(const struct pyshm_queue *q, struct pyshm_member *m, uint64_t max,
                          enum pyshm_block_kind from, pyshm_block_resolver resolve, void *resolve_ctx,
                          pyshm_queue_check check, void *check_ctx, struct pyshm_block *blocks)
{
    if (max == 1)
        return take_blocks(q, m, 1, from, resolve, resolve_ctx, check, check_ctx, blocks);
    return take_blocks(q, m, max, from, resolve, resolve_ctx, check, check_ctx, blocks);
}

int pyshm_blocks_hand_over(const struct pyshm_queue *q, struct pyshm_member *m, const struct pyshm_block *blocks,
                           uint64_t n, enum pyshm_block_kind to, int by_offset)
{
    if (n == 1)
        return hand_over_blocks(q, m, blocks, 1, to, by_offset);
    return hand_over_blocks(q, m, blocks, n, to, by_offset);
}

/* Values of a pool's own free queue are block indices. */
static int resolve_index(void *ctx, uint64_t value, const struct pyshm_pool **pool, uint64_t *index)
{
    *pool = ctx;
    *index = value;
    return 0;
}

int64_t pyshm_pool_get(const struct pyshm_pool *p, struct pyshm_member *m, struct pyshm_block *blocks, uint64_t max)
{
    /* Before the take: a get that starts at or past count marks the pool lapped, long
     * before the counter could wrap (count is at most 2^40). */
    note_lap(p);
    if (max == 1)
        return take_blocks(&p->free_queue, m, 1, PYSHM_BLOCK_FREE, resolve_index, (void *)p, NULL, NULL, blocks);
    if (max == 0)
        return 0;
    return take_blocks(&p->free_queue, m, max, PYSHM_BLOCK_FREE, resolve_index, (void *)p, NULL, NULL, blocks);
}

int pyshm_pool_put(const struct pyshm_pool *p, struct pyshm_member *m, const struct pyshm_block *blocks, uint64_t n,
                   uint64_t patience_ns)
{
    for (uint64_t i = 0; i < n; i++)
        if (blocks[i].pool != p && blocks[i].pool->offset != p->offset)
            return -EINVAL;
    /* Only blocks the caller holds at that generation (a refused put must not wipe
     * anyone's data): nobody else reads or writes them meanwhile. */
    if (p->flags & PYSHM_MEMPOOL_F_RETURN_PAGES)
        for (uint64_t i = 0; i < n; i++)
            if (blocks[i].index < p->count &&
                pyshm_block_check_held(p, blocks[i].index, blocks[i].gen, m->holder) == 0)
                pyshm_region_return_pages(p->data + blocks[i].index * p->stride, p->elt_size);
    /*
     * The free queue has a slot for every block, yet it can read as full for a moment: a
     * slot we need may still be in the hands of a get() that claimed it and has not yet
     * released it (a few instructions, longer if that process was descheduled, for ever
     * if it died: repair). Give it some chances, yielding the CPU, then report.
     */
    uint64_t deadline = 0;
    for (unsigned attempt = 0;; attempt++) {
        int rc = n == 1 ? hand_over_blocks(&p->free_queue, m, blocks, 1, PYSHM_BLOCK_FREE, 0)
                        : hand_over_blocks(&p->free_queue, m, blocks, n, PYSHM_BLOCK_FREE, 0);
        if (rc != -PYSHM_EFULL)
            return rc;
        if (attempt < 16)
            continue;
        /* A bound in time, not in attempts: with other processes runnable, one yield can
         * cost a whole time slice. */
        uint64_t now = pyshm_now_ns();
        if (attempt == 16)
            deadline = now + patience_ns;
        else if (now >= deadline)
            return -EAGAIN;
        sched_yield();
    }
}
