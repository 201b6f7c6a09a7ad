/* queue.c - announced claims, finishing, and the repair of positions of dead actors. */
#include "queue.h"

#include "errors.h"

void pyshm_queue_init(struct pyshm_queue *q, struct pyshm_queue_shared *shared, struct pyshm_ring_slot *slots,
                      uint64_t capacity, int start_full, uint64_t id)
{
    q->shared = shared;
    q->id = id;
    q->ring.enq_pos = &shared->enq_pos;
    q->ring.deq_pos = &shared->deq_pos;
    q->ring.slots = slots;
    pyshm_ring_set_capacity(&q->ring, capacity);
    q->ring.start_full = start_full;
}

/* Whether pos is a position of `side` that some claimer has taken (the counter is past it).
 * Acquire (A1): the announcements of the claims counted are visible afterwards. */
static int claimed(const struct pyshm_queue *q, enum pyshm_ring_side side, uint64_t pos)
{
    uint64_t head = pyshm_ring_head(&q->ring, side, memory_order_acquire);
    return (int64_t)(head - pos) > 0;
}

/* Publish a staged position, after the caller's completion: its value, or a hole. */
static void complete_staged(const struct pyshm_queue *q, uint64_t pos, const struct pyshm_queue_repairer *how)
{
    uint64_t value = pyshm_ring_value(&q->ring, pos);
    if (value != PYSHM_QUEUE_HOLE && how->complete(how->ctx, q, value) != 0)
        pyshm_ring_fill(&q->ring, pos, PYSHM_QUEUE_HOLE); /* still ours: STAGED is invisible to consumers */
    pyshm_ring_complete(&q->ring, pos);
}

/* A slot that keeps changing under a repair is garbage written by a faulty process. */
#define REPAIR_LOOKS 64

enum pyshm_position_fate pyshm_queue_repair_enq(const struct pyshm_queue *q, uint64_t pos,
                                                const struct pyshm_queue_repairer *how)
{
    if (!claimed(q, PYSHM_RING_ENQ, pos))
        return PYSHM_POSITION_DONE; /* the dead actor lost its race or never made its CAS */
    for (int look = 0; look < REPAIR_LOOKS; look++) {
        int phase = pyshm_ring_phase_now(&q->ring, pos);
        if (phase == PYSHM_RING_EMPTY) {
            /* Claimed, nothing staged: by the dead actor, unless a live claimer announces it. */
            if (how->live(how->ctx, q, PYSHM_ANNOUNCE_ENQ, pos))
                return PYSHM_POSITION_LIVE;
            if (!pyshm_ring_reserve_fill(&q->ring, pos))
                continue; /* staged meanwhile: look again */
            phase = PYSHM_RING_FILLING;
        }
        if (phase == PYSHM_RING_FILLING) {
            /* Reserved by us, or by a repairer that died here (repairs take turns). */
            uint64_t value;
            if (how->fill(how->ctx, q, pos, &value) != 0)
                value = PYSHM_QUEUE_HOLE;
            pyshm_ring_fill(&q->ring, pos, value);
            PYSHM_FAULT("repair.enq.filled");
        } else if (phase == PYSHM_RING_STAGED) {
            /* Staged by a claimer that will publish it itself if it lives: it announces. */
            if (how->live(how->ctx, q, PYSHM_ANNOUNCE_ENQ, pos))
                return PYSHM_POSITION_LIVE;
        } else {
            return PYSHM_POSITION_DONE; /* published already (or garbage: nothing to do) */
        }
        complete_staged(q, pos, how);
        pyshm_queue_wake(q, PYSHM_RING_ENQ);
        return PYSHM_POSITION_DONE;
    }
    return PYSHM_POSITION_DONE;
}

enum pyshm_position_fate pyshm_queue_repair_deq(const struct pyshm_queue *q, uint64_t pos,
                                                const struct pyshm_queue_repairer *how)
{
    if (!claimed(q, PYSHM_RING_DEQ, pos))
        return PYSHM_POSITION_DONE;
    for (int look = 0; look < REPAIR_LOOKS; look++) {
        int phase = pyshm_ring_phase_now(&q->ring, pos);
        if (phase == PYSHM_RING_FULL) {
            if (how->live(how->ctx, q, PYSHM_ANNOUNCE_DEQ, pos))
                return PYSHM_POSITION_LIVE;
            if (!pyshm_ring_reserve_drain(&q->ring, pos))
                continue; /* released meanwhile: look again */
            PYSHM_FAULT("repair.deq.reserved");
        } else if (phase != PYSHM_RING_DRAINING) {
            return PYSHM_POSITION_DONE; /* released already (or garbage) */
        }
        /* Reserved by us or by a repairer that died here: the value cannot change now. */
        uint64_t value = pyshm_ring_value(&q->ring, pos);
        if (value != PYSHM_QUEUE_HOLE)
            how->take(how->ctx, q, value);
        pyshm_ring_drained(&q->ring, pos);
        pyshm_queue_wake(q, PYSHM_RING_DEQ);
        return PYSHM_POSITION_DONE;
    }
    return PYSHM_POSITION_DONE;
}
