/*
 * block_ring.h - a Ring: a ring.h FIFO carved from a region that carries blocks of any
 * pool in the same region from process to process, by offset.
 *
 * What an entry is: the region offset of the first byte of a block. An offset read back
 * from shared memory becomes a block only after pyshm_region_find_block has matched it
 * to a validated pool, and the block's state word says IN_RING; anything else is
 * reported as corruption and the entry is dropped, so the ring keeps flowing.
 *
 * Ownership travels with the state word (mempool.h): enqueue moves the block from HELD
 * to IN_RING before publishing its offset, so a consumer that dequeues the offset always
 * finds IN_RING (the CAS happens before ring.h's R1 release); dequeue moves it from
 * IN_RING to HELD at a new generation, which becomes the consumer's.
 *
 * Every successful enqueue notifies the not_empty waitpoint and every dequeue the
 * not_full one (wait.h); neither makes a system call unless someone sleeps there.
 *
 * Shutdown (as queue.Queue.shutdown): once the shutdown word is set, enqueue fails with
 * -ESHUTDOWN; dequeue drains what is left, then fails with -ESHUTDOWN; after an
 * immediate shutdown dequeue fails at once (the process that shut it down drains the
 * entries back into their pools). Setting it wakes every sleeper on both sides.
 * An enqueue that read the word just before it was set may still land; the drain or
 * the consumers deal with it like any other entry.
 */
#ifndef PYSHM_CORE_BLOCK_RING_H
#define PYSHM_CORE_BLOCK_RING_H

#include <stddef.h>
#include <stdint.h>

#include "mempool.h"
#include "object.h"
#include "ring.h"

struct pyshm_region;

#define PYSHM_RING_F_SP_ENQ 1u /* one process at a time enqueues */
#define PYSHM_RING_F_SC_DEQ 2u /* one process at a time dequeues */
#define PYSHM_RING_FLAGS (PYSHM_RING_F_SP_ENQ | PYSHM_RING_F_SC_DEQ)
#define PYSHM_MAX_RING_CAPACITY (UINT64_C(1) << 40)

enum pyshm_ring_shutdown { PYSHM_RING_OPEN = 0, PYSHM_RING_SHUTDOWN = 1, PYSHM_RING_SHUTDOWN_NOW = 2 };

/* Lives in shared memory, at the start of the ring object; the slots follow. */
struct pyshm_ring_shared {
    struct pyshm_object_header object;
    uint64_t capacity;
    uint64_t flags;
    uint64_t slots_offset;   /* region offset */
    pyshm_atomic64 shutdown; /* enum pyshm_ring_shutdown */
    uint64_t reserved[4];
    struct pyshm_ring_counters counters;
};
_Static_assert(sizeof(struct pyshm_ring_shared) == 320, "ring header layout");
_Static_assert(offsetof(struct pyshm_ring_shared, counters) % PYSHM_CACHE_LINE == 0,
               "ring counters must be cache-line aligned");

/* Process-local handle. */
struct pyshm_block_ring {
    uint64_t offset;
    uint32_t flags;
    pyshm_atomic64 *shutdown;
    struct pyshm_ring ring;
};

/* A block taken out of a ring: its pool (in the region's table) and generation. */
struct pyshm_taken_block {
    const struct pyshm_pool *pool;
    uint64_t index;
    uint64_t gen;
};

/* A block to hand to a ring: its pool, index, and the generation it is held at
 * (updated when the hand-over is undone). */
struct pyshm_held_block {
    const struct pyshm_pool *pool;
    uint64_t index;
    uint64_t gen;
};

int pyshm_block_ring_footprint(uint64_t capacity, uint64_t *bytes);
/* `name` as for pyshm_pool_create. 0, -EINVAL, -EEXIST, -ENOSPC. */
int pyshm_block_ring_create(struct pyshm_region *r, uint64_t capacity, uint32_t flags, const char *name,
                            struct pyshm_block_ring *out);
int pyshm_block_ring_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_block_ring *out);

/*
 * Hand a block held at *gen to the ring. 0; -PYSHM_EFULL (the block is still held, at
 * the generation now in *gen); -PYSHM_ESTALE (not held at *gen: already put or queued);
 * -ESHUTDOWN.
 */
int pyshm_block_ring_enqueue(const struct pyshm_block_ring *q, const struct pyshm_pool *pool, uint64_t index,
                             uint64_t *gen);

/* All n blocks or none, in order: errors as for one; blocks[].gen updated. */
int pyshm_block_ring_enqueue_burst(const struct pyshm_block_ring *q, struct pyshm_held_block *blocks, uint64_t n);

/*
 * Take the oldest block whose pool's blocks have at least `min_size` bytes. 0 with *out
 * filled (the caller now holds the block); -PYSHM_EEMPTY; -PYSHM_ETOOBIG (the oldest
 * block is smaller than min_size: it stays in the ring); -PYSHM_ECORRUPT (the entry
 * named no block in the ring state: it was dropped); -ESHUTDOWN.
 */
int pyshm_block_ring_dequeue(const struct pyshm_block_ring *q, struct pyshm_region *r, uint64_t min_size,
                             struct pyshm_taken_block *out);

/* Take 1 to max blocks: the number taken; -PYSHM_EEMPTY; -ESHUTDOWN; -PYSHM_ECORRUPT
 * when every entry claimed was garbage (garbage entries are dropped, valid ones kept). */
int64_t pyshm_block_ring_dequeue_burst(const struct pyshm_block_ring *q, struct pyshm_region *r,
                                       struct pyshm_taken_block *out, uint64_t max);

/* Take every entry out of the ring, whatever its shutdown state, and put each block back
 * into its pool. Returns how many blocks went back, or -PYSHM_ECORRUPT. */
int64_t pyshm_block_ring_drain(const struct pyshm_block_ring *q, struct pyshm_region *r);

/* Set the shutdown word (never back to open, never from immediate to graceful) and wake
 * every sleeper. */
void pyshm_block_ring_shutdown(const struct pyshm_block_ring *q, int immediate);

static inline enum pyshm_ring_shutdown pyshm_block_ring_shutdown_state(const struct pyshm_block_ring *q)
{
    uint64_t s = atomic_load_explicit(q->shutdown, memory_order_acquire);
    return s > PYSHM_RING_SHUTDOWN_NOW ? PYSHM_RING_SHUTDOWN_NOW : (enum pyshm_ring_shutdown)s;
}

static inline uint64_t pyshm_block_ring_count(const struct pyshm_block_ring *q)
{
    return pyshm_ring_count(&q->ring);
}

#endif
