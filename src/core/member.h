/*
 * member.h - the processes that use a region, and what each is in the middle of.
 *
 * Every region has a member table at a fixed place (layout.h): one 128-byte entry per
 * process that operates on the region's queues, up to PYSHM_MEMBER_ENTRIES at once.
 * Zero-filled, every entry is free. A process takes ("joins") an entry the first time it
 * needs one and keeps it while it lives; it gives it back when it closes the region with
 * nothing left held, else the entry stays until a repair (repair.h) has put right what
 * it left, and is then free again.
 *
 * An entry says:
 *
 *   owner       incarnation << 3 | READY | NOLOCK | OWNED. The incarnation counts the
 *               processes that have had the entry; a free entry keeps the last one.
 *   holder      (derived) incarnation << 8 | index: the word each block a member holds
 *               records (mempool.h), so "held by a process that is gone" is "held under
 *               an incarnation whose entry's owner is gone or has moved on".
 *   lock byte   the first byte of the entry in the region's file: the owner holds an
 *               exclusive lock on it while it lives (liveness.h), unless NOLOCK.
 *   announcement  which queue, side and positions the owner is claiming (queue.h): written
 *               before every claim, cleared once the claimed slots are finished, so that
 *               a repairer can finish or undo the claims of an owner that died.
 *   held        an upper bound on the blocks held under the entry's holder word (raised
 *               before a block is taken, lowered after one is given back), so that a
 *               repair can skip the scan for blocks of an owner that held none.
 *   identity    pid, pid namespace, pidfd inode (liveness.h), for NOLOCK owners and
 *               for introspection.
 *
 * Joining a free entry: take its lock byte, CAS the owner word from free to OWNED with
 * the next incarnation, write the identity, set READY. A repairer acts for a dead owner
 * through the owner's own entry: it takes the entry's lock byte, announces in the entry
 * and records the owner's holder word in the blocks it moves, so a repairer killed
 * midway leaves the entry as a dead owner's, which the next repairer repairs the same way
 * (repair.h). Only one process at a time writes an entry: its live owner, or the process
 * that holds its lock byte after the owner died.
 *
 * The announcement is written under a sequence word (a seqlock with one writer):
 *
 *   label  release                                   acquire
 *   A1     the announcement (seqlock write, release), repair: acquire load of the
 *          then the claim (CAS of the counter,        counter sees every announcement
 *          release, ring.h)                           made before the claims it counts
 *   A2     slots finished (publish / release), then  repair: acquire load of `what`
 *          the announcement cleared (one release     (or of a later sequence): once it
 *          store of `what` = 0)                      reads the clear, it sees the finish
 *   M1     owner word CAS (acq_rel), then identity,  readers: acquire load of the owner
 *          then READY (release)                      word, identity only if READY
 *
 * A seqlock read that finds the sequence odd (the writer is between its stores) or
 * changed retries; an entry whose writer died mid-write holds no claim (announcing comes
 * before claiming, clearing after finishing), so a dead entry with an odd sequence has
 * nothing to repair. Joining writes a settled (even) sequence, so a new owner never reads
 * as one caught mid-write.
 */
#ifndef PYSHM_CORE_MEMBER_H
#define PYSHM_CORE_MEMBER_H

#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "layout.h"
#include "liveness.h"

#define PYSHM_OWNER_OWNED UINT64_C(1)
#define PYSHM_OWNER_NOLOCK UINT64_C(2)
#define PYSHM_OWNER_READY UINT64_C(4)
#define PYSHM_OWNER_FLAGS UINT64_C(7)

enum pyshm_announce_side { PYSHM_ANNOUNCE_ENQ = 1, PYSHM_ANNOUNCE_DEQ = 2 };
#define PYSHM_ANNOUNCE_SIDES UINT64_C(3)

struct pyshm_member_entry {
    /* Cache line 1: written by the owner around every queue operation. */
    pyshm_atomic64 owner;
    pyshm_atomic64 ann_seq; /* seqlock of what/pos/n: odd while they change */
    pyshm_atomic64 what;    /* queue id | side, 0: no claim in progress */
    pyshm_atomic64 pos;     /* first position claimed */
    pyshm_atomic64 n;       /* positions claimed */
    pyshm_atomic64 held;    /* blocks held under this entry's holder word, at most */
    uint64_t reserved1[2];
    /* Cache line 2: who the owner is (written when it joins). */
    pyshm_atomic64 pid;
    pyshm_atomic64 pidns;
    pyshm_atomic64 pidfs;
    pyshm_atomic64 joined_ns; /* CLOCK_REALTIME at joining, for introspection */
    uint64_t reserved2[4];
};
_Static_assert(sizeof(struct pyshm_member_entry) == PYSHM_MEMBER_ENTRY_SIZE, "member entry layout");

struct pyshm_member_table {
    uint64_t reserved[8]; /* its first byte is the region's repair lock (repair.h) */
    struct pyshm_member_entry entry[PYSHM_MEMBER_ENTRIES];
};
_Static_assert(sizeof(struct pyshm_member_table) == PYSHM_MEMBERS_SIZE, "member table layout");
_Static_assert(PYSHM_MEMBER_ENTRIES <= 256, "an entry index fits the low byte of a holder word");

/* The member table of one region, as this process reaches it. */
struct pyshm_members {
    struct pyshm_member_table *table;
    int region_fd;          /* any descriptor of the region file: for testing locks; -1: none */
    int lock_fd;            /* this handle's private description (liveness.h); -1: none */
    uint64_t lock_fork_gen; /* fork generation lock_fd was opened in (a fork child opens its own) */
    char name[PYSHM_NAME_MAX + 2]; /* the region's name ("/name"), "" if none: for reopening */
};

