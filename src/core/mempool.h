/*
 * mempool.h - fixed-size blocks carved from a region, and the state of every block.
 *
 * A pool object in the region:
 *
 *   struct pyshm_pool_shared     object header, geometry, free-queue counters
 *   free-queue slots             count x struct pyshm_ring_slot (a ring.h FIFO of indices)
 *   block states                 count x 64-bit state word
 *   block holders                count x 64-bit holder word (process.h)
 *   block data                   count x stride bytes, 64-byte aligned
 *
 * Free blocks wait in a ring.h FIFO of block indices, so get() hands out the block that
 * has been free longest and put() queues a block at the back.
 *
 * Each block's state word lives in shared memory so misuse is caught across processes:
 *
 *   state = generation << 2 | kind,  kind in { FREE, HELD, IN_RING }
 *
 * Every change of owner is one CAS from (kind, gen) to (next kind, gen + 1). A holder
 * remembers the generation at which it got the block; a put or enqueue from a stale copy
 * of a view (a fork child's, say) names an old generation, its CAS fails, and the call
 * reports -PYSHM_ESTALE instead of freeing a block someone else now holds. The
 * generation has 62 bits: it cannot wrap in practice.
 *
 * Who holds a HELD block is recorded in its holder word, written by the taker before its
 * CAS to HELD, so whoever sees the state HELD at generation g also sees the holder of g.
 * pyshm_pool_reclaim frees the HELD blocks whose holder process is gone.
 *
 *   label  release                                   acquire
 *   S1     every state CAS is acq_rel: a process that wins the CAS for (kind, gen) sees
 *          everything the previous owner did before its own CAS to (kind, gen).
 *          Block bytes themselves travel with the ring that carries the block (ring.h R1).
 *   S2     holder store, then the CAS to HELD         reclaim: acquire load of the state,
 *          (release)                                  then the holder word
 *
 * What reclaim alone cannot see: a block a process was queueing when it died (FREE or
 * IN_RING, in no slot), or one in a slot the dead process claimed. repair.h covers
 * those, and runs reclaim last.
 */
#ifndef PYSHM_CORE_MEMPOOL_H
#define PYSHM_CORE_MEMPOOL_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "object.h"
#include "ring.h"

struct pyshm_region;

#define PYSHM_MEMPOOL_F_SP_PUT 1u /* one process at a time puts: uncontended free queue tail */
#define PYSHM_MEMPOOL_F_SC_GET 2u /* one process at a time gets */
#define PYSHM_MEMPOOL_FLAGS (PYSHM_MEMPOOL_F_SP_PUT | PYSHM_MEMPOOL_F_SC_GET)

enum pyshm_block_kind { PYSHM_BLOCK_FREE = 0, PYSHM_BLOCK_HELD = 1, PYSHM_BLOCK_IN_RING = 2 };

static inline uint64_t pyshm_block_state(uint64_t gen, enum pyshm_block_kind kind)
{
    return gen << 2 | (uint64_t)kind;
}
static inline enum pyshm_block_kind pyshm_block_kind_of(uint64_t state)
{
    return (enum pyshm_block_kind)(state & 3u);
}
static inline uint64_t pyshm_block_gen_of(uint64_t state) { return state >> 2; }

/* Largest pool accepted: keeps every size computation far from 64-bit overflow. */
#define PYSHM_MAX_COUNT (UINT64_C(1) << 40)
#define PYSHM_MAX_ELT_SIZE (UINT64_C(1) << 40)

/* Lives in shared memory, at the start of the pool object. */
struct pyshm_pool_shared {
    struct pyshm_object_header object;
    uint64_t count;
    uint64_t elt_size;
    uint64_t stride;
    uint64_t flags;
    uint64_t slots_offset;  /* region offsets */
    uint64_t states_offset;
    uint64_t data_offset;
    uint64_t holders_offset;
    struct pyshm_ring_counters free_queue;
};
_Static_assert(sizeof(struct pyshm_pool_shared) == 320, "pool header layout");
_Static_assert(offsetof(struct pyshm_pool_shared, free_queue) % PYSHM_CACHE_LINE == 0,
               "free-queue counters must be cache-line aligned");

