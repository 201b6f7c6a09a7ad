/*
 * block_ring.h - a Ring (what Python calls Ring): a queue (queue.h) carved from a region
 * that carries blocks of any pool in the same region from process to process, by offset.
 *
 * What an entry is: the region offset of the first byte of a block. An offset read back
 * from shared memory becomes a block only after the pool table (pool_table.h) has
 * matched it to a validated pool, and the block's state word says IN_RING; anything else
 * is dropped, so the ring keeps flowing.
 *
 * Ownership travels with the state word (mempool.h): enqueue hands the blocks over
 * (HELD -> IN_RING, staged before and published after the state moves), dequeue takes
 * them (IN_RING -> HELD at a new generation, which becomes the consumer's).
 *
 * Shutdown (as queue.Queue.shutdown): once the shutdown word is set, enqueue fails with
 * -ESHUTDOWN; dequeue drains what is left, then fails with -ESHUTDOWN; after an
 * immediate shutdown dequeue fails at once (the process that shut it down drains the
 * entries back into their pools). Setting it wakes every sleeper on both sides. An
 * enqueue that read the word just before it was set may still land; the drain or the
 * consumers deal with it like any other entry.
 */
#ifndef PYSHM_CORE_BLOCK_RING_H
#define PYSHM_CORE_BLOCK_RING_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "mempool.h"
#include "pool_table.h"
#include "queue.h"

struct pyshm_region;

/* Accepted and kept for compatibility, as the pool flags (mempool.h). */
#define PYSHM_BLOCK_RING_F_SP_ENQ 1u
#define PYSHM_BLOCK_RING_F_SC_DEQ 2u
#define PYSHM_BLOCK_RING_FLAGS (PYSHM_BLOCK_RING_F_SP_ENQ | PYSHM_BLOCK_RING_F_SC_DEQ)
#define PYSHM_MAX_RING_CAPACITY (UINT64_C(1) << 40)

enum pyshm_block_ring_shutdown { PYSHM_BLOCK_RING_OPEN = 0, PYSHM_BLOCK_RING_SHUTDOWN = 1, PYSHM_BLOCK_RING_SHUTDOWN_NOW = 2 };

/* Lives in shared memory, at the start of the ring object; the slots follow. */
struct pyshm_block_ring_shared {
    struct pyshm_object_header object;
    uint64_t capacity;
    uint64_t flags;
    uint64_t slots_offset;   /* region offset */
    pyshm_atomic64 shutdown; /* enum pyshm_block_ring_shutdown */
    uint64_t reserved[12];
    struct pyshm_queue_shared queue;
};
_Static_assert(sizeof(struct pyshm_block_ring_shared) == 384, "ring header layout");
_Static_assert(offsetof(struct pyshm_block_ring_shared, queue) % PYSHM_CACHE_LINE == 0,
               "ring counters must be cache-line aligned");

/* Process-local handle. */
struct pyshm_block_ring {
    uint64_t offset;
    uint32_t flags;
    pyshm_atomic64 *shutdown;
    struct pyshm_queue queue;
};

int pyshm_block_ring_footprint(uint64_t capacity, uint64_t *bytes);
/* Carve and publish a ring, `name` as for pyshm_pool_create: 0 with *offset set, -EINVAL,
 * -EEXIST, -ENOSPC. */
int pyshm_block_ring_create(struct pyshm_region *r, uint64_t capacity, uint32_t flags, const char *name,
                            uint64_t *offset);
/* Validate the ring object at `offset` and fill a handle. 0 or -PYSHM_ECORRUPT. */
int pyshm_block_ring_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_block_ring *out);

/* Hand n blocks held by m to the ring, all or none, in order: 0; -PYSHM_EFULL (nothing
 * moved); -ESHUTDOWN; the refusals of pyshm_blocks_hand_over. */
int pyshm_block_ring_enqueue(const struct pyshm_block_ring *q, struct pyshm_member *m, const struct pyshm_block *blocks,
                             uint64_t n);

/*
 * Take 1 to max of the oldest blocks for m: the number taken (out[] filled); -PYSHM_EEMPTY;
 * -ESHUTDOWN; -PYSHM_ECORRUPT (every entry claimed named no block in the ring state: they
 * were dropped); -ENOMEM. With min_size > 0 (and max 1), the oldest block must have at
 * least min_size bytes, else -PYSHM_ETOOBIG and it stays in the ring.
 */
int64_t pyshm_block_ring_dequeue(const struct pyshm_block_ring *q, struct pyshm_member *m, struct pyshm_pool_table *t,
                                 const struct pyshm_region *r, uint64_t min_size, uint64_t max, struct pyshm_block *out);

/* Take every entry out of the ring, whatever its shutdown state, and put each block back
 * into its pool. Returns how many went back, or -PYSHM_ECORRUPT / -EAGAIN (a free queue
 * stayed blocked: the blocks not yet put back are queued in the ring again). */
int64_t pyshm_block_ring_drain(const struct pyshm_block_ring *q, struct pyshm_member *m, struct pyshm_pool_table *t,
                               const struct pyshm_region *r);

/* Set the shutdown word (never back to open, never from immediate to graceful) and wake
 * every sleeper. */
void pyshm_block_ring_shutdown(const struct pyshm_block_ring *q, int immediate);

static inline enum pyshm_block_ring_shutdown pyshm_block_ring_shutdown_state(const struct pyshm_block_ring *q)
{
    uint64_t s = atomic_load_explicit(q->shutdown, memory_order_acquire);
    return s > PYSHM_BLOCK_RING_SHUTDOWN_NOW ? PYSHM_BLOCK_RING_SHUTDOWN_NOW : (enum pyshm_block_ring_shutdown)s;
}

static inline uint64_t pyshm_block_ring_count(const struct pyshm_block_ring *q) { return pyshm_queue_count(&q->queue); }

#endif
