/*
 * ring.h - a bounded FIFO of 64-bit values in shared memory, lock-free, for any number
 * of producer and consumer processes.
 *
 * Algorithm: per-slot sequence numbers (Dmitry Vyukov's bounded MPMC queue).
 * Every slot carries a sequence word that says which lap of the ring it is ready for:
 *
 *   slot.seq == 2 pos             the slot is empty and waits for the producer of pos
 *   slot.seq == 2 pos + 1         the slot holds the value enqueued at position pos
 *   slot.seq == 2 (pos + cap)     the value was consumed; the slot waits for pos + cap
 *
 * (Vyukov's original uses pos, pos + 1 and pos + cap, which cannot tell "full" from
 * "free for the next lap" when cap is 1; doubling keeps the two apart for every cap.)
 * A producer claims position `pos` by advancing enq_pos with a CAS, writes the value and
 * publishes it by storing seq = 2 pos + 1. A consumer claims `pos` by advancing deq_pos
 * and frees the slot by storing seq = 2 (pos + cap). Each side touches its own counter and the
 * slot it works on; neither ever reads the other side's counter, and no side ever waits
 * for another to finish: a slot that is not ready reads as "full" or "empty" at once.
 *
 * Memory ordering. The position counters order nothing: they are only claimed, with
 * relaxed CAS. All ordering is carried by the slot sequence word:
 *
 *   label  release (writer side)                 acquire (reader side)
 *   R1     enqueue: store seq = 2pos + 1         dequeue: load seq, sees 2pos + 1
 *          makes the value the producer wrote (and everything it wrote before, such as
 *          the block's bytes) visible to the consumer that claims pos.
 *   R2     dequeue: store seq = 2(pos + cap)     enqueue: load seq, sees 2(pos + cap)
 *          makes the consumer's read of the value happen before the producer of the
 *          next lap overwrites it.
 *
 * Counters are 64-bit and run freely from their start value. Comparisons use the signed
 * difference of two values (sequence words are counters times two, modulo 2^64), so
 * wrapping past 2^64 is harmless when the capacity is a power of two (pos % cap stays
 * continuous). For other capacities the slot index jumps at the wrap; at 10^9 operations
 * a second a counter wraps after 292 years even doubled, so this is not a practical
 * concern, and 64-bit counters also make ABA on a slot impossible in practice (a slot
 * would have to be lapped 2^63 / cap times during one CAS).
 *
 * Variants and what each is correct for:
 *   pyshm_ring_enqueue_mp   any number of concurrent producers
 *   pyshm_ring_enqueue_sp   exactly one producer at a time (across all processes)
 *   pyshm_ring_dequeue_mc   any number of concurrent consumers
 *   pyshm_ring_dequeue_sc   exactly one consumer at a time (across all processes)
 * An sp/sc call may run concurrently with any call of the other side.
 *
 * Shared memory may be written by a faulty or hostile process. Nothing here trusts what
 * it reads: the capacity and slot array come from the process-local handle, a slot index
 * is always pos % capacity, and a retry loop that a garbage sequence word could keep
 * going gives up with -PYSHM_ECORRUPT instead of spinning.
 *
 * Following ck_ring, the shared part (struct pyshm_ring_counters) holds only counters;
 * the slot array and capacity are passed in by the process-local handle, so the same
 * code works at a different mapping address in every process.
 */
#ifndef PYSHM_CORE_RING_H
#define PYSHM_CORE_RING_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "announce.h"
#include "atomics.h"
#include "fault.h"
#include "process.h"
#include "wait.h"

struct pyshm_ring_slot {
    pyshm_atomic64 seq;
    pyshm_atomic64 value; /* relaxed: ordered by seq (R1, R2) */
};
_Static_assert(sizeof(struct pyshm_ring_slot) == 16, "ring slot layout");

/*
 * Lives in shared memory. Producer and consumer counters on separate cache lines. Each
 * line also holds the waitpoint its side notifies (wait.h): producers read not_empty's
 * sleeper count on the line they already own, consumers likewise not_full's.
 */
struct pyshm_ring_counters {
    alignas(PYSHM_CACHE_LINE) pyshm_atomic64 enq_pos;
    struct pyshm_waitpoint not_empty; /* consumers sleep here, producers notify */
    alignas(PYSHM_CACHE_LINE) pyshm_atomic64 deq_pos;
    struct pyshm_waitpoint not_full; /* producers sleep here, consumers notify */
};
_Static_assert(sizeof(struct pyshm_ring_counters) == 2 * PYSHM_CACHE_LINE, "ring counters layout");
_Static_assert(offsetof(struct pyshm_ring_counters, deq_pos) == PYSHM_CACHE_LINE,
               "consumer counter must start its own cache line");

