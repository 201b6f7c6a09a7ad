/* region.c - mapping a region, carving objects, and the per-process table of pools. */
#define _GNU_SOURCE
#include "region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
    /* Room for the announcement table too, which the first queue operation carves. */
    return PYSHM_ALIGN_UP(PYSHM_REGION_HEADER_SIZE, PYSHM_CACHE_LINE) + object_size + pyshm_announce_table_size();
}

/* Size the file behind fd, map it, and write a fresh header. Takes fd. */
static int create_on_fd(struct pyshm_region *r, int fd, uint64_t size)
{
    uint64_t map_size = PYSHM_ALIGN_UP(size < PYSHM_REGION_HEADER_SIZE ? PYSHM_REGION_HEADER_SIZE : size,
                                       page_size());
    if (fd >= 0 && ftruncate(fd, (off_t)map_size) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
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

static void zero_handle(struct pyshm_region *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

static uint64_t pool_end(const struct pyshm_pool *p) { return p->data_offset + p->count * p->stride; }

/* Does [start, end) overlap a pool this process knows? */
static int overlaps_known_pool(const struct pyshm_region *r, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < r->pool_count; i++)
        if (start < pool_end(r->pools[i]) && r->pools[i]->offset < end)
            return 1;
    return 0;
}

static int check_size(uint64_t size) { return size == 0 || size > PYSHM_MAX_REGION_SIZE ? -EINVAL : 0; }

int pyshm_region_create(struct pyshm_region *r, uint64_t size)
{
    zero_handle(r);
    if (check_size(size) < 0)
        return -EINVAL;
    int fd = -1;
#ifdef MFD_CLOEXEC
    /* A file descriptor lets the region be handed to processes that were not forked,
     * and an anonymous file leaves no name behind when its last user dies. */
    fd = memfd_create("pyshm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
#endif
    int rc = create_on_fd(r, fd, size);
#ifdef F_SEAL_SHRINK
    /* A process holding the descriptor could otherwise shrink the file under every
     * mapping (SIGBUS on the next access): forbid it. */
    if (rc == 0 && fd >= 0)
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL);
#endif
    return rc;
}

int pyshm_region_create_named(struct pyshm_region *r, uint64_t size, const char *name)
{
    zero_handle(r);
    if (check_size(size) < 0)
        return -EINVAL;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = create_on_fd(r, fd, size);
    if (rc < 0)
        shm_unlink(name);
    return rc;
}

int pyshm_region_attach_fd(struct pyshm_region *r, int fd)
{
    zero_handle(r);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    uint64_t file_size = (uint64_t)st.st_size;
    if (file_size < PYSHM_REGION_HEADER_SIZE) {
        close(fd);
        return -PYSHM_ENOTREGION;
    }
    void *base = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        close(fd);
        return -err;
    }
    /* Read the header once; validate the copy. */
    struct pyshm_region_header h;
    memcpy(&h, base, sizeof(h));
    int rc = 0;
    if (h.magic != PYSHM_REGION_MAGIC)
        rc = -PYSHM_ENOTREGION;
    else if (h.layout_version != PYSHM_LAYOUT_VERSION)
        rc = -PYSHM_EVERSION;
    else if (h.header_size != PYSHM_REGION_HEADER_SIZE || check_size(h.size) < 0 || h.size > file_size)
        rc = -PYSHM_ECORRUPT;
    if (rc < 0) {
        munmap(base, file_size);
        close(fd);
        return rc;
    }
    r->base = base;
    r->size = h.size;
    r->map_size = file_size;
    r->fd = fd;
    return 0;
}

int pyshm_region_attach_named(struct pyshm_region *r, const char *name)
{
    zero_handle(r);
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    return pyshm_region_attach_fd(r, fd);
}

int pyshm_region_unlink(const char *name) { return shm_unlink(name) == 0 ? 0 : -errno; }

void pyshm_region_close(struct pyshm_region *r)
{
    pyshm_announcer_release(&r->announcer);
    if (r->base)
        munmap(r->base, r->map_size);
    if (r->fd >= 0)
        close(r->fd);
    for (size_t i = 0; i < r->pool_count; i++)
        free(r->pools[i]);
    free(r->pools);
    zero_handle(r);
}

int pyshm_region_carve(struct pyshm_region *r, uint64_t size, uint32_t kind, const char *name, uint64_t *offset)
{
    struct pyshm_region_header *h = header_of(r);
    size_t name_len = name ? strlen(name) : 0;
    if (size < sizeof(struct pyshm_object_header) || size % PYSHM_CACHE_LINE != 0 || name_len > PYSHM_NAME_MAX)
        return -EINVAL;
    if (name_len > 0) {
        uint64_t existing;
        uint32_t existing_kind;
        if (pyshm_region_find_named(r, name, &existing_kind, &existing) == 0)
            return -EEXIST;
    }
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
    /* A carve end moved back by a faulty process would hand out a live object's bytes. */
    if (overlaps_known_pool(r, start, start + size))
        return -PYSHM_ECORRUPT;
    struct pyshm_object_header *obj = (struct pyshm_object_header *)(r->base + start);
    memset(obj, 0, sizeof(*obj));
    obj->magic = PYSHM_OBJECT_MAGIC;
    obj->kind = kind;
    obj->layout_version = PYSHM_LAYOUT_VERSION;
    obj->size = size;
    if (name_len > 0)
        memcpy(obj->name, name, name_len);
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
        /* O1 release: pairs with the acquire load of objects_head in pyshm_region_walk. */
    } while (!atomic_compare_exchange_weak_explicit(&h->objects_head, &head, offset,
                                                    memory_order_release, memory_order_acquire));
}

