/*
 * space.h - a process's handle on one region: the mapping (region.h), its membership in
 * the region's member table (member.h) and the pools it has validated (pool_table.h).
 * The top of the core: the binding holds one per ShareMem, and every operation of a
 * pool or ring runs for the membership it finds here.
 *
 * A handle is used by one thread at a time (the binding's GIL); handles of the same
 * region in one process (several interpreters) are separate members.
 */
#ifndef PYSHM_CORE_SPACE_H
#define PYSHM_CORE_SPACE_H

#include <stdint.h>

#include "member.h"
#include "pool_table.h"
#include "region.h"

struct pyshm_space {
    struct pyshm_region region;
    struct pyshm_members members;
    struct pyshm_member self; /* this process's entry, once it has joined */
    struct pyshm_pool_table pools;
};

/* As the pyshm_region_* functions (region.h), plus the member table set up (no shared
 * write: zero is a table of free entries). `name` is the region's name ("/name") if it
 * has one, for reopening it (liveness.h). */
int pyshm_space_create(struct pyshm_space *s, uint64_t size);
int pyshm_space_create_named(struct pyshm_space *s, uint64_t size, const char *name, uint64_t *room);
int pyshm_space_attach_fd(struct pyshm_space *s, int fd, const char *name);
int pyshm_space_attach_named(struct pyshm_space *s, const char *name);
/* Leave the member table (the entry is freed now if nothing is held under it, else by a
 * later repair), forget the pools, unmap. Safe on a zeroed handle. */
void pyshm_space_close(struct pyshm_space *s);

/* Join the member table if this process has no entry yet (or only its fork parent's):
 * 0, or -PYSHM_ENOMEMBER when every entry belongs to a live process, -ENOMEM. May repair
 * a dead member's entry to reuse it. */
int pyshm_space_join(struct pyshm_space *s);

/* This process's membership, joining first if needed: NULL with *rc set on failure. */
static inline struct pyshm_member *pyshm_space_member(struct pyshm_space *s, int *rc)
{
    if (__builtin_expect(pyshm_member_is_current(&s->self), 1))
        return &s->self;
    *rc = pyshm_space_join(s);
    return *rc == 0 ? &s->self : NULL;
}

#endif