/* Process-local handle: geometry validated once, never re-read from shared memory. */
struct pyshm_ring {
    struct pyshm_ring_counters *counters;
    struct pyshm_ring_slot *slots;
    uint64_t capacity;
    struct pyshm_announcer *announcer; /* NULL: claims are not announced (announce.h) */
    uint64_t id;                        /* how announcements name this queue: its counters' offset */
};

/* A value no producer enqueues: repair publishes it in a slot that a dead producer
 * claimed and never filled (repair.h); consumers pass over it. */
#define PYSHM_RING_HOLE UINT64_MAX

/* This ring's announcement entry for the operation about to start, or NULL. */
static inline struct pyshm_announce_entry *pyshm_ring_announcer(const struct pyshm_ring *r)
{
    return r->announcer ? pyshm_announcer_entry(r->announcer, pyshm_holder_self_fast()) : NULL;
}

/* A claim that loses this many races in a row gives up: contention between correct
 * processes never comes close, a garbage sequence word could loop forever. */
#define PYSHM_RING_MAX_RETRIES (1u << 20)

/* Sequence word of a slot that waits for the producer of position pos. */
static inline uint64_t pyshm_ring_seq_free(uint64_t pos) { return pos << 1; }
/* Sequence word of a slot that holds the value enqueued at position pos. */
static inline uint64_t pyshm_ring_seq_full(uint64_t pos) { return (pos << 1) | 1u; }

static inline void pyshm_ring_set_counters(const struct pyshm_ring *r, uint64_t enq, uint64_t deq)
{
    struct pyshm_ring_counters *c = r->counters;
    atomic_store_explicit(&c->enq_pos, enq, memory_order_relaxed);
    atomic_store_explicit(&c->deq_pos, deq, memory_order_relaxed);
    atomic_store_explicit(&c->not_empty.epoch, 0, memory_order_relaxed);
    atomic_store_explicit(&c->not_empty.waiters, 0, memory_order_relaxed);
    atomic_store_explicit(&c->not_full.epoch, 0, memory_order_relaxed);
    atomic_store_explicit(&c->not_full.waiters, 0, memory_order_relaxed);
}

/* Empty ring whose first position is `start` (tests start near 2^64). Not concurrent. */
static inline void pyshm_ring_init(const struct pyshm_ring *r, uint64_t start)
{
    for (uint64_t i = 0; i < r->capacity; i++) {
        uint64_t pos = start + i;
        atomic_store_explicit(&r->slots[pos % r->capacity].seq, pyshm_ring_seq_free(pos), memory_order_relaxed);
        atomic_store_explicit(&r->slots[pos % r->capacity].value, 0, memory_order_relaxed);
    }
    pyshm_ring_set_counters(r, start, start);
}

/* Full ring holding values[0..capacity) in order, first position 0. Not concurrent. */
static inline void pyshm_ring_init_full(const struct pyshm_ring *r, uint64_t (*value_at)(uint64_t))
{
    for (uint64_t i = 0; i < r->capacity; i++) {
        atomic_store_explicit(&r->slots[i].seq, pyshm_ring_seq_full(i), memory_order_relaxed);
        atomic_store_explicit(&r->slots[i].value, value_at(i), memory_order_relaxed);
    }
    pyshm_ring_set_counters(r, r->capacity, 0);
}

static inline struct pyshm_ring_slot *pyshm_ring_slot_at(const struct pyshm_ring *r, uint64_t pos)
{
    return &r->slots[pos % r->capacity];
}

/* Store the value at a claimed position and publish it. */
static inline void pyshm_ring_publish(struct pyshm_ring_slot *slot, uint64_t pos, uint64_t value)
{
    atomic_store_explicit(&slot->value, value, memory_order_relaxed);
    /* R1 release: pairs with the acquire load of seq in dequeue. */
    atomic_store_explicit(&slot->seq, pyshm_ring_seq_full(pos), memory_order_release);
    PYSHM_FAULT("queue.enq.published");
}

