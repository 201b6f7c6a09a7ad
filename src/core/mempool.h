/*
 * mempool.h - fixed-size blocks carved from a region, the state of every block, and the
 * two moves every block makes: out of a queue into a process's hands (take) and from a
 * process's hands into a queue (hand over). A pool's free queue and a Ring (block_ring.h)
 * both move blocks with these two.
 *
 * A pool object in the region:
 *
 *   struct pyshm_pool_shared     object header, geometry, free-queue counters
 *   free-queue slots             count x struct pyshm_ring_slot (a queue.h FIFO of indices)
 *   block words                  count x struct pyshm_block_words: the block's 64-bit
 *                                state word and its holder word (member.h), side by side
 *   block data                   count x stride bytes, 64-byte aligned
 *
 * Zero-filled, all of this is a full pool: the free queue starts full (ring.h,
 * start_full: slot i holds block i), every state is FREE at generation 0, no holder.
 * Creating a pool writes its header and nothing else, and a block's memory is touched
 * only once the block is used. Blocks are handed out in index order until every block
 * has been out once, so the blocks below pyshm_pool_touched are the only ones a scan
 * ever needs to look at.
 *
 * Free blocks wait in the free queue, so get() hands out the block that has been free
 * longest and put() queues a block at the back.
 *
 * Each block's state word lives in shared memory so misuse is caught across processes:
 *
 *   state = generation << 2 | kind,  kind in { FREE, HELD, IN_RING }
 *
 * Every change of owner moves (kind, gen) to (next kind, gen + 1): by a CAS when a block
 * is taken (FREE or IN_RING -> HELD), by a store of the holder when it hands the block on
 * (HELD -> FREE or IN_RING: only the holder moves a HELD block while it lives). A holder
 * remembers the generation at which it got the block; a hand-over from a stale copy of a
 * view names an old generation and is refused (-PYSHM_ESTALE) before anything moves. The
 * generation has 62 bits: it cannot wrap in practice.
 *
 * Who holds a HELD block is recorded in its holder word: the holder word of the member
 * (member.h) that took it, written by the taker before its CAS to HELD. A hand-over is
 * refused (-PYSHM_ENOTYOURS) unless the block is HELD at the generation given and its
 * holder is the actor handing it over, so a fork child cannot give back its parent's
 * block. Repair returns the blocks held under a dead member's holder word (repair.h).
 *
 * Take (a consumer of a queue):   claim positions, then for each block: holder word,
 *                                 CAS to HELD; then release the slots. A block is thus in a
 *                                 slot or on record as HELD by its taker at every instant.
 * Hand over (a producer):         check every block, claim positions, stage each value
 *                                 (ring.h), give each block (FREE or IN_RING), publish
 *                                 each. A producer killed after its claim leaves each
 *                                 position unstaged (its block still HELD by it) or staged
 *                                 (the block named in the slot): a repairer can finish
 *                                 either without scanning anything.
 *
 *   label  release                                   acquire
 *   S1     every change of state releases, every CAS to HELD is acq_rel: a process that
 *          wins the CAS for (kind, gen) sees everything the previous owner did before it
 *          moved the state to (kind, gen). Block bytes themselves travel with the queue
 *          that carries the block (ring.h R1).
 *   S2     holder store, then the CAS to HELD         repair: acquire load of the state,
 *          (release)                                  then the holder word
 */
#ifndef PYSHM_CORE_MEMPOOL_H
#define PYSHM_CORE_MEMPOOL_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "errors.h"
#include "fault.h"
#include "layout.h"
#include "member.h"
#include "queue.h"

struct pyshm_region;

/* Accepted and kept for compatibility: promises about the caller's calls. The library
 * itself also puts into every pool (repair, drain), so no path relies on them. */
#define PYSHM_MEMPOOL_F_SP_PUT 1u
#define PYSHM_MEMPOOL_F_SC_GET 2u
/* A block put back gives its whole pages back to the operating system first (its
 * contents read as zeros when next handed out): for large blocks used now and then. */
#define PYSHM_MEMPOOL_F_RETURN_PAGES 4u
#define PYSHM_MEMPOOL_FLAGS (PYSHM_MEMPOOL_F_SP_PUT | PYSHM_MEMPOOL_F_SC_GET | PYSHM_MEMPOOL_F_RETURN_PAGES)

enum pyshm_block_kind { PYSHM_BLOCK_FREE = 0, PYSHM_BLOCK_HELD = 1, PYSHM_BLOCK_IN_RING = 2 };

