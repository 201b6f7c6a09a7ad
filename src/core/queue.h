/*
 * queue.h - a crash-safe FIFO: a ring.h FIFO whose every claim is announced in the
 * claimer's member entry (member.h), with kill points (fault.h) and a waitpoint for each
 * side (wait.h). A pool's free queue and a Ring's FIFO are both queues; so is every
 * queue operation of a repairer, which announces through the dead owner's entry like
 * anyone else (repair.h).
 *
 * The shared part is two cache lines: the producers' counter with the waitpoint they
 * notify (consumers sleep on "not empty"), and the consumers' counter with theirs
 * ("not full"). A notifier reads the waitpoint on the line it already owns.
 *
 * An operation, for the actor `m`:
 *
 *   producer: pyshm_queue_claim(ENQ) announces and claims n positions; the caller stages
 *             each value (pyshm_queue_stage), does what it must before the values can be
 *             seen (the pool layer moves the blocks' states), publishes each, then
 *             pyshm_queue_finish clears the announcement and wakes consumers.
 *   consumer: pyshm_queue_claim(DEQ) announces and claims 1 to max positions; the caller
 *             reads each value, takes what it names, releases each slot, then
 *             pyshm_queue_finish clears the announcement and wakes producers (but for
 *             a pool's free queue, where none sleep).
 *
 * A claim that fails (not ready, or stopped by the caller's check) clears its
 * announcement before returning: no live process leaves a stale one behind.
 *
 * Repair of a position a dead actor announced (pyshm_queue_repair_enq / _deq) is done by
 * a repairer acting for it, under the region's repair lock: see repair.h.
 */
#ifndef PYSHM_CORE_QUEUE_H
#define PYSHM_CORE_QUEUE_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "errors.h"
#include "fault.h"
#include "member.h"
#include "ring.h"
#include "wait.h"

/* Lives in shared memory. Zero-filled, it is the state of a new queue. */
struct pyshm_queue_shared {
    alignas(PYSHM_CACHE_LINE) pyshm_atomic64 enq_pos;
    struct pyshm_waitpoint not_empty; /* consumers sleep here, producers notify */
    alignas(PYSHM_CACHE_LINE) pyshm_atomic64 deq_pos;
    struct pyshm_waitpoint not_full; /* producers sleep here, consumers notify */
};
_Static_assert(sizeof(struct pyshm_queue_shared) == 2 * PYSHM_CACHE_LINE, "queue counters layout");
_Static_assert(offsetof(struct pyshm_queue_shared, deq_pos) == PYSHM_CACHE_LINE,
               "consumer counter must start its own cache line");

/* Process-local handle: geometry validated once, never re-read from shared memory. A
 * queue that starts full (ring.start_full) is a pool's free queue: it has a slot for
 * every block, so no producer ever sleeps waiting for room (a put that finds it full for
 * a moment retries: mempool.h), and its consumers wake nobody. */
struct pyshm_queue {
    struct pyshm_ring ring;
    struct pyshm_queue_shared *shared;
    uint64_t id; /* how announcements name this queue: the region offset of `shared` */
};

/* A value no producer enqueues: a repairer publishes it where a dead producer claimed a
 * position of a Ring and never staged a value; consumers pass over it. */
#define PYSHM_QUEUE_HOLE UINT64_MAX

/* Set up a handle; slots and shared part in memory already zero-filled or in use. */
void pyshm_queue_init(struct pyshm_queue *q, struct pyshm_queue_shared *shared, struct pyshm_ring_slot *slots,
                      uint64_t capacity, int start_full, uint64_t id);

/* What a consumer may check before its claim: called with the value at the first
 * position it is about to claim; 0 to claim, non-zero to leave everything in place (the
 * claim then returns -PYSHM_EEMPTY and the check's context says why). */
typedef int (*pyshm_queue_check)(void *ctx, uint64_t value);

static inline enum pyshm_announce_side pyshm_queue_announce_side(enum pyshm_ring_side side)
{
    return side == PYSHM_RING_ENQ ? PYSHM_ANNOUNCE_ENQ : PYSHM_ANNOUNCE_DEQ;
}

struct pyshm_queue_before_claim {
    const struct pyshm_queue *q;
    struct pyshm_member *m;
    enum pyshm_ring_side side;
    pyshm_queue_check check;
    void *check_ctx;
};

/* ring.h's hook, right before each claiming CAS. */
static PYSHM_ALWAYS_INLINE int pyshm_queue_announce_then_claim(void *ctx, uint64_t pos, uint64_t n)
{
    struct pyshm_queue_before_claim *b = ctx;
    if (b->check && b->check(b->check_ctx, pyshm_ring_value(&b->q->ring, pos)) != 0)
        return 1;
    /* A1: the announcement, then (in ring.h) the release CAS that claims. */
    pyshm_member_announce(b->m, b->q->id, pyshm_queue_announce_side(b->side), pos, n);
    return 0;
}

