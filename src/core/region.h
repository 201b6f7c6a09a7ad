/*
 * region.h - a shared-memory region: mapping it, carving objects out of it, the list of
 * its objects, their names. The lowest layer of the core with a state of its own; it
 * knows nothing of what is carved (pools, rings) nor of the member table, whose place it
 * only keeps free (layout.h).
 *
 * Carving is a CAS on header.carve_end (a bump allocator), so any process may carve at
 * any time. A carved object is built in private, then published by pushing its offset
 * onto a list whose head is header.objects_head and whose links are object.next.
 * Objects are never removed, so the push-only list has no ABA problem.
 *
 *   label  release                                acquire
 *   O1     publish: CAS objects_head = off        walk: load objects_head
 *          makes the whole object (its header and geometry; the rest of it is zero,
 *          which is its initial state) visible to any process that finds it on the list.
 *   O2     publish: load objects_head (acquire)   -- so the objects published before
 *          ours happen before our O1 release, and a walker that acquires our offset
 *          may follow our next link into them.
 *   O3     create: header fields, then magic      attach: load magic (acquire), then
 *          (release)                              the other fields
 *
 * No pointer is ever stored in the region: offsets from its base only.
 */
#ifndef PYSHM_CORE_REGION_H
#define PYSHM_CORE_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "layout.h"

struct pyshm_region_header {
    pyshm_atomic64 magic; /* written last (O3): a region being created is not one yet */
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t size;               /* bytes for objects, after the fixed part */
    pyshm_atomic64 carve_end;    /* first byte not yet carved */
    pyshm_atomic64 objects_head; /* offset of the last published object, 0 for none */
    uint64_t reserved[3];
};
_Static_assert(sizeof(struct pyshm_region_header) == PYSHM_REGION_HEADER_SIZE, "region header layout");

/* Process-local handle. */
struct pyshm_region {
    uint8_t *base;
    uint64_t size;     /* bytes for objects, as asked for */
    uint64_t map_size; /* bytes mapped: the whole file */
    int fd;            /* backing file, or -1 for an anonymous mapping */
};

/* Bytes of the file behind a region with `size` bytes for objects (before page rounding). */
static inline uint64_t pyshm_region_file_size(uint64_t size) { return PYSHM_OBJECTS_OFFSET + size; }

/* Map a new region with `size` bytes for objects (PYSHM_MIN_REGION_SIZE to
 * PYSHM_MAX_REGION_SIZE, else -EINVAL), backed by an anonymous memfd where there is one,
 * sparse (pages are allocated when first written), sealed against shrinking. 0 or -errno. */
int pyshm_region_create(struct pyshm_region *r, uint64_t size);
/* The same, backed by POSIX shared memory `name` ("/name"), created exclusively, mode
 * 0600, with all its memory reserved at once (so it can never fail later with SIGBUS):
 * -EEXIST if the name is taken; -ENOSPC if the file system (/dev/shm) lacks room, with
 * *room set to the bytes it has free. */
int pyshm_region_create_named(struct pyshm_region *r, uint64_t size, const char *name, uint64_t *room);
/* Map the region in file descriptor fd (the handle takes fd, also on failure). Checks
 * the header: -PYSHM_ENOTREGION, -PYSHM_EVERSION, -PYSHM_ECORRUPT. */
int pyshm_region_attach_fd(struct pyshm_region *r, int fd);
/* Open POSIX shared memory `name` and attach it. -ENOENT if there is no such name. */
int pyshm_region_attach_named(struct pyshm_region *r, const char *name);
int pyshm_region_unlink(const char *name);
/* Unmap and close; the handle is left zeroed. Safe on a zeroed handle. */
void pyshm_region_close(struct pyshm_region *r);

/* The member table's place (layout.h). */
static inline void *pyshm_region_members(const struct pyshm_region *r) { return r->base + PYSHM_MEMBERS_OFFSET; }

/* Bytes already carved, and left, as seen now (clamped to the region). */
uint64_t pyshm_region_carved(const struct pyshm_region *r);

/*
 * Reserve `size` bytes (a multiple of 64) for an object of `kind`, named `name` (NULL
 * or "" for none, else unique in the region: -EEXIST), and write its object header.
 * Returns 0 with *offset set, or -ENOSPC when the region lacks room.
 */
int pyshm_region_carve(struct pyshm_region *r, uint64_t size, uint32_t kind, const char *name, uint64_t *offset);

/* Make a fully built object visible to every process (O1). */
void pyshm_region_publish(struct pyshm_region *r, uint64_t offset);

/* Call visit(ctx, offset, private copy of the header) for every published object,
 * newest first, until it returns non-zero (returned). -PYSHM_ECORRUPT on a bad link. */
int pyshm_region_walk(const struct pyshm_region *r, int (*visit)(void *, uint64_t, const struct pyshm_object_header *),
                      void *ctx);

/* The newest published object called `name`: 0 with its kind and offset, or -ENOENT.
 * Names are unique per region as long as two processes do not create the same name at
 * the same instant (carve checks, but not atomically with publishing). */
int pyshm_region_find_named(const struct pyshm_region *r, const char *name, uint32_t *kind, uint64_t *offset);

/* Give the whole pages inside [addr, addr + length) of a mapping back to the operating
 * system (they read as zeros afterwards). The caller alone uses that memory. Advice only:
 * on failure the pages simply stay. */
void pyshm_region_return_pages(void *addr, uint64_t length);

/* Whether [offset, offset + size) lies in the region's object area. */
static inline int pyshm_region_contains(const struct pyshm_region *r, uint64_t offset, uint64_t size)
{
    uint64_t end = PYSHM_OBJECTS_OFFSET + r->size;
    return offset >= PYSHM_OBJECTS_OFFSET && offset <= end && size <= end - offset;
}

#endif