/* 0, -PYSHM_EFULL, or -PYSHM_ECORRUPT. */
static inline int pyshm_ring_enqueue_mp(const struct pyshm_ring *r, uint64_t value)
{
    struct pyshm_announce_entry *e = pyshm_ring_announcer(r);
    uint64_t pos = atomic_load_explicit(&r->counters->enq_pos, memory_order_relaxed);
    for (uint32_t retries = 0;;) {
        struct pyshm_ring_slot *slot = pyshm_ring_slot_at(r, pos);
        /* R2 acquire: pairs with the release store of seq in dequeue. */
        uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - pyshm_ring_seq_free(pos));
        if (diff == 0) {
            pyshm_announce(e, r->id, PYSHM_ANNOUNCE_ENQ, pos, 1);
            /* A1 release: the announcement is visible to whoever sees the claim. */
            if (atomic_compare_exchange_weak_explicit(&r->counters->enq_pos, &pos, pos + 1,
                                                      memory_order_release, memory_order_relaxed)) {
                PYSHM_FAULT("queue.enq.claimed");
                pyshm_ring_publish(slot, pos, value);
                pyshm_announce_clear(e);
                return 0;
            }
            /* pos now holds the current counter; retry there. */
        } else if (diff < 0) {
            /* The slot still holds the value of the previous lap. */
            return -PYSHM_EFULL;
        } else {
            /* Another producer published pos already, so enq_pos has moved past it:
             * its CAS is sequenced before its R1 release, which our acquire saw. */
            pos = atomic_load_explicit(&r->counters->enq_pos, memory_order_relaxed);
        }
        if (++retries >= PYSHM_RING_MAX_RETRIES)
            return -PYSHM_ECORRUPT;
    }
}

/* Exactly one producer: no other process advances enq_pos, so no CAS is needed. */
static inline int pyshm_ring_enqueue_sp(const struct pyshm_ring *r, uint64_t value)
{
    uint64_t pos = atomic_load_explicit(&r->counters->enq_pos, memory_order_relaxed);
    struct pyshm_ring_slot *slot = pyshm_ring_slot_at(r, pos);
    /* R2 acquire: pairs with the release store of seq in dequeue. */
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
    int64_t diff = (int64_t)(seq - pyshm_ring_seq_free(pos));
    if (diff < 0)
        return -PYSHM_EFULL;
    if (diff > 0)
        return -PYSHM_ECORRUPT; /* a slot ahead of the only producer */
    struct pyshm_announce_entry *e = pyshm_ring_announcer(r);
    pyshm_announce(e, r->id, PYSHM_ANNOUNCE_ENQ, pos, 1);
    /* A1 release: the announcement is visible to whoever sees the claim. */
    atomic_store_explicit(&r->counters->enq_pos, pos + 1, memory_order_release);
    PYSHM_FAULT("queue.enq.claimed");
    pyshm_ring_publish(slot, pos, value);
    pyshm_announce_clear(e);
    return 0;
}

/*
 * Consumers claim positions and release their slots in two steps, so that a caller can
 * take ownership of what it claimed before the slot goes back to the producers (a
 * block's new owner is then on record before the slot can be reused: repair.h). A claim
 * leaves its announcement in place; pyshm_ring_finish releases the slots and clears it.
 * pyshm_ring_dequeue_* do both at once.
 *
 * A consumer may inspect the value at the head before claiming it. `accept` returns 0 to
 * claim it or a negative error to leave it in the ring and return that error. NULL
 * accepts everything. Holes (PYSHM_RING_HOLE) are claimed, released and passed over
 * without being shown to `accept`.
 */
typedef int (*pyshm_ring_accept_fn)(void *ctx, uint64_t value);

static inline void pyshm_ring_release_slot(const struct pyshm_ring *r, struct pyshm_ring_slot *slot,
                                           uint64_t pos)
{
    /* R2 release: pairs with the acquire load of seq in enqueue. */
    atomic_store_explicit(&slot->seq, pyshm_ring_seq_free(pos + r->capacity), memory_order_release);
    PYSHM_FAULT("queue.deq.released");
}

/* Release the n slots claimed from pos on, then clear the announcement (A2). */
static inline void pyshm_ring_finish(const struct pyshm_ring *r, uint64_t pos, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        pyshm_ring_release_slot(r, pyshm_ring_slot_at(r, pos + i), pos + i);
    pyshm_announce_clear(pyshm_ring_announcer(r));
}

/*
 * Claim the head: 0 with *pos and *value set (finish it with pyshm_ring_finish(r, *pos,
 * 1)), -PYSHM_EEMPTY, -PYSHM_ECORRUPT, or the error `accept` returned. `single`: exactly
 * one consumer at a time (no other process advances deq_pos, so no CAS is needed).
 */
