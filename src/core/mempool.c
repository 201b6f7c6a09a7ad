/* mempool.c - building, validating and using a pool of fixed-size blocks. */
#include "mempool.h"

#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <string.h>

#include "fault.h"
#include "process.h"
#include "region.h"
#include "wait.h"

/* How long a put waits for a get that holds a slot of the free queue it needs. */
#define PYSHM_PUT_PATIENCE_MS 200u

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
    l->holders = l->states + count * sizeof(pyshm_atomic64);
    l->data = PYSHM_ALIGN_UP(l->holders + count * sizeof(pyshm_atomic64), PYSHM_CACHE_LINE);
    /* count and stride are below 2^41, so the product fits comfortably in 64 bits. */
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

static void fill_handle(const struct pyshm_region *r, uint64_t offset, uint64_t count, uint64_t elt_size,
                        uint32_t flags, const struct pool_layout *l, struct pyshm_pool *p)
{
    struct pyshm_pool_shared *shared = (struct pyshm_pool_shared *)(r->base + offset);
    p->offset = offset;
    p->count = count;
    p->elt_size = elt_size;
    p->stride = l->stride;
    p->flags = flags;
    p->data_offset = offset + l->data;
    p->data = r->base + offset + l->data;
    p->states = (pyshm_atomic64 *)(r->base + offset + l->states);
    p->holders = (pyshm_atomic64 *)(r->base + offset + l->holders);
    p->free_queue.counters = &shared->free_queue;
    p->free_queue.slots = (struct pyshm_ring_slot *)(r->base + offset + l->slots);
    p->free_queue.capacity = count;
    /* The announcer is this process's cache of its table entry: mutable, not shared. */
    p->free_queue.announcer = (struct pyshm_announcer *)&r->announcer;
    p->free_queue.id = offset + offsetof(struct pyshm_pool_shared, free_queue);
}

static uint64_t identity(uint64_t i) { return i; }

int pyshm_pool_create(struct pyshm_region *r, uint64_t count, uint64_t elt_size, uint32_t flags,
                      const char *name, struct pyshm_pool *out)
{
    struct pool_layout l;
    int rc = layout_of(count, elt_size, &l);
    if (rc < 0 || (flags & ~(uint64_t)PYSHM_MEMPOOL_FLAGS))
        return -EINVAL;
    uint64_t offset;
    rc = pyshm_region_carve(r, l.size, PYSHM_KIND_POOL, name, &offset);
    if (rc < 0)
        return rc;
    struct pyshm_pool_shared *shared = (struct pyshm_pool_shared *)(r->base + offset);
    shared->count = count;
    shared->elt_size = elt_size;
    shared->stride = l.stride;
    shared->flags = flags;
    shared->slots_offset = offset + l.slots;
    shared->states_offset = offset + l.states;
    shared->data_offset = offset + l.data;
    shared->holders_offset = offset + l.holders;
    fill_handle(r, offset, count, elt_size, flags, &l, out);
    /* A fresh mapping is zero: every block is FREE at generation 0 already. */
    for (uint64_t i = 0; i < count; i++)
        atomic_store_explicit(&out->states[i], pyshm_block_state(0, PYSHM_BLOCK_FREE), memory_order_relaxed);
    pyshm_ring_init_full(&out->free_queue, identity);
    rc = pyshm_region_add_pool(r, out);
    if (rc < 0)
        return rc;
    pyshm_region_publish(r, offset);
    return 0;
}

