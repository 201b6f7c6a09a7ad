/*
 * inspect.h - reading what a region holds, for people and tools: its members and their
 * liveness, its objects and how their blocks are spread. Read-only: nothing here writes
 * to the region, takes a lock or joins the member table, so inspecting a region leaves
 * it exactly as it was (and works on a mapping made without PROT_WRITE).
 *
 * Everything is a snapshot taken without stopping anyone: counts read while other
 * processes work may be off by the blocks moving at that instant. Every value read from
 * shared memory is validated as attaching does (pyshm_pool_attach and the others), and
 * every loop is bounded by what the validated geometry allows.
 *
 * Only the binding includes this header; it includes the layers it reads.
 */
#ifndef PYSHM_CORE_INSPECT_H
#define PYSHM_CORE_INSPECT_H

#include <stdint.h>

#include "layout.h"
#include "region.h"

/* Map the region in `fd` read-only (PROT_READ) after validating its header as
 * pyshm_region_attach_fd does. The handle takes fd, also on failure. 0, or -errno,
 * -PYSHM_ENOTREGION, -PYSHM_EVERSION, -PYSHM_ECORRUPT. Close with pyshm_region_close. */
int pyshm_inspect_open_fd(struct pyshm_region *r, int fd);
/* The same for POSIX shared memory `name` ("/name"), opened O_RDONLY. */
int pyshm_inspect_open_named(struct pyshm_region *r, const char *name);

/* Liveness as inspection reports it. */
enum pyshm_inspect_alive { PYSHM_ALIVE_UNKNOWN = -1, PYSHM_ALIVE_NO = 0, PYSHM_ALIVE_YES = 1 };

struct pyshm_inspect_member {
    uint32_t index;
    uint64_t pid;
    uint64_t incarnation;
    uint64_t held;      /* upper bound on the blocks held under the entry's holder word */
    uint64_t joined_ns; /* CLOCK_REALTIME when it joined, 0 if not known */
    int alive;          /* enum pyshm_inspect_alive */
    int announcing;     /* a claim is announced (or the announcement is being written) */
    int nolock;         /* the owner holds no lock: judged by its identity */
};

/*
 * Fill out[] (room for PYSHM_MEMBER_ENTRIES) with the owned entries of the member table,
 * in index order; returns how many. Liveness is the test repairs use (member.c): an
 * F_OFD_GETLK on the entry's lock byte through `fd`, any description of the region
 * file (which holds no lock of its own here); -1 for none: UNKNOWN. Owners without a
 * lock are judged by their identity (liveness.h): NO only when surely gone.
 */
uint32_t pyshm_inspect_members(const struct pyshm_region *r, int fd, struct pyshm_inspect_member *out);

struct pyshm_inspect_object {
    uint64_t offset;
    uint32_t kind;   /* PYSHM_KIND_* as the header says */
    int valid;       /* 0: the object does not validate (the fields below are 0) */
    char name[PYSHM_NAME_MAX + 1];
    /* pools */
    uint64_t count, elt_size, free_count, held_count, in_ring_count, held_by_dead;
    /* rings: count is the capacity */
    uint64_t used;
    int shutdown; /* enum pyshm_block_ring_shutdown */
    /* raw buffers */
    uint64_t size;
};

/*
 * Call visit(ctx, object) for every published object, oldest first, until it returns
 * non-zero (returned). `members` / `n_members`: from pyshm_inspect_members, to count the
 * blocks held by members that are gone (HELD under a holder word whose entry is free,
 * belongs to another incarnation, or to an owner judged NO). -PYSHM_ECORRUPT on a bad
 * object list, -ENOMEM.
 */
int pyshm_inspect_objects(const struct pyshm_region *r, const struct pyshm_inspect_member *members,
                          uint32_t n_members, int (*visit)(void *, const struct pyshm_inspect_object *), void *ctx);

#endif