static inline int pyshm_ring_claim(const struct pyshm_ring *r, int single, uint64_t *pos_out, uint64_t *value,
                                   pyshm_ring_accept_fn accept, void *ctx)
{
    struct pyshm_announce_entry *e = pyshm_ring_announcer(r);
    uint64_t pos = atomic_load_explicit(&r->counters->deq_pos, memory_order_relaxed);
    for (uint32_t retries = 0;;) {
        struct pyshm_ring_slot *slot = pyshm_ring_slot_at(r, pos);
        /* R1 acquire: pairs with the release store of seq in enqueue (publish). */
        uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - pyshm_ring_seq_full(pos));
        if (diff == 0) {
            uint64_t v = atomic_load_explicit(&slot->value, memory_order_relaxed);
            int hole = v == PYSHM_RING_HOLE;
            if (accept && !hole) {
                int rc = accept(ctx, v);
                if (rc < 0)
                    return rc;
            }
            pyshm_announce(e, r->id, PYSHM_ANNOUNCE_DEQ, pos, 1);
            int claimed;
            if (single) {
                /* A1 release, as the CAS below. */
                atomic_store_explicit(&r->counters->deq_pos, pos + 1, memory_order_release);
                claimed = 1;
            } else {
                /* A1 release: the announcement is visible to whoever sees the claim. */
                claimed = atomic_compare_exchange_weak_explicit(&r->counters->deq_pos, &pos, pos + 1,
                                                                memory_order_release, memory_order_relaxed);
            }
            if (claimed) {
                PYSHM_FAULT("queue.deq.claimed");
                if (hole) {
                    pyshm_ring_finish(r, pos, 1);
                    pos++;
                    continue; /* not counted as a retry: each hole is passed once */
                }
                *pos_out = pos;
                *value = v;
                return 0;
            }
        } else if (diff < 0) {
            /* Not yet published for this lap. */
            return -PYSHM_EEMPTY;
        } else if (single) {
            return -PYSHM_ECORRUPT;
        } else {
            /* Another consumer took pos: deq_pos has moved past it (see enqueue_mp). */
            pos = atomic_load_explicit(&r->counters->deq_pos, memory_order_relaxed);
        }
        if (++retries >= PYSHM_RING_MAX_RETRIES)
            return -PYSHM_ECORRUPT;
    }
}

static inline int pyshm_ring_dequeue(const struct pyshm_ring *r, int single, uint64_t *value,
                                     pyshm_ring_accept_fn accept, void *ctx)
{
    uint64_t pos;
    int rc = pyshm_ring_claim(r, single, &pos, value, accept, ctx);
    if (rc == 0)
        pyshm_ring_finish(r, pos, 1);
    return rc;
}

/* 0 with *value set, -PYSHM_EEMPTY, -PYSHM_ECORRUPT, or the error `accept` returned. */
static inline int pyshm_ring_dequeue_mc(const struct pyshm_ring *r, uint64_t *value,
                                        pyshm_ring_accept_fn accept, void *ctx)
{
    return pyshm_ring_dequeue(r, 0, value, accept, ctx);
}

/* Exactly one consumer: no other process advances deq_pos. */
static inline int pyshm_ring_dequeue_sc(const struct pyshm_ring *r, uint64_t *value,
                                        pyshm_ring_accept_fn accept, void *ctx)
{
    return pyshm_ring_dequeue(r, 1, value, accept, ctx);
}

/*
 * Bursts: one CAS claims n consecutive positions, so a batch costs one contended
 * operation instead of n. A slot that is ready for position p stays ready until the
 * process that claims p changes it, and nobody else can claim p while the counter still
 * reads below p, so checking the slots before the CAS is enough. Both bursts use the CAS
 * whatever the flags: they are correct for any number of producers and consumers.
 */

/* All n values or none: 0, -PYSHM_EFULL (fewer than n free slots), -PYSHM_ECORRUPT. */
static inline int pyshm_ring_enqueue_burst(const struct pyshm_ring *r, const uint64_t *values, uint64_t n)
{
    if (n == 0)
        return 0;
    if (n > r->capacity)
        return -PYSHM_EFULL;
    struct pyshm_announce_entry *e = pyshm_ring_announcer(r);
    uint64_t pos = atomic_load_explicit(&r->counters->enq_pos, memory_order_relaxed);
    for (uint32_t retries = 0;;) {
        uint64_t ready = 0;
        int64_t diff = 0;
        for (; ready < n; ready++) {
            /* R2 acquire: pairs with the release store of seq in dequeue. */
            uint64_t seq = atomic_load_explicit(&pyshm_ring_slot_at(r, pos + ready)->seq, memory_order_acquire);
            diff = (int64_t)(seq - pyshm_ring_seq_free(pos + ready));
            if (diff != 0)
                break;
        }
        if (ready == n) {
            pyshm_announce(e, r->id, PYSHM_ANNOUNCE_ENQ, pos, n);
            /* A1 release: the announcement is visible to whoever sees the claim. */
            if (atomic_compare_exchange_weak_explicit(&r->counters->enq_pos, &pos, pos + n,
                                                      memory_order_release, memory_order_relaxed)) {
                PYSHM_FAULT("queue.enq.claimed");
                for (uint64_t i = 0; i < n; i++)
                    pyshm_ring_publish(pyshm_ring_slot_at(r, pos + i), pos + i, values[i]);
                pyshm_announce_clear(e);
                return 0;
            }
        } else if (diff < 0) {
            return -PYSHM_EFULL;
        } else {
            pos = atomic_load_explicit(&r->counters->enq_pos, memory_order_relaxed);
        }
        if (++retries >= PYSHM_RING_MAX_RETRIES)
            return -PYSHM_ECORRUPT;
    }
}