int pyshm_pool_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_pool *out)
{
    if (offset % PYSHM_CACHE_LINE != 0 || offset > r->size || r->size - offset < sizeof(struct pyshm_pool_shared))
        return -PYSHM_ECORRUPT;
    const struct pyshm_pool_shared *shared = (const struct pyshm_pool_shared *)(r->base + offset);
    /* Read every field once; validate the copies, never the shared originals. */
    struct pyshm_object_header object = shared->object;
    uint64_t count = shared->count, elt_size = shared->elt_size, flags = shared->flags;
    uint64_t slots = shared->slots_offset, states = shared->states_offset, data = shared->data_offset;
    uint64_t holders = shared->holders_offset;
    struct pool_layout l;
    if (object.magic != PYSHM_OBJECT_MAGIC || object.kind != PYSHM_KIND_POOL ||
        object.layout_version != PYSHM_LAYOUT_VERSION || (flags & ~(uint64_t)PYSHM_MEMPOOL_FLAGS) ||
        layout_of(count, elt_size, &l) < 0)
        return -PYSHM_ECORRUPT;
    /* The layout is a function of the geometry: any other offsets were not written by us. */
    if (object.size != l.size || slots != offset + l.slots || states != offset + l.states ||
        data != offset + l.data || holders != offset + l.holders || shared->stride != l.stride ||
        l.size > r->size - offset)
        return -PYSHM_ECORRUPT;
    fill_handle(r, offset, count, elt_size, (uint32_t)flags, &l, out);
    return 0;
}

int pyshm_block_transition(pyshm_atomic64 *state, enum pyshm_block_kind from, uint64_t gen,
                           enum pyshm_block_kind to)
{
    uint64_t expected = pyshm_block_state(gen, from);
    /* S1: acq_rel, see mempool.h. */
    if (atomic_compare_exchange_strong_explicit(state, &expected, pyshm_block_state(gen + 1, to),
                                                memory_order_acq_rel, memory_order_relaxed))
        return 0;
    return -PYSHM_ESTALE;
}

int pyshm_block_take(const struct pyshm_pool *p, uint64_t index, enum pyshm_block_kind from, uint64_t *gen)
{
    if (index >= p->count)
        return -PYSHM_ECORRUPT;
    /* The queue gave us this index alone; its state must say where it came from. */
    uint64_t state = atomic_load_explicit(&p->states[index], memory_order_relaxed);
    if (pyshm_block_kind_of(state) != from)
        return -PYSHM_ECORRUPT;
    uint64_t g = pyshm_block_gen_of(state);
    /* S2: the holder word first; the release CAS below publishes it with the state. */
    atomic_store_explicit(&p->holders[index], pyshm_holder_self(), memory_order_relaxed);
    PYSHM_FAULT("block.take.holder");
    if (pyshm_block_transition(&p->states[index], from, g, PYSHM_BLOCK_HELD) < 0)
        return -PYSHM_ECORRUPT;
    PYSHM_FAULT("block.take.done");
    *gen = g + 1;
    return 0;
}

/* A block index fresh out of the free queue: FREE -> HELD at the next generation. */
static int take_free_block(const struct pyshm_pool *p, uint64_t idx, uint64_t *gen)
{
    return pyshm_block_take(p, idx, PYSHM_BLOCK_FREE, gen);
}

/* Blocks are taken before their queue slots are released (ring.h, claim then finish),
 * so a block is always either in a slot or held by someone on record (repair.h). */
int pyshm_pool_get(const struct pyshm_pool *p, uint64_t *index, uint64_t *gen)
{
    uint64_t pos;
    int rc = pyshm_ring_claim(&p->free_queue, (p->flags & PYSHM_MEMPOOL_F_SC_GET) != 0, &pos, index, NULL, NULL);
    if (rc < 0)
        return rc;
    rc = take_free_block(p, *index, gen);
    pyshm_ring_finish(&p->free_queue, pos, 1); /* a garbage index is dropped */
    return rc;
}

int64_t pyshm_pool_get_burst(const struct pyshm_pool *p, uint64_t *indices, uint64_t *gens, uint64_t max)
{
    if (max == 0)
        return 0;
    uint64_t pos;
    int64_t n = pyshm_ring_claim_burst(&p->free_queue, &pos, indices, max);
    if (n <= 0)
        return n;
    int64_t taken = 0;
    for (int64_t i = 0; i < n; i++) {
        /* Holes are passed over, garbage indices dropped; the valid blocks are handed out
         * (a claim is never only holes: ring.h). */
        if (indices[i] != PYSHM_RING_HOLE && take_free_block(p, indices[i], &gens[taken]) == 0)
            indices[taken++] = indices[i];
    }
    pyshm_ring_finish(&p->free_queue, pos, (uint64_t)n);
    return taken > 0 ? taken : -PYSHM_ECORRUPT;
}