/*
 * Announce and claim between min and max positions of `side` (max <= capacity): the
 * number claimed with *pos set, -PYSHM_EFULL (ENQ) / -PYSHM_EEMPTY (DEQ) when fewer than
 * min are ready or `check` (DEQ only, may be NULL) refused, or -PYSHM_ECORRUPT.
 */
static PYSHM_ALWAYS_INLINE int64_t pyshm_queue_claim(const struct pyshm_queue *q, struct pyshm_member *m, enum pyshm_ring_side side,
                          uint64_t min, uint64_t max, uint64_t *pos, pyshm_queue_check check, void *ctx)
{
    struct pyshm_queue_before_claim b = {q, m, side, check, ctx};
    int64_t n = pyshm_ring_claim(&q->ring, side, min, max, pos, pyshm_queue_announce_then_claim, &b);
    if (n > 0) {
        PYSHM_FAULT(side == PYSHM_RING_ENQ ? "queue.enq.claimed" : "queue.deq.claimed");
        return n;
    }
    /* Not claimed: no announcement may stay behind (a stale one would look like a live
     * claim to a repairer). Clearing an already clear one is harmless. */
    pyshm_member_clear(m);
    if (n == PYSHM_RING_CORRUPT)
        return -PYSHM_ECORRUPT;
    return side == PYSHM_RING_ENQ ? -PYSHM_EFULL : -PYSHM_EEMPTY;
}

static inline void pyshm_queue_stage(const struct pyshm_queue *q, uint64_t pos, uint64_t value)
{
    pyshm_ring_stage(&q->ring, pos, value);
    PYSHM_FAULT("queue.enq.staged");
}

static inline void pyshm_queue_publish(const struct pyshm_queue *q, uint64_t pos)
{
    pyshm_ring_publish(&q->ring, pos);
    PYSHM_FAULT("queue.enq.published");
}

static inline uint64_t pyshm_queue_value(const struct pyshm_queue *q, uint64_t pos)
{
    return pyshm_ring_value(&q->ring, pos);
}

static inline void pyshm_queue_release(const struct pyshm_queue *q, uint64_t pos)
{
    pyshm_ring_release(&q->ring, pos);
    PYSHM_FAULT("queue.deq.released");
}

/* Positions of `side` were finished (by their claimer or a repairer): wake the other
 * side. Nobody waits for room in a queue that starts full: no fence to pay there. */
static PYSHM_ALWAYS_INLINE void pyshm_queue_wake(const struct pyshm_queue *q, enum pyshm_ring_side side)
{
    if (side == PYSHM_RING_DEQ && q->ring.start_full)
        return;
    pyshm_wait_notify(side == PYSHM_RING_ENQ ? &q->shared->not_empty : &q->shared->not_full);
}

/* Every position claimed is finished: clear the announcement (A2) and wake the other side. */
static PYSHM_ALWAYS_INLINE void pyshm_queue_finish(const struct pyshm_queue *q, struct pyshm_member *m,
                                                   enum pyshm_ring_side side)
{
    /* A2: every slot is finished before the announcement goes. */
    pyshm_member_clear(m);
    pyshm_queue_wake(q, side);
}

static inline uint64_t pyshm_queue_count(const struct pyshm_queue *q) { return pyshm_ring_count(&q->ring); }

/* ---- repair (repair.h): positions a dead actor claimed ----------------------------------- */

enum pyshm_position_fate {
    PYSHM_POSITION_DONE,    /* finished, repaired now, or never claimed: nothing more to do */
    PYSHM_POSITION_LIVE,    /* a live process announces it: left alone for now */
};

/*
 * A position pos on the ENQ side of q that a dead actor may have claimed. If it was
 * staged, `complete` finishes what the producer was doing with the staged value (0 to
 * publish it, non-zero to publish a hole instead); if it was never staged, `fill` gives
 * the value to publish in its place (returns 0 with *value set, or non-zero for a hole),
 * then `complete` runs on it. `live` says whether a live process announces pos.
 */
struct pyshm_queue_repairer {
    int (*live)(void *ctx, const struct pyshm_queue *q, enum pyshm_announce_side side, uint64_t pos);
    int (*fill)(void *ctx, const struct pyshm_queue *q, uint64_t pos, uint64_t *value);
    int (*complete)(void *ctx, const struct pyshm_queue *q, uint64_t value);
    /* DEQ side: take what the value names for the dead consumer (0) or leave it. */
    void (*take)(void *ctx, const struct pyshm_queue *q, uint64_t value);
    void *ctx;
};
enum pyshm_position_fate pyshm_queue_repair_enq(const struct pyshm_queue *q, uint64_t pos,
                                                const struct pyshm_queue_repairer *how);
/* A position pos on the DEQ side that a dead actor may have claimed and not released:
 * `take` takes what it names for the dead (unless it took it already), then the slot is
 * released. */
enum pyshm_position_fate pyshm_queue_repair_deq(const struct pyshm_queue *q, uint64_t pos,
                                                const struct pyshm_queue_repairer *how);

#endif