static inline uint64_t pyshm_block_state(uint64_t gen, enum pyshm_block_kind kind) { return gen << 2 | (uint64_t)kind; }
static inline enum pyshm_block_kind pyshm_block_kind_of(uint64_t state) { return (enum pyshm_block_kind)(state & 3u); }
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
    uint64_t slots_offset; /* region offsets */
    uint64_t states_offset;  /* the first block's words (struct pyshm_block_words) */
    uint64_t holders_offset; /* states_offset + 8: its holder word */
    uint64_t data_offset;
    pyshm_atomic64 lapped; /* 1 once every block has been handed out (pyshm_pool_touched) */
    uint64_t reserved[7];
    struct pyshm_queue_shared free_queue;
};
_Static_assert(sizeof(struct pyshm_pool_shared) == 384, "pool header layout");
_Static_assert(offsetof(struct pyshm_pool_shared, free_queue) % PYSHM_CACHE_LINE == 0,
               "free-queue counters must be cache-line aligned");

/* A block's state word and holder word, side by side in shared memory: a take, a
 * hand-over and a scan each touch one cache line per block, not one in each of two
 * arrays (four blocks share a line). The pool header names both words' offsets
 * (states_offset, holders_offset = states_offset + 8), cross-checked on attach. */
struct pyshm_block_words {
    pyshm_atomic64 state;
    pyshm_atomic64 holder;
};
_Static_assert(sizeof(struct pyshm_block_words) == 16, "block words layout");

/* Process-local handle: geometry validated once, the only copy hot paths read. */
struct pyshm_pool {
    uint64_t offset; /* of the pool object in the region */
    size_t slot;     /* in the pool table (pool_table.h), once added */
    uint64_t count;
    uint64_t elt_size;
    uint64_t stride;
    uint32_t flags;
    uint64_t data_offset;
    uint8_t *data;
    struct pyshm_block_words *words; /* count of them */
    pyshm_atomic64 *lapped;
    struct pyshm_queue free_queue;
};

/* A block and the generation it is (to be) held at. */
struct pyshm_block {
    const struct pyshm_pool *pool;
    uint64_t index;
    uint64_t gen;
};

/* Bytes a pool object of this geometry occupies. 0 or -EINVAL. */
int pyshm_pool_footprint(uint64_t count, uint64_t elt_size, uint64_t *bytes);

/* Carve a pool, write its header and publish it, named (`name` up to PYSHM_NAME_MAX bytes)
 * or not (NULL or ""): 0 with *offset set, -EINVAL, -EEXIST (name taken), -ENOSPC. The
 * caller validates it like any other (pyshm_pool_attach) to get a handle. */
int pyshm_pool_create(struct pyshm_region *r, uint64_t count, uint64_t elt_size, uint32_t flags, const char *name,
                      uint64_t *offset);

/* Validate the pool object at `offset` and fill a handle. 0 or -PYSHM_ECORRUPT. */
int pyshm_pool_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_pool *out);

/* Blocks below this index are the only ones ever handed out so far (at most count). The
 * consumers' head of the free queue says it until it first passes count; from then on
 * (the `lapped` word, set by the first get that starts there) the answer is count, also
 * after the 64-bit counter wraps. */
uint64_t pyshm_pool_touched(const struct pyshm_pool *p);

static inline uint64_t pyshm_pool_block_offset(const struct pyshm_pool *p, uint64_t index)
{
    return p->data_offset + index * p->stride;
}

/* Blocks waiting in the free queue, as seen at one instant. */
static inline uint64_t pyshm_pool_free_count(const struct pyshm_pool *p) { return pyshm_queue_count(&p->free_queue); }

/* Take 1 to max of the oldest free blocks for m: the number taken (blocks[] filled),
 * -PYSHM_EEMPTY, or -PYSHM_ECORRUPT. */
int64_t pyshm_pool_get(const struct pyshm_pool *p, struct pyshm_member *m, struct pyshm_block *blocks, uint64_t max);

/* Give n blocks held by m back to the end of the free queue, all or none: 0,
 * -EINVAL (an index out of range or a block of another pool), -PYSHM_ESTALE (not held
 * at its generation), -PYSHM_ENOTYOURS (held by another member), -PYSHM_ECORRUPT, or
 * -EAGAIN: the free queue stayed blocked (by a get that did not finish within
 * `patience_ns`: a process stopped or killed mid-call); the blocks are still m's. */
int pyshm_pool_put(const struct pyshm_pool *p, struct pyshm_member *m, const struct pyshm_block *blocks, uint64_t n,
                   uint64_t patience_ns);

