/*
 * repair.h - what a process killed in the middle of a queue operation leaves, put right
 * by a survivor.
 *
 * pyshm_region_repair, run by any live process, under the region's repair lock (a word of
 * the announcement table holding the repairer's holder word; taken over when that
 * process is gone), in this order:
 *
 *   1. Slots. For every announcement (announce.h) whose owner is gone, each position it
 *      names that is still unfinished and that no live process announces:
 *        - claimed by a producer and never published: a hole (PYSHM_RING_HOLE) is
 *          published there, which consumers pass over;
 *        - claimed by a consumer and never released: if the block named there is still
 *          in the queue's state (FREE in a free queue, IN_RING in a ring), nobody took it:
 *          the repairer takes it and puts it back into its pool; then the slot is
 *          released. (Consumers take a block before releasing its slot, so a block whose
 *          slot was released is on record as HELD by its taker.)
 *      The entry is then freed.
 *   2. Orphans. A block that is FREE or IN_RING but in no queue slot, whose holder (the
 *      last process that took it, which is the one that queued it) is gone, was being
 *      queued when that process died: it goes back to its pool. To tell, every queue
 *      of the region is scanned for the blocks it holds, between two reads of each
 *      candidate's state word: a block whose state did not change during the scan
 *      could not have left a slot (a consumer changes the state before it releases).
 *   3. Held blocks. Every block HELD by a process that is gone goes back (mempool.h,
 *      pyshm_pool_reclaim).
 *
 * Step 1 comes before 3 so that a block still named in a stuck slot is never freed
 * (and reused) before its slot is released. The repairer announces nothing; its own
 * queue operations are not repairable if it dies mid-way (the lock is then taken over
 * and the next repair goes on).
 *
 * Why a slot is never taken from a live process: a claimer announces before its claim
 * (A1 in announce.h), so a repairer that sees the claim in the counter sees the
 * announcement, and it stays until the slot is finished (A2). A position is repaired
 * only if it is unfinished, a gone process announced it, and no live process does; the
 * slot's sequence word is then changed with a CAS from its unfinished value, so a
 * claimer that finished in the meantime makes the repair a no-op.
 */
#ifndef PYSHM_CORE_REPAIR_H
#define PYSHM_CORE_REPAIR_H

#include <stdint.h>

struct pyshm_region;

struct pyshm_repair_report {
    uint64_t entries;  /* announcements of gone processes cleared */
    uint64_t holes;    /* slots claimed by a gone producer, published as holes */
    uint64_t released; /* slots claimed by a gone consumer, released */
    uint64_t returned; /* blocks put back into their pools (all three steps) */
};

/* 0 with *report filled, -EBUSY (a live process is repairing), -ENOMEM, or
 * -PYSHM_ECORRUPT (the region's object list is garbage). With only_after_deaths, does
 * nothing (and returns 0) unless an announcement entry is owned by a process that is gone:
 * the cheap check a waiting call makes now and then (it reads /proc for each entry in use). */
int pyshm_region_repair(struct pyshm_region *r, int only_after_deaths, struct pyshm_repair_report *report);

#endif