/* One entry as used by whoever acts through it: its owner, or a repairer acting for a
 * dead owner. Process-local. */
struct pyshm_member {
    struct pyshm_member_entry *entry; /* NULL: none */
    uint64_t holder;                  /* the holder word of the entry's current incarnation */
    uint64_t ann_seq;                 /* the sequence word this actor last wrote */
    uint32_t index;
    uint64_t fork_gen; /* for a process's own membership: the fork generation it joined in */
};

/* File offset of the lock byte of entry i, and of the region's repair lock. */
static inline uint64_t pyshm_member_lock_offset(uint32_t i)
{
    return PYSHM_MEMBERS_OFFSET + offsetof(struct pyshm_member_table, entry) + (uint64_t)i * PYSHM_MEMBER_ENTRY_SIZE;
}
#define PYSHM_REPAIR_LOCK_OFFSET PYSHM_MEMBERS_OFFSET

static inline uint64_t pyshm_owner_incarnation(uint64_t owner) { return owner >> 3; }
static inline uint64_t pyshm_holder_word(uint64_t incarnation, uint32_t index)
{
    return incarnation << 8 | index;
}

/* Set up this process's view of a table (no shared write): opens the private lock
 * description if one can be had (`name` as for pyshm_lock_open). */
void pyshm_members_init(struct pyshm_members *ms, void *table, int region_fd, const char *name);
/* Leave `self` (give the entry back if nothing is held under it, else leave it for repair)
 * and close the lock description. Safe on a zeroed handle and after a fork. */
void pyshm_members_close(struct pyshm_members *ms, struct pyshm_member *self);

/* Whether self is this process's current membership (not a fork parent's). */
static inline int pyshm_member_is_current(const struct pyshm_member *self)
{
    return self->entry != NULL && self->fork_gen == pyshm_fork_generation();
}

/* Take a free entry: 0 with *self filled, -ENOENT if none is free. */
int pyshm_member_join_free(struct pyshm_members *ms, struct pyshm_member *self);

/* Liveness of entry i's owner, for an owner word read from it: 1 alive (or cannot be
 * told), 0 gone. */
int pyshm_member_alive(const struct pyshm_members *ms, uint32_t i, uint64_t owner);

/* The lock byte of entry i, or the repair lock: 0 taken, -EAGAIN held by another,
 * -ENOTSUP if this process holds no lock description (it cannot repair). A fork child
 * opens its own description first. */
int pyshm_members_lock(struct pyshm_members *ms, uint64_t offset);
void pyshm_members_unlock(const struct pyshm_members *ms, uint64_t offset);

/* Act for entry i, whose owner is gone and whose lock byte this process holds: *actor
 * then announces in the entry and holds blocks under its holder word. */
void pyshm_member_act_for(const struct pyshm_members *ms, uint32_t i, uint64_t owner, struct pyshm_member *actor);
/* Entry i repaired: free it (owner word back to free, lock byte dropped), or, with
 * `self`, make it this process's own membership. 0, or -EAGAIN if the owner word
 * changed meanwhile (it is then left alone). */
int pyshm_member_retire(struct pyshm_members *ms, uint32_t i, uint64_t owner, struct pyshm_member *self);

/* ---- announcements (written only by the actor of the entry) ---------------------------- */

static inline void pyshm_member_write(struct pyshm_member *m, uint64_t what, uint64_t pos, uint64_t n)
{
    struct pyshm_member_entry *e = m->entry;
    uint64_t seq = m->ann_seq;
    atomic_store_explicit(&e->ann_seq, seq + 1, memory_order_relaxed);
    /* Seqlock: the odd sequence before the fields, for any reader. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->what, what, memory_order_relaxed);
    atomic_store_explicit(&e->pos, pos, memory_order_relaxed);
    atomic_store_explicit(&e->n, n, memory_order_relaxed);
    /* A1 / A2 release: pairs with the acquire of the sequence in pyshm_member_read. */
    atomic_store_explicit(&e->ann_seq, seq + 2, memory_order_release);
    m->ann_seq = seq + 2;
}

/* A1: before a claim of n positions from pos of queue `queue_id` on `side`. */
static inline void pyshm_member_announce(struct pyshm_member *m, uint64_t queue_id, enum pyshm_announce_side side,
                                         uint64_t pos, uint64_t n)
{
    pyshm_member_write(m, queue_id | (uint64_t)side, pos, n);
}

/* A2: after every claimed slot is finished, or when a claim was not made after all. One
 * store: a reader that reads `what` as 0 needs neither pos nor n, and one that read the
 * old `what` just before takes a finished claim for a live one, which only makes it
 * wait (repair.h). */
static inline void pyshm_member_clear(struct pyshm_member *m)
{
    /* A2 release: pairs with the acquire load of `what` in pyshm_member_read. */
    atomic_store_explicit(&m->entry->what, 0, memory_order_release);
}

struct pyshm_announcement {
    uint64_t what, pos, n;
};

/* A consistent read of entry e's announcement, in up to `attempts` tries: 1 with *a
 * filled, 0 if its writer stayed mid-write all along (then nothing can be said of it; of
 * a dead writer: it claimed nothing). One try is enough for an entry nobody writes. */
#define PYSHM_READ_LIVE 1000
int pyshm_member_read(const struct pyshm_member_entry *e, struct pyshm_announcement *a, int attempts);

/* Blocks held under the actor's holder word, as an upper bound: raised before a take,
 * lowered after a give. Only the actor of the entry writes it. */
static inline void pyshm_member_held_add(struct pyshm_member *m, int64_t delta)
{
    uint64_t held = atomic_load_explicit(&m->entry->held, memory_order_relaxed);
    atomic_store_explicit(&m->entry->held, held + (uint64_t)delta, memory_order_relaxed);
}

#endif