/* Move a block's state from (from, gen) to (to, gen + 1). 0 or -PYSHM_ESTALE. */
static inline int pyshm_block_transition(pyshm_atomic64 *state, enum pyshm_block_kind from, uint64_t gen, enum pyshm_block_kind to)
{
    uint64_t expected = pyshm_block_state(gen, from);
    /* S1: acq_rel, see mempool.h. */
    if (atomic_compare_exchange_strong_explicit(state, &expected, pyshm_block_state(gen + 1, to),
                                                memory_order_acq_rel, memory_order_relaxed))
        return 0;
    return -PYSHM_ESTALE;
}

/*
 * The holder hands a block it holds at gen on (HELD -> `to` at gen + 1): one release
 * store, not a CAS (S1). Only the holder moves a HELD block while it lives: a repairer
 * acts only for the dead, and a member is used by one thread at a time (space.h). The
 * caller checked the state (pyshm_block_check_held) before anything moved.
 */
static inline void pyshm_block_give(pyshm_atomic64 *state, uint64_t gen, enum pyshm_block_kind to)
{
    /* S1 release: pairs with the acquire of the next owner's CAS. */
    atomic_store_explicit(state, pyshm_block_state(gen + 1, to), memory_order_release);
}

/* ---- the two moves (used by pools, rings and repair) ------------------------------------ */

/* Maps a value read from a queue to a block: 0, or non-zero for a value that names no
 * block (it is dropped). */
typedef int (*pyshm_block_resolver)(void *ctx, uint64_t value, const struct pyshm_pool **pool, uint64_t *index);

/*
 * Take 1 to max blocks out of q for m (max <= q's capacity): each must be in state
 * `from`. Values that are holes are passed over, values that name no block in state
 * `from` are dropped. Returns how many were taken (blocks[] filled), -PYSHM_EEMPTY
 * (nothing ready, or `check` refused the first value), or -PYSHM_ECORRUPT (everything
 * claimed was dropped, or the counters are garbage).
 */
int64_t pyshm_blocks_take(const struct pyshm_queue *q, struct pyshm_member *m, uint64_t max,
                          enum pyshm_block_kind from, pyshm_block_resolver resolve, void *resolve_ctx,
                          pyshm_queue_check check, void *check_ctx, struct pyshm_block *blocks);

/* Take block `index` of p, just claimed from a queue where it was in state `from`, for
 * the member whose holder word is `holder`: 0 with *gen (the generation now held), or
 * -PYSHM_ECORRUPT (it was not in state `from`). */
static inline int pyshm_block_take(const struct pyshm_pool *p, uint64_t index, enum pyshm_block_kind from, uint64_t holder,
                     uint64_t *gen)
{
    if (index >= p->count)
        return -PYSHM_ECORRUPT;
    /* The queue gave us this index alone; its state must say where it came from. */
    uint64_t state = atomic_load_explicit(&p->words[index].state, memory_order_relaxed);
    if (pyshm_block_kind_of(state) != from)
        return -PYSHM_ECORRUPT;
    uint64_t g = pyshm_block_gen_of(state);
    /* S2: the holder word first; the release CAS below publishes it with the state. */
    atomic_store_explicit(&p->words[index].holder, holder, memory_order_relaxed);
    PYSHM_FAULT("block.take.holder");
    if (pyshm_block_transition(&p->words[index].state, from, g, PYSHM_BLOCK_HELD) < 0)
        return -PYSHM_ECORRUPT;
    PYSHM_FAULT("block.take.done");
    *gen = g + 1;
    return 0;
}

/*
 * Hand n blocks held by m over to q, all or none, in order, moving each to `to`; q
 * carries each as its index (by_offset 0: a pool's own free queue) or its region offset
 * (1: a Ring). 0, -PYSHM_EFULL (fewer than n free slots: nothing moved), and the errors
 * of pyshm_pool_put but -EAGAIN.
 */
int pyshm_blocks_hand_over(const struct pyshm_queue *q, struct pyshm_member *m, const struct pyshm_block *blocks,
                           uint64_t n, enum pyshm_block_kind to, int by_offset);

/* Whether block `index` of p is HELD at generation gen by the member whose holder word is
 * `holder`: 0, -PYSHM_ESTALE, -PYSHM_ENOTYOURS or -EINVAL. */
static inline int pyshm_block_check_held(const struct pyshm_pool *p, uint64_t index, uint64_t gen, uint64_t holder)
{
    if (index >= p->count)
        return -EINVAL;
    /* S2 acquire: the holder word of the generation read. */
    uint64_t state = atomic_load_explicit(&p->words[index].state, memory_order_acquire);
    if (state != pyshm_block_state(gen, PYSHM_BLOCK_HELD))
        return -PYSHM_ESTALE;
    if (atomic_load_explicit(&p->words[index].holder, memory_order_relaxed) != holder)
        return -PYSHM_ENOTYOURS;
    return 0;
}


#endif