/* Undo HELD -> FREE for the first n blocks; their generations move on by two. */
static void hold_again(const struct pyshm_pool *p, const uint64_t *indices, uint64_t *gens, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (pyshm_block_transition(&p->states[indices[i]], PYSHM_BLOCK_FREE, gens[i] + 1, PYSHM_BLOCK_HELD) == 0)
            gens[i] += 2;
}

int pyshm_pool_put_burst(const struct pyshm_pool *p, const uint64_t *indices, uint64_t *gens, uint64_t n)
{
    uint64_t freed = 0;
    int rc = 0;
    for (; freed < n; freed++) {
        if (indices[freed] >= p->count) {
            rc = -EINVAL;
            break;
        }
        rc = pyshm_block_transition(&p->states[indices[freed]], PYSHM_BLOCK_HELD, gens[freed], PYSHM_BLOCK_FREE);
        if (rc < 0)
            break;
        PYSHM_FAULT("pool.put.freed");
    }
    if (rc < 0) {
        hold_again(p, indices, gens, freed);
        return rc;
    }
    /*
     * The free queue has a slot for every block, yet it can read as full for a moment: a
     * slot we need may still be in the hands of a get() that claimed it and has not yet
     * released it (a few instructions, longer if that process was descheduled). Give it
     * a bounded number of chances, yielding the CPU, then undo and report.
     */
    uint64_t deadline = 0;
    for (unsigned attempt = 0;; attempt++) {
        if (n == 1)
            rc = (p->flags & PYSHM_MEMPOOL_F_SP_PUT) ? pyshm_ring_enqueue_sp(&p->free_queue, indices[0])
                                                      : pyshm_ring_enqueue_mp(&p->free_queue, indices[0]);
        else
            rc = pyshm_ring_enqueue_burst(&p->free_queue, indices, n);
        if (rc == 0) {
            pyshm_wait_notify(&p->free_queue.counters->not_empty);
            return 0;
        }
        if (rc != -PYSHM_EFULL)
            return rc;
        if (attempt < 16)
            continue;
        /* A bound in time, not in attempts: with other processes runnable, one yield
         * can cost a whole time slice. */
        uint64_t now = pyshm_now_ns();
        if (attempt == 16)
            deadline = now + PYSHM_PUT_PATIENCE_MS * UINT64_C(1000000);
        else if (now >= deadline)
            break;
        sched_yield();
    }
    hold_again(p, indices, gens, n);
    return -EAGAIN;
}

int64_t pyshm_pool_reclaim(const struct pyshm_pool *p)
{
    int64_t freed = 0;
    uint64_t gone_holder = 0; /* the last holder found gone: blocks come in runs */
    for (uint64_t i = 0; i < p->count; i++) {
        /* S2 acquire: pairs with the release CAS in pyshm_block_take. */
        uint64_t state = atomic_load_explicit(&p->states[i], memory_order_acquire);
        if (pyshm_block_kind_of(state) != PYSHM_BLOCK_HELD)
            continue;
        uint64_t holder = atomic_load_explicit(&p->holders[i], memory_order_relaxed);
        /* 0 means nobody recorded a holder: never reclaim on a guess. */
        if (holder == 0 || (holder != gone_holder && !pyshm_holder_is_gone(holder)))
            continue;
        gone_holder = holder;
        /* The CAS fails if the block changed hands since we looked: then it is not ours. */
        uint64_t gen = pyshm_block_gen_of(state);
        int rc = pyshm_pool_put(p, i, &gen);
        if (rc == 0)
            freed++;
        else if (rc == -EAGAIN)
            return freed; /* the free queue will not take it now; a later call goes on */
        else if (rc != -PYSHM_ESTALE)
            return rc;
    }
    return freed;
}

int pyshm_pool_put(const struct pyshm_pool *p, uint64_t index, uint64_t *held_gen)
{
    return pyshm_pool_put_burst(p, &index, held_gen, 1);
}
