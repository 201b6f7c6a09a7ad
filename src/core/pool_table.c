/* pool_table.c - the validated pools of a region, in one process. */
#include "pool_table.h"

#include <errno.h>
#include <stdlib.h>

#include "errors.h"

static uint64_t pool_end(const struct pyshm_pool *p) { return p->data_offset + p->count * p->stride; }

const struct pyshm_pool *pyshm_pool_table_at(const struct pyshm_pool_table *t, uint64_t offset)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->pools[i]->offset == offset)
            return t->pools[i];
    return NULL;
}

int pyshm_pool_table_add(struct pyshm_pool_table *t, const struct pyshm_region *r, uint64_t offset,
                         const struct pyshm_pool **pool)
{
    const struct pyshm_pool *known = pyshm_pool_table_at(t, offset);
    if (known) {
        *pool = known;
        return 0;
    }
    struct pyshm_pool fresh;
    if (pyshm_pool_attach(r, offset, &fresh) < 0)
        return -PYSHM_ECORRUPT;
    /* Pools never overlap: one that would overlap a pool we know is a forgery. */
    for (size_t i = 0; i < t->count; i++)
        if (fresh.offset < pool_end(t->pools[i]) && t->pools[i]->offset < pool_end(&fresh))
            return -PYSHM_ECORRUPT;
    if (t->count == t->capacity) {
        size_t capacity = t->capacity ? 2 * t->capacity : 4;
        struct pyshm_pool **pools = realloc(t->pools, capacity * sizeof(*pools));
        if (!pools)
            return -ENOMEM;
        t->pools = pools;
        t->capacity = capacity;
    }
    struct pyshm_pool *copy = malloc(sizeof(*copy));
    if (!copy)
        return -ENOMEM;
    *copy = fresh;
    copy->slot = t->count;
    t->pools[t->count++] = copy;
    *pool = copy;
    return 0;
}

struct add_walk {
    struct pyshm_pool_table *t;
    const struct pyshm_region *r;
};

static int add_if_pool(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    struct add_walk *w = ctx;
    const struct pyshm_pool *pool;
    if (obj->kind == PYSHM_KIND_POOL && pyshm_pool_table_add(w->t, w->r, offset, &pool) == -ENOMEM)
        return -ENOMEM;
    return 0; /* a forged pool is skipped; the walk goes on */
}

int pyshm_pool_table_add_new(struct pyshm_pool_table *t, const struct pyshm_region *r)
{
    struct add_walk w = {t, r};
    return pyshm_region_walk(r, add_if_pool, &w);
}

static int lookup(const struct pyshm_pool_table *t, uint64_t offset, const struct pyshm_pool **pool, uint64_t *index)
{
    for (size_t i = 0; i < t->count; i++) {
        const struct pyshm_pool *p = t->pools[i];
        if (offset < p->data_offset)
            continue;
        uint64_t rel = offset - p->data_offset;
        uint64_t idx = rel / p->stride;
        if (idx >= p->count)
            continue;
        if (rel % p->stride != 0)
            return -PYSHM_ECORRUPT;
        *pool = p;
        *index = idx;
        return 0;
    }
    return -PYSHM_ECORRUPT;
}

int pyshm_pool_table_find(struct pyshm_pool_table *t, const struct pyshm_region *r, uint64_t offset,
                          const struct pyshm_pool **pool, uint64_t *index)
{
    if (lookup(t, offset, pool, index) == 0)
        return 0;
    /* Perhaps a pool another process carved after we last looked. */
    size_t known = t->count;
    int rc = pyshm_pool_table_add_new(t, r);
    if (rc == -ENOMEM)
        return rc;
    if (t->count == known)
        return -PYSHM_ECORRUPT;
    return lookup(t, offset, pool, index);
}

void pyshm_pool_table_free(struct pyshm_pool_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->pools[i]);
    free(t->pools);
    t->pools = NULL;
    t->count = t->capacity = 0;
}