long pyshm_region_pool_slot(const struct pyshm_region *r, uint64_t pool_offset)
{
    for (size_t i = 0; i < r->pool_count; i++)
        if (r->pools[i]->offset == pool_offset)
            return (long)i;
    return -ENOENT;
}

int pyshm_region_add_pool(struct pyshm_region *r, const struct pyshm_pool *pool)
{
    long known = pyshm_region_pool_slot(r, pool->offset);
    if (known >= 0) {
        const struct pyshm_pool *k = r->pools[known];
        return k->count == pool->count && k->elt_size == pool->elt_size && k->stride == pool->stride &&
                       k->flags == pool->flags
                   ? 0
                   : -PYSHM_ECORRUPT;
    }
    /* Pools never overlap: one that would overlap a pool we know is a forgery. */
    if (overlaps_known_pool(r, pool->offset, pool_end(pool)))
        return -PYSHM_ECORRUPT;
    if (r->pool_count == r->pool_capacity) {
        size_t capacity = r->pool_capacity ? 2 * r->pool_capacity : 4;
        struct pyshm_pool **pools = realloc(r->pools, capacity * sizeof(*pools));
        if (!pools)
            return -ENOMEM;
        r->pools = pools;
        r->pool_capacity = capacity;
    }
    struct pyshm_pool *copy = malloc(sizeof(*copy));
    if (!copy)
        return -ENOMEM;
    *copy = *pool;
    copy->slot = r->pool_count;
    r->pools[r->pool_count++] = copy;
    return 0;
}

/*
 * Call visit(ctx, offset, header) for every published object, newest first, until it
 * returns non-zero (which is returned). Bounded: a cycle written by a hostile process
 * ends the walk after as many steps as objects could fit in the region.
 */
int pyshm_region_walk(const struct pyshm_region *r, int (*visit)(void *, uint64_t, const struct pyshm_object_header *),
                      void *ctx)
{
    struct pyshm_region_header *h = header_of(r);
    uint64_t max_steps = r->size / PYSHM_CACHE_LINE;
    /* O1 acquire: pairs with the release CAS in pyshm_region_publish. */
    uint64_t offset = atomic_load_explicit(&h->objects_head, memory_order_acquire);
    for (uint64_t step = 0; offset != 0 && step < max_steps; step++) {
        if (offset % PYSHM_CACHE_LINE != 0 || offset < PYSHM_REGION_HEADER_SIZE ||
            offset > r->size || r->size - offset < sizeof(struct pyshm_object_header))
            return -PYSHM_ECORRUPT;
        /* A private copy: the header is validated and used only from here. */
        struct pyshm_object_header obj;
        memcpy(&obj, r->base + offset, sizeof(obj));
        int rc = visit(ctx, offset, &obj);
        if (rc != 0)
            return rc;
        offset = obj.next;
    }
    return 0;
}

static int add_if_pool(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    struct pyshm_region *r = ctx;
    struct pyshm_pool pool;
    if (obj->kind == PYSHM_KIND_POOL && pyshm_region_pool_slot(r, offset) < 0 &&
        pyshm_pool_attach(r, offset, &pool) == 0 && pyshm_region_add_pool(r, &pool) == -ENOMEM)
        return -ENOMEM;
    return 0; /* a forged pool is skipped; the walk goes on */
}

/* Add every valid pool this process does not know yet. */
int pyshm_region_add_new_pools(struct pyshm_region *r) { return pyshm_region_walk(r, add_if_pool, r); }

struct name_search {
    const char *name;
    uint32_t kind;
    uint64_t offset;
};

static int match_name(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    struct name_search *s = ctx;
    if (obj->magic != PYSHM_OBJECT_MAGIC || strncmp(obj->name, s->name, sizeof(obj->name)) != 0)
        return 0;
    s->kind = obj->kind;
    s->offset = offset;
    return 1;
}

int pyshm_region_find_named(const struct pyshm_region *r, const char *name, uint32_t *kind, uint64_t *offset)
{
    struct name_search s = {.name = name};
    int rc = pyshm_region_walk(r, match_name, &s);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return -ENOENT;
    *kind = s.kind;
    *offset = s.offset;
    return 0;
}

static int lookup(const struct pyshm_region *r, uint64_t offset, const struct pyshm_pool **pool,
                  uint64_t *index)
{
    for (size_t i = 0; i < r->pool_count; i++) {
        const struct pyshm_pool *p = r->pools[i];
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
    int rc = pyshm_region_add_new_pools(r);
    if (rc == -ENOMEM)
        return rc;
    if (r->pool_count == known)
        return -PYSHM_ECORRUPT;
    return lookup(r, offset, pool, index);
}