/*
 * Claim between 1 and max positions from the head: the count claimed, with *pos_out set
 * (finish them with pyshm_ring_finish), -PYSHM_EEMPTY, or -PYSHM_ECORRUPT. Claims made
 * only of holes are finished here and the search goes on; otherwise holes may be among
 * the values, for the caller to pass over.
 */
static inline int64_t pyshm_ring_claim_burst(const struct pyshm_ring *r, uint64_t *pos_out, uint64_t *values,
                                             uint64_t max)
{
    struct pyshm_announce_entry *e = pyshm_ring_announcer(r);
    uint64_t pos = atomic_load_explicit(&r->counters->deq_pos, memory_order_relaxed);
    for (uint32_t retries = 0;;) {
        uint64_t ready = 0, holes = 0;
        int64_t diff = 0;
        for (; ready < max && ready < r->capacity; ready++) {
            /* R1 acquire: pairs with the release store of seq in enqueue (publish). */
            uint64_t seq = atomic_load_explicit(&pyshm_ring_slot_at(r, pos + ready)->seq, memory_order_acquire);
            diff = (int64_t)(seq - pyshm_ring_seq_full(pos + ready));
            if (diff != 0)
                break;
            values[ready] = atomic_load_explicit(&pyshm_ring_slot_at(r, pos + ready)->value, memory_order_relaxed);
            holes += values[ready] == PYSHM_RING_HOLE;
        }
        if (ready > 0) {
            pyshm_announce(e, r->id, PYSHM_ANNOUNCE_DEQ, pos, ready);
            /* A1 release: the announcement is visible to whoever sees the claim. */
            if (atomic_compare_exchange_weak_explicit(&r->counters->deq_pos, &pos, pos + ready,
                                                      memory_order_release, memory_order_relaxed)) {
                PYSHM_FAULT("queue.deq.claimed");
                if (holes < ready) {
                    *pos_out = pos;
                    return (int64_t)ready;
                }
                pyshm_ring_finish(r, pos, ready);
                pos += ready;
                continue; /* only holes: not counted as a retry */
            }
        } else if (diff < 0) {
            return -PYSHM_EEMPTY;
        } else {
            pos = atomic_load_explicit(&r->counters->deq_pos, memory_order_relaxed);
        }
        if (++retries >= PYSHM_RING_MAX_RETRIES)
            return -PYSHM_ECORRUPT;
    }
}

/* Between 1 and max values, holes left out: the count taken, -PYSHM_EEMPTY, or
 * -PYSHM_ECORRUPT. max >= 1. */
static inline int64_t pyshm_ring_dequeue_burst(const struct pyshm_ring *r, uint64_t *values, uint64_t max)
{
    if (max == 0)
        return 0;
    uint64_t pos;
    int64_t n = pyshm_ring_claim_burst(r, &pos, values, max);
    if (n <= 0)
        return n;
    pyshm_ring_finish(r, pos, (uint64_t)n);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++)
        if (values[i] != PYSHM_RING_HOLE)
            values[kept++] = values[i];
    return kept;
}

/* Entries in the ring, as seen at one instant by this process: in [0, capacity]. */
static inline uint64_t pyshm_ring_count(const struct pyshm_ring *r)
{
    uint64_t deq = atomic_load_explicit(&r->counters->deq_pos, memory_order_relaxed);
    uint64_t enq = atomic_load_explicit(&r->counters->enq_pos, memory_order_relaxed);
    int64_t used = (int64_t)(enq - deq);
    if (used < 0)
        return 0;
    return (uint64_t)used > r->capacity ? r->capacity : (uint64_t)used;
}

#endif
