/*
 * region.h - a shared-memory region and the objects carved out of it.
 *
 * Layout, all offsets from the region base (no pointer is ever stored in the region):
 *
 *   [0, 64)        struct pyshm_region_header
 *   [64, ...)      carved objects (pools, rings), each 64-byte aligned and starting with
 *                  struct pyshm_object_header
 *
 * Carving is a CAS on header.carve_end (a bump allocator), so any process may carve at
 * any time. A carved object is built in private, then published by pushing its offset
 * onto a list whose head is header.objects_head and whose links are object.next.
 * Objects are never removed, so the push-only list has no ABA problem.
 *
 *   label  release                                acquire
 *   O1     publish: CAS objects_head = off        walk: load objects_head
 *          makes the whole object (header, geometry, initial ring and block states)
 *          visible to any process that finds it on the list.
 *   O2     publish: load objects_head (acquire)   -- so the objects published before
 *          ours happen before our O1 release, and a walker that acquires our offset
 *          may follow our next link into them.
 *
 * Every process keeps, in its process-local handle, a table of the pools it has
 * validated. An offset read from a ring is turned into a block only through that table
 * (pyshm_region_find_block); an offset outside every known pool triggers one re-walk of
 * the list, bounded in length, validating each new pool before trusting it.
 */
#ifndef PYSHM_CORE_REGION_H
#define PYSHM_CORE_REGION_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "announce.h"
#include "atomics.h"
#include "mempool.h"
#include "object.h"

#define PYSHM_REGION_MAGIC UINT64_C(0x314e4f4947455253) /* "SREGION1" little-endian */
struct pyshm_region_header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t size;
    pyshm_atomic64 carve_end;    /* first byte not yet carved */
    pyshm_atomic64 objects_head; /* offset of the last published object, 0 for none */
    pyshm_atomic64 announce_offset; /* the announcement table (announce.h), 0 for none yet */
    uint64_t reserved[2];
};
_Static_assert(sizeof(struct pyshm_region_header) == 64, "region header layout");

/* Process-local handle. */
struct pyshm_region {
    uint8_t *base;
    uint64_t size;     /* usable bytes, as asked for */
    uint64_t map_size; /* bytes mapped: size rounded up to a page */
    int fd;            /* backing memfd, or -1 for an anonymous mapping */
    struct pyshm_pool **pools; /* pools this process has validated; each stays put */
    size_t pool_count;
    size_t pool_capacity;
    struct pyshm_announcer announcer; /* this process's announcement entry (announce.h) */
};

#define PYSHM_REGION_HEADER_SIZE ((uint64_t)sizeof(struct pyshm_region_header))

#define PYSHM_MAX_REGION_SIZE (UINT64_C(1) << 46)
#define PYSHM_ENOTREGION EMEDIUMTYPE     /* the file is not a pyshm region */
#define PYSHM_EVERSION EPROTONOSUPPORT /* a region of another layout version */

/* Map a new zeroed region of `size` bytes (>= 1) and write its header, backed by an
 * anonymous memfd where there is one. 0 or -errno. */
int pyshm_region_create(struct pyshm_region *r, uint64_t size);
/* The same, backed by POSIX shared memory `name` ("/name"), created exclusively, mode
 * 0600. -EEXIST if the name is taken. */
int pyshm_region_create_named(struct pyshm_region *r, uint64_t size, const char *name);
/* Map the region in file descriptor fd (the handle takes fd, also on failure). Checks
 * the header: -PYSHM_ENOTREGION, -PYSHM_EVERSION, -PYSHM_ECORRUPT. */
int pyshm_region_attach_fd(struct pyshm_region *r, int fd);
/* Open POSIX shared memory `name` and attach it. -ENOENT if there is no such name. */
int pyshm_region_attach_named(struct pyshm_region *r, const char *name);
int pyshm_region_unlink(const char *name);
/* Unmap and forget everything; the handle is left zeroed. Safe on a zeroed handle. */
void pyshm_region_close(struct pyshm_region *r);

/* Region bytes needed to carve one object of `object_size` into an empty region. */
uint64_t pyshm_region_size_for(uint64_t object_size);

/*
 * Reserve `size` bytes (a multiple of 64) for an object of `kind`, named `name` (NULL
 * or "" for none, else unique in the region: -EEXIST), and write its object header. Returns 0 with *offset set, or -ENOSPC when the region lacks room; then
 * *offset holds the carve end seen, so the caller can say how much is missing.
 */
int pyshm_region_carve(struct pyshm_region *r, uint64_t size, uint32_t kind, const char *name, uint64_t *offset);

/* The newest published object called `name`: 0 with its kind and offset, or -ENOENT.
 * Names are unique per region as long as two processes do not create the same name at
 * the same instant (carve checks, but not atomically with publishing). */
int pyshm_region_find_named(const struct pyshm_region *r, const char *name, uint32_t *kind, uint64_t *offset);
/* Make a fully built object visible to every process (O1). */
void pyshm_region_publish(struct pyshm_region *r, uint64_t offset);

/* Remember a pool this process created or validated. 0, -ENOMEM, or -PYSHM_ECORRUPT if
 * it overlaps a pool already known (only a forged header can make it so). A pool keeps its
 * slot in the table and its address for the life of the handle (the table only grows,
 * and holds pointers), so a pointer from pyshm_region_find_block stays valid. */
int pyshm_region_add_pool(struct pyshm_region *r, const struct pyshm_pool *pool);
/* Call visit(ctx, offset, private copy of the header) for every published object,
 * newest first, until it returns non-zero (returned). -PYSHM_ECORRUPT on a bad link. */
int pyshm_region_walk(const struct pyshm_region *r, int (*visit)(void *, uint64_t, const struct pyshm_object_header *),
                      void *ctx);
/* Validate and remember every pool of the region this process does not know yet. */
int pyshm_region_add_new_pools(struct pyshm_region *r);
/* Slot of the known pool at pool_offset, or -ENOENT. */
long pyshm_region_pool_slot(const struct pyshm_region *r, uint64_t pool_offset);

/*
 * Map a block offset read from shared memory to its pool and index. Succeeds only if the
 * offset is the start of a block of a validated pool in this region. 0 or -PYSHM_ECORRUPT.
 */
int pyshm_region_find_block(struct pyshm_region *r, uint64_t offset, const struct pyshm_pool **pool,
                            uint64_t *index);

#endif
