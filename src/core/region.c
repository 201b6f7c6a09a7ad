/* region.c - mapping a region, carving objects, and the list of objects. */
#define _GNU_SOURCE
#include "region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "errors.h"

static uint64_t page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (uint64_t)ps : 4096u;
}

static struct pyshm_region_header *header_of(const struct pyshm_region *r)
{
    return (struct pyshm_region_header *)r->base;
}

static void zero_handle(struct pyshm_region *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

static int check_size(uint64_t size)
{
    return size < PYSHM_MIN_REGION_SIZE || size > PYSHM_MAX_REGION_SIZE ? -EINVAL : 0;
}

/* Map the file behind fd (or anonymous memory) and write a fresh header. Takes fd. */
static int map_new(struct pyshm_region *r, int fd, uint64_t size, uint64_t map_size)
{
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
    /* Only the header is written: the member table and the object area are zero, which
     * is their initial state (layout.h). */
    struct pyshm_region_header *h = header_of(r);
    h->layout_version = PYSHM_LAYOUT_VERSION;
    h->header_size = (uint32_t)PYSHM_REGION_HEADER_SIZE;
    h->size = size;
    atomic_store_explicit(&h->carve_end, PYSHM_OBJECTS_OFFSET, memory_order_relaxed);
    atomic_store_explicit(&h->objects_head, 0, memory_order_relaxed);
    /* O3 release: pairs with the acquire load of magic in attach. */
    atomic_store_explicit(&h->magic, PYSHM_REGION_MAGIC, memory_order_release);
    return 0;
}

static uint64_t map_size_for(uint64_t size) { return PYSHM_ALIGN_UP(pyshm_region_file_size(size), page_size()); }

int pyshm_region_create(struct pyshm_region *r, uint64_t size)
{
    zero_handle(r);
    if (check_size(size) < 0)
        return -EINVAL;
    uint64_t map_size = map_size_for(size);
    int fd = -1;
#ifdef MFD_CLOEXEC
    /* A file descriptor lets the region be handed to processes that were not forked,
     * and an anonymous file leaves no name behind when its last user dies. */
    fd = memfd_create("pyshm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
#endif
    if (fd >= 0 && ftruncate(fd, (off_t)map_size) != 0) {
        int err = errno;
        close(fd);
        return err == EFBIG || err == EINVAL ? -ENOMEM : -err;
    }
#ifdef F_SEAL_SHRINK
    /* A process holding the descriptor could otherwise shrink the file under every
     * mapping (SIGBUS on the next access): forbid it. */
    if (fd >= 0)
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL);
#endif
    return map_new(r, fd, size, map_size);
}

/* Free bytes of the file system behind fd. */
static uint64_t room_of(int fd)
{
    struct statvfs st;
    return fstatvfs(fd, &st) == 0 ? (uint64_t)st.f_bavail * (uint64_t)st.f_frsize : 0;
}

int pyshm_region_create_named(struct pyshm_region *r, uint64_t size, const char *name, uint64_t *room)
{
    zero_handle(r);
    *room = 0;
    if (check_size(size) < 0)
        return -EINVAL;
    uint64_t map_size = map_size_for(size);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (ftruncate(fd, (off_t)map_size) != 0)
        rc = -errno;
    /* Reserve every page now: a tmpfs that runs out of room later would kill the process
     * that first touches a page with SIGBUS. A file system that cannot reserve keeps the
     * file sparse. */
    else if (fallocate(fd, 0, 0, (off_t)map_size) != 0 && errno != EOPNOTSUPP && errno != ENOSYS)
        rc = -errno;
    if (rc == -ENOSPC || rc == -EFBIG) {
        /* What the file system has free without this file's partial reservation. */
        ftruncate(fd, 0);
        *room = room_of(fd);
        rc = -ENOSPC;
    }
    if (rc == 0)
        rc = map_new(r, fd, size, map_size);
    else
        close(fd);
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
    if (!S_ISREG(st.st_mode) || file_size < PYSHM_OBJECTS_OFFSET) {
        close(fd);
        return -PYSHM_ENOTREGION;
    }
    void *base = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        close(fd);
        return -err;
    }
    struct pyshm_region_header *shared = base;
    int rc = 0;
    /* O3 acquire: pairs with the release store of magic in map_new. */
    if (atomic_load_explicit(&shared->magic, memory_order_acquire) != PYSHM_REGION_MAGIC) {
        rc = -PYSHM_ENOTREGION;
    } else {
        /* Read the rest once; validate the copies. */
        uint32_t version = shared->layout_version, header_size = shared->header_size;
        uint64_t size = shared->size;
        if (version != PYSHM_LAYOUT_VERSION)
            rc = -PYSHM_EVERSION;
        else if (header_size != PYSHM_REGION_HEADER_SIZE || check_size(size) < 0 ||
                 pyshm_region_file_size(size) > file_size)
            rc = -PYSHM_ECORRUPT;
        r->size = size;
    }
    if (rc < 0) {
        munmap(base, file_size);
        close(fd);
        zero_handle(r);
        return rc;
    }
    r->base = base;
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
    if (r->base)
        munmap(r->base, r->map_size);
    if (r->fd >= 0)
        close(r->fd);
    zero_handle(r);
}

uint64_t pyshm_region_carved(const struct pyshm_region *r)
{
    uint64_t end = atomic_load_explicit(&header_of(r)->carve_end, memory_order_relaxed);
    if (end < PYSHM_OBJECTS_OFFSET)
        return 0;
    end -= PYSHM_OBJECTS_OFFSET;
    return end > r->size ? r->size : end;
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
        if (!pyshm_region_contains(r, start, size))
            return start < PYSHM_OBJECTS_OFFSET ? -PYSHM_ECORRUPT : -ENOSPC;
        /* Relaxed: the carve end orders nothing; publication (O1) does. */
    } while (!atomic_compare_exchange_weak_explicit(&h->carve_end, &end, start + size, memory_order_relaxed,
                                                    memory_order_relaxed));
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
    } while (!atomic_compare_exchange_weak_explicit(&h->objects_head, &head, offset, memory_order_release,
                                                    memory_order_acquire));
}

/*
 * Bounded: a cycle written by a hostile process ends the walk after as many steps as
 * objects could fit in the region.
 */
int pyshm_region_walk(const struct pyshm_region *r, int (*visit)(void *, uint64_t, const struct pyshm_object_header *),
                      void *ctx)
{
    struct pyshm_region_header *h = header_of(r);
    uint64_t max_steps = r->size / PYSHM_CACHE_LINE;
    /* O1 acquire: pairs with the release CAS in pyshm_region_publish. */
    uint64_t offset = atomic_load_explicit(&h->objects_head, memory_order_acquire);
    for (uint64_t step = 0; offset != 0 && step < max_steps; step++) {
        if (offset % PYSHM_CACHE_LINE != 0 || !pyshm_region_contains(r, offset, sizeof(struct pyshm_object_header)))
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

void pyshm_region_return_pages(void *addr, uint64_t length)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)addr + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)addr + length) & ~(page - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_REMOVE);
}