/* Process-local handle: geometry validated once, the only copy hot paths read. */
struct pyshm_pool {
    uint64_t offset; /* of the pool object in the region */
    size_t slot;     /* in the region handle's pool table, once added */
    uint64_t count;
    uint64_t elt_size;
    uint64_t stride;
    uint32_t flags;
    uint64_t data_offset;
    uint8_t *data;
    pyshm_atomic64 *states;
    pyshm_atomic64 *holders;
    struct pyshm_ring free_queue;
};

/* Bytes a pool object of this geometry occupies. 0 or -EINVAL. */
int pyshm_pool_footprint(uint64_t count, uint64_t elt_size, uint64_t *bytes);

/* Carve, build and publish a pool, named (`name` up to PYSHM_NAME_MAX bytes) or not
 * (NULL or ""). 0, -EINVAL, -EEXIST (name taken), -ENOSPC (region too small), -ENOMEM. */
int pyshm_pool_create(struct pyshm_region *r, uint64_t count, uint64_t elt_size, uint32_t flags,
                      const char *name, struct pyshm_pool *out);

/* Validate the pool object at `offset` and fill a handle. 0 or -PYSHM_ECORRUPT. */
int pyshm_pool_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_pool *out);

/* Take the oldest free block: 0 with *index and *gen (the generation it is held at),
 * -PYSHM_EEMPTY, or -PYSHM_ECORRUPT. */
int pyshm_pool_get(const struct pyshm_pool *p, uint64_t *index, uint64_t *gen);

/* Take 1 to max of the oldest free blocks: the number taken, -PYSHM_EEMPTY, or
 * -PYSHM_ECORRUPT. indices[] and gens[] receive them. */
int64_t pyshm_pool_get_burst(const struct pyshm_pool *p, uint64_t *indices, uint64_t *gens, uint64_t max);

/* Return n blocks, all or none: 0, -EINVAL (an index out of range), -PYSHM_ESTALE (one
 * was not held at its generation), -PYSHM_ECORRUPT, or -EAGAIN as for pyshm_pool_put.
 * On failure none is returned; the blocks whose hand-back was undone are held at a
 * generation two further on, written back to gens[]. */
int pyshm_pool_put_burst(const struct pyshm_pool *p, const uint64_t *indices, uint64_t *gens, uint64_t n);

/*
 * Return a block held at *held_gen: 0, -PYSHM_ESTALE (not held at that generation: a
 * double put), -PYSHM_ECORRUPT, or -EAGAIN: the free queue stayed blocked by a get()
 * that did not finish within 200 ms (a process stopped or killed mid-call); the block is still held by the
 * caller, at the generation now in *held_gen.
 */
int pyshm_pool_put(const struct pyshm_pool *p, uint64_t index, uint64_t *held_gen);

/* Free every HELD block whose holder process is gone. Returns how many went back to the
 * free queue, or -PYSHM_ECORRUPT. Blocks in a ring are left alone: still deliverable.
 * A block with no recorded holder (word 0) is never freed. If the free queue refuses a
 * block (it reads full: corrupt counters), the scan stops and returns the count so far. */
int64_t pyshm_pool_reclaim(const struct pyshm_pool *p);

/* Take a block that has just left a queue: record this process as its holder, then move
 * its state from (from, *gen) to (HELD, *gen + 1). 0 or -PYSHM_ECORRUPT. */
int pyshm_block_take(const struct pyshm_pool *p, uint64_t index, enum pyshm_block_kind from, uint64_t *gen);

/* Move a block's state from (from, gen) to (to, gen + 1). 0 or -PYSHM_ESTALE. */
int pyshm_block_transition(pyshm_atomic64 *state, enum pyshm_block_kind from, uint64_t gen,
                           enum pyshm_block_kind to);

static inline uint64_t pyshm_pool_block_offset(const struct pyshm_pool *p, uint64_t index)
{
    return p->data_offset + index * p->stride;
}

/* Blocks waiting in the free queue, as seen at one instant. */
static inline uint64_t pyshm_pool_free_count(const struct pyshm_pool *p)
{
    return pyshm_ring_count(&p->free_queue);
}

#endif
