/*
 * pool_table.h - the pools of a region that this process has validated, and the lookup
 * from a block offset read out of shared memory to its pool and index.
 *
 * Process-local. A pool is added once, when it is created or attached or found by a
 * walk of the region's object list, after pyshm_pool_attach has validated it; it keeps
 * its slot and its address for the life of the table (the table only grows, and holds
 * pointers), so a pointer from pyshm_pool_table_find stays valid. A pool whose bytes
 * would overlap a pool already known can only come from a forged header: refused.
 *
 * An offset read from a Ring becomes a block only through pyshm_pool_table_find: it must
 * be the start of a block of a validated pool. An offset in no known pool triggers one
 * walk of the object list for pools carved since (bounded, each validated first).
 */
#ifndef PYSHM_CORE_POOL_TABLE_H
#define PYSHM_CORE_POOL_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "mempool.h"
#include "region.h"

struct pyshm_pool_table {
    struct pyshm_pool **pools;
    size_t count;
    size_t capacity;
};

/* Add (or find again) the pool at `offset`, validating it first: 0 with *pool pointing at
 * the table's copy, -PYSHM_ECORRUPT (not a valid pool, or it overlaps a known one) or
 * -ENOMEM. A pool already known keeps the geometry it had when first validated. */
int pyshm_pool_table_add(struct pyshm_pool_table *t, const struct pyshm_region *r, uint64_t offset,
                         const struct pyshm_pool **pool);
/* Validate and add every pool of the region not known yet (forged ones are skipped). */
int pyshm_pool_table_add_new(struct pyshm_pool_table *t, const struct pyshm_region *r);
/* The known pool at `offset`, or NULL. */
const struct pyshm_pool *pyshm_pool_table_at(const struct pyshm_pool_table *t, uint64_t offset);
/* Map a block offset to its pool and index: 0, -PYSHM_ECORRUPT (no block starts there),
 * -ENOMEM. */
int pyshm_pool_table_find(struct pyshm_pool_table *t, const struct pyshm_region *r, uint64_t offset,
                          const struct pyshm_pool **pool, uint64_t *index);
void pyshm_pool_table_free(struct pyshm_pool_table *t);

#endif
