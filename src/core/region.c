/* region.c - mapping a region, carving objects, and the per-process table of pools. */
#define _GNU_SOURCE
#include "region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (uint64_t)ps : 4096u;
}

static struct pyshm_region_header *header_of(const struct pyshm_region *r)
{
    return (struct pyshm_region_header *)r->base;
}

uint64_t pyshm_region_size_for(uint64_t object_size)
{
    return PYSHM_ALIGN_UP(PYSHM_REGION_HEADER_SIZE, PYSHM_CACHE_LINE) + object_size;
}

int pyshm_region_create(struct pyshm_region *r, uint64_t size)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    if (size == 0 || size > (UINT64_C(1) << 46))
        return -EINVAL;
    uint64_t map_size = PYSHM_ALIGN_UP(size < PYSHM_REGION_HEADER_SIZE ? PYSHM_REGION_HEADER_SIZE : size,
                                       page_size());
    int fd = -1;
#ifdef MFD_CLOEXEC
    /* A file descriptor lets the region be handed to processes that were not forked. */
    fd = memfd_create("pyshm", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)map_size) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
#endif
    void *base = fd >= 0 ? mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                         : mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return -err;
    }
    r->base = base;
    r->size = size;
    r->map_size = map_size;
    r->fd = fd;

    struct pyshm_region_header *h = header_of(r);
    h->magic = PYSHM_REGION_MAGIC;
    h->layout_version = PYSHM_LAYOUT_VERSION;
    h->header_size = (uint32_t)PYSHM_REGION_HEADER_SIZE;
    h->size = size;
    atomic_store_explicit(&h->carve_end, PYSHM_ALIGN_UP(PYSHM_REGION_HEADER_SIZE, PYSHM_CACHE_LINE),
                          memory_order_relaxed);
    atomic_store_explicit(&h->objects_head, 0, memory_order_relaxed);
    return 0;
}

void pyshm_region_close(struct pyshm_region *r)
{
    if (r->base)
        munmap(r->base, r->map_size);
    if (r->fd >= 0)
        close(r->fd);
    free(r->pools);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

int pyshm_region_carve(struct pyshm_region *r, uint64_t size, uint32_t kind, uint64_t *offset)
{
    struct pyshm_region_header *h = header_of(r);
    if (size < sizeof(struct pyshm_object_header) || size % PYSHM_CACHE_LINE != 0)
        return -EINVAL;
    /* The carve end is shared; never trust it beyond the region we mapped. */
    uint64_t end = atomic_load_explicit(&h->carve_end, memory_order_relaxed);
    uint64_t start;
    do {
        start = PYSHM_ALIGN_UP(end, PYSHM_CACHE_LINE);
        if (start < PYSHM_REGION_HEADER_SIZE || start > r->size || size > r->size - start) {
            *offset = start;
            return -ENOSPC;
        }
        /* Relaxed: the carve end orders nothing; publication (O1) does. */
    } while (!atomic_compare_exchange_weak_explicit(&h->carve_end, &end, start + size,
                                                    memory_order_relaxed, memory_order_relaxed));
    struct pyshm_object_header *obj = (struct pyshm_object_header *)(r->base + start);
    memset(obj, 0, sizeof(*obj));
    obj->magic = PYSHM_OBJECT_MAGIC;
    obj->kind = kind;
    obj->layout_version = PYSHM_LAYOUT_VERSION;
    obj->size = size;
    *offset = start;
    return 0;
}

void pyshm_region_publish(struct pyshm_region *r, uint64_t offset)
{
    struct pyshm_region_header *h = header_of(r);
    struct pyshm_object_header *obj = (struct pyshm_object_header *)(r->base + offset);
    /* O2 acquire: the objects already on the list happen before our O1 release. */
    uint64_t head = atomic_load_explicit(&h->objects_head, memory_order_acquire);
    do {
        obj->next = head;
        /* O1 release: pairs with the acquire load of objects_head in walk_new_pools. */
    } while (!atomic_compare_exchange_weak_explicit(&h->objects_head, &head, offset,
                                                    memory_order_release, memory_order_acquire));
}

long pyshm_region_pool_slot(const struct pyshm_region *r, uint64_t pool_offset)
{
    for (size_t i = 0; i < r->pool_count; i++)
        if (r->pools[i].offset == pool_offset)
            return (long)i;
    return -ENOENT;
}

int pyshm_region_add_pool(struct pyshm_region *r, const struct pyshm_pool *pool)
{
    if (pyshm_region_pool_slot(r, pool->offset) >= 0)
        return 0;
    if (r->pool_count == r->pool_capacity) {
        size_t capacity = r->pool_capacity ? 2 * r->pool_capacity : 4;
        struct pyshm_pool *pools = realloc(r->pools, capacity * sizeof(*pools));
        if (!pools)
            return -ENOMEM;
        r->pools = pools;
        r->pool_capacity = capacity;
    }
    r->pools[r->pool_count++] = *pool;
    return 0;
}

/* Walk the published objects and add every valid pool not yet known. Bounded: a cycle
 * written by a hostile process ends the walk after as many steps as objects could fit. */
static int walk_new_pools(struct pyshm_region *r)
{
    struct pyshm_region_header *h = header_of(r);
    uint64_t max_steps = r->size / PYSHM_CACHE_LINE;
    /* O1 acquire: pairs with the release CAS in pyshm_region_publish. */
    uint64_t offset = atomic_load_explicit(&h->objects_head, memory_order_acquire);
    for (uint64_t step = 0; offset != 0 && step < max_steps; step++) {
        if (offset % PYSHM_CACHE_LINE != 0 || offset < PYSHM_REGION_HEADER_SIZE ||
            offset > r->size - sizeof(struct pyshm_object_header))
            return -PYSHM_ECORRUPT;
        const struct pyshm_object_header *obj = (const struct pyshm_object_header *)(r->base + offset);
        if (obj->kind == PYSHM_KIND_POOL) {
            struct pyshm_pool pool;
            if (pyshm_pool_attach(r, offset, &pool) == 0) {
                int rc = pyshm_region_add_pool(r, &pool);
                if (rc < 0)
                    return rc;
            }
        }
        offset = obj->next;
    }
    return 0;
}

static int lookup(const struct pyshm_region *r, uint64_t offset, const struct pyshm_pool **pool,
                  uint64_t *index)
{
    for (size_t i = 0; i < r->pool_count; i++) {
        const struct pyshm_pool *p = &r->pools[i];
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

int pyshm_region_find_block(struct pyshm_region *r, uint64_t offset, const struct pyshm_pool **pool,
                            uint64_t *index)
{
    if (lookup(r, offset, pool, index) == 0)
        return 0;
    /* Perhaps a pool another process carved after we last looked. */
    size_t known = r->pool_count;
    int rc = walk_new_pools(r);
    if (rc == -ENOMEM)
        return rc;
    if (r->pool_count == known)
        return -PYSHM_ECORRUPT;
    return lookup(r, offset, pool, index);
}
