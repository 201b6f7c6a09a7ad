/*
 * announce.h - what each process is in the middle of, so that the survivors can finish
 * or undo the queue step of a process killed mid-operation (repair.h).
 *
 * A region may hold one announcement table (an object of kind PYSHM_KIND_ANNOUNCE,
 * carved by the first process that needs it; its offset in the region header). Each
 * process that operates on the region's queues owns one entry of it, found by a CAS of
 * the entry's owner word from 0 to the process's holder word (process.h). Before a
 * process claims queue positions (the CAS on enq_pos or deq_pos of ring.h), it writes
 * into its entry which queue, which side and which positions; it clears the entry once
 * every slot it claimed is finished (published, or released).
 *
 * One entry per region handle (struct pyshm_region), used by one queue operation at a
 * time: the Python binding runs queue operations with the GIL held, so a process runs
 * one at a time. C code whose threads run queue operations concurrently on one handle
 * must give each thread its own region handle if it wants repair: two concurrent
 * operations on one entry overwrite each other's announcements, and a repairer could
 * then take a live thread's claim for a dead process's. Repair itself announces nothing.
 * When the table cannot be made (no room left in the region) operations announce
 * nothing, and a slot left by a killed process stays stuck, as without repair.
 *
 *   label  release                                  acquire
 *   A1     announcement stores, then the claim      repair: acquire load of the counter
 *          (CAS or store of the counter, release)   sees every announcement made before
 *                                                   the claims it counts
 *   A2     slot finished (publish / release), then  repair: acquire load of `what`; if
 *          `what` cleared (release)                 cleared, the slot's finish is visible
 */
#ifndef PYSHM_CORE_ANNOUNCE_H
#define PYSHM_CORE_ANNOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "object.h"

#define PYSHM_ANNOUNCE_ENTRIES 254u

enum pyshm_announce_side { PYSHM_ANNOUNCE_ENQ = 1, PYSHM_ANNOUNCE_DEQ = 2 };

struct pyshm_announce_entry {
    pyshm_atomic64 owner; /* holder word of the owning process, 0: free */
    pyshm_atomic64 what;  /* queue id | side, 0: no operation in progress */
    pyshm_atomic64 pos;   /* first position claimed */
    pyshm_atomic64 n;     /* positions claimed */
    uint64_t reserved[4];
};
_Static_assert(sizeof(struct pyshm_announce_entry) == PYSHM_CACHE_LINE, "announcement entry layout");

struct pyshm_announce_table {
    struct pyshm_object_header object;
    pyshm_atomic64 repair_lock; /* holder word of the process repairing, 0: none */
    uint64_t entries;           /* PYSHM_ANNOUNCE_ENTRIES */
    uint64_t reserved[6];
    struct pyshm_announce_entry entry[PYSHM_ANNOUNCE_ENTRIES];
};
_Static_assert(sizeof(struct pyshm_object_header) % PYSHM_CACHE_LINE == 0, "object header size");
_Static_assert(sizeof(struct pyshm_announce_table) ==
                   sizeof(struct pyshm_object_header) + PYSHM_CACHE_LINE * (1 + PYSHM_ANNOUNCE_ENTRIES),
               "announcement table layout");

struct pyshm_region;

/*
 * Process-local: this process's entry in one region's table. Lives in the region
 * handle; pool and ring handles point at it. `owner` is the holder word the entry was
 * taken with: after a fork it no longer matches, and the child takes its own entry.
 */
struct pyshm_announcer {
    /* Atomic because threads may share a handle; `entry` is stored with release after the
     * table is set up and loaded with acquire, so a thread that finds it sees the table. */
    _Atomic(struct pyshm_announce_entry *) entry; /* NULL: none (yet, or no table) */
    _Atomic uint64_t owner;
    _Atomic int unavailable; /* the table could not be made, or was full: announce nothing */
};

/* This process's entry, taking one on first use (and after a fork); NULL if none. */
struct pyshm_announce_entry *pyshm_announcer_take(struct pyshm_announcer *a);
/* Give this process's entry back (on closing the region). */
void pyshm_announcer_release(struct pyshm_announcer *a);
/* The region's table, validated, or NULL (none yet, or garbage in the header). */
struct pyshm_announce_table *pyshm_announce_table_of(const struct pyshm_region *r);
/* Bytes the table takes in a region. */
uint64_t pyshm_announce_table_size(void);

/* The entry to announce in, or NULL (no announcer, or none to be had). Hot path. */
static inline struct pyshm_announce_entry *pyshm_announcer_entry(struct pyshm_announcer *a, uint64_t self)
{
    if (!a || atomic_load_explicit(&a->unavailable, memory_order_relaxed))
        return NULL;
    struct pyshm_announce_entry *e = atomic_load_explicit(&a->entry, memory_order_acquire);
    if (e && atomic_load_explicit(&a->owner, memory_order_relaxed) == self)
        return e;
    return pyshm_announcer_take(a);
}

static inline void pyshm_announce(struct pyshm_announce_entry *e, uint64_t queue_id, enum pyshm_announce_side side,
                                  uint64_t pos, uint64_t n)
{
    if (!e)
        return;
    atomic_store_explicit(&e->pos, pos, memory_order_relaxed);
    atomic_store_explicit(&e->n, n, memory_order_relaxed);
    /* A1: published by the release claim that follows. */
    atomic_store_explicit(&e->what, queue_id | (uint64_t)side, memory_order_relaxed);
}

static inline void pyshm_announce_clear(struct pyshm_announce_entry *e)
{
    if (e)
        atomic_store_explicit(&e->what, 0, memory_order_release); /* A2 */
}

#endif
