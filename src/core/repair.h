/*
 * repair.h - putting right what processes that died mid-operation left in a region.
 *
 * pyshm_repair runs in any live process that holds a lock description (liveness.h). It
 * takes the region's repair lock (an OFD lock on the first byte of the member table: the
 * kernel lets go of it if the repairer dies, so a repair is never stuck behind a dead
 * repairer), then, in this order:
 *
 *   1. Dead members. Every entry (member.h) whose owner is gone, and whose lock byte it
 *      can take (a joiner may be repairing that one itself): from here on the repairer
 *      acts for that owner, through the owner's own entry: it announces there, and the
 *      blocks it moves carry the owner's holder word.
 *   2. Their blocks. The blocks each dead owner holds: a scan of the state words of every
 *      pool, up to the pool's touched mark (mempool.h), for HELD under the owner's holder
 *      word. Skipped for an owner whose held count is 0.
 *   3. Their claims. For each position a dead owner announced (queue.h):
 *        - producer side, never staged: a pool's free queue gets one of the dead owner's
 *          held blocks of that pool (there is one: the block it was putting is still
 *          HELD, the CAS comes after staging), a Ring gets a hole that consumers pass over;
 *        - producer side, staged: the staged block is moved to FREE or IN_RING if the dead
 *          owner had not done it yet, and published;
 *        - consumer side, not released: the block named there is taken for the dead owner
 *          if it had not taken it yet (a message claimed by a consumer that died is that
 *          consumer's), then the slot is released.
 *      A position that a live process announces too is left alone this time (the dead
 *      owner lost the race for it, or the live one is about to clear a claim it lost):
 *      the entry then stays dead for a later repair.
 *   4. Their held blocks go back to their pools, through the free queues, announced in
 *      the dead owner's entry. All claims of all dead owners are repaired first, so no
 *      free queue is blocked by a dead getter's slot by then; one blocked by a live
 *      process's unfinished get longer than the patience leaves the entry for later.
 *   5. Entries fully repaired are freed (owner word back to free, lock byte dropped).
 *
 * Every step works from what shared memory says and is idempotent, so a repairer killed
 * at any point is repaired by the next one: its announcements are in the dead owner's
 * entry, the blocks it moved carry the dead owner's holder word, and a slot it reserved
 * (FILLING, DRAINING in ring.h) is finished by the next repairer, which is the only one
 * running (the lock).
 *
 * Why a slot is never taken from a live process: a claimer announces before its claim
 * and clears after finishing (A1, A2 in member.h), so a repairer that sees a position
 * claimed (acquire load of the counter) sees the announcement of whoever claimed it,
 * until it is finished; and every repair step changes a slot only by a CAS from the
 * unfinished phase it expects (ring.h), after reserving it, so a claimer that finished
 * meanwhile makes it a no-op.
 */
#ifndef PYSHM_CORE_REPAIR_H
#define PYSHM_CORE_REPAIR_H

#include <stdint.h>

struct pyshm_space;

struct pyshm_repair_report {
    uint64_t entries;  /* dead members fully repaired and freed */
    uint64_t pending;  /* dead members left for a later repair (something still blocked) */
    uint64_t holes;    /* unstaged positions of dead producers of Rings, published as holes */
    uint64_t finished; /* positions of dead producers published (staged, or refilled) */
    uint64_t released; /* positions of dead consumers released */
    uint64_t returned; /* blocks put back into their pools */
};

/* 0 with *report filled; -EBUSY (another process is repairing); -ENOTSUP (this process
 * holds no lock description, so it cannot repair); -ENOMEM; -PYSHM_ECORRUPT (the
 * region's object list is garbage). With only_after_deaths, returns 0 at once unless
 * some member is gone: the cheap check a waiting call makes now and then. */
int pyshm_repair(struct pyshm_space *s, int only_after_deaths, struct pyshm_repair_report *report);

/* Whether some member of the region (not this process's) is gone. */
int pyshm_repair_needed(struct pyshm_space *s);

#endif
