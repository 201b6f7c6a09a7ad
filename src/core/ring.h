/*
 * ring.h - a bounded FIFO of 64-bit values in shared memory, lock-free, for any number of
 * producer and consumer processes. Only the FIFO: who is claiming what (announcements),
 * kill points and sleeping live in the queue layer above (queue.h). Includes nothing of
 * the project but the atomics.
 *
 * Algorithm: per-slot sequence words (Dmitry Vyukov's bounded MPMC queue), with two
 * extra phases so that an operation cut short by a dying process can be finished or
 * undone by another (repair.h). The sequence word of the slot of position pos says which
 * lap the slot is in and how far that lap has got:
 *
 *   seq = 8 pos + EMPTY      waits for the producer of pos
 *         8 pos + FILLING    a repairer reserved it to write a value for a dead producer
 *         8 pos + STAGED     the value of pos is written, not yet visible to consumers
 *         8 pos + FULL       holds the value of pos
 *         8 pos + DRAINING   a repairer reserved it to release it for a dead consumer
 *         8 (pos + cap)      consumed: waits for the producer of pos + cap
 *
 * A producer claims positions by advancing enq_pos with a CAS, writes each value and
 * stages it (STAGED), then publishes it (FULL). Staging records the value in the slot
 * before the producer changes anything else (in the pool layer: the block's state), so
 * a producer killed after its claim leaves either an untouched slot or a staged value,
 * never a value that exists nowhere. A consumer claims positions by advancing deq_pos,
 * reads the values and releases each slot for the next lap. Neither side reads the other
 * side's counter, and no side waits for another: a slot that is not ready reads as full
 * or empty at once.
 *
 * Memory ordering. The counters are claimed with release CAS (the queue layer's
 * announcements, written before the claim, travel with it: A1 in member.h); the slot
 * sequence words carry the data:
 *
 *   label  release                                   acquire
 *   R1     publish: store seq = FULL(pos)            claim (consumer): load seq == FULL(pos)
 *          makes the value, and everything the producer wrote before (the block's
 *          bytes and state), visible to the consumer that claims pos.
 *   R2     release: store seq = EMPTY(pos + cap)     claim (producer): load seq == EMPTY(pos + cap)
 *          makes the consumer's read of the value happen before the next lap's producer
 *          overwrites it.
 *   R3     stage / fill: store seq = STAGED(pos)     repair: CAS on seq sees STAGED(pos)
 *          makes the staged value visible to a repairer that finishes the publish.
 *
 * The repair steps (reserve_fill, fill, complete, reserve_drain, drained) change a
 * sequence word only by a CAS from the unfinished phase it expects, so a live claimer
 * that finished meanwhile makes them fail, and they always act on the latest value of
 * the word (a read-modify-write cannot read a stale one). A repairer writes a slot's
 * value only after it reserved the slot (FILLING) by such a CAS, so no published value
 * can be overwritten.
 *
 * Zero is the initial state: the words are stored relative to their slot, so that
 * zero-filled memory reads as an empty ring (slot i waits for position i), or, for a
 * ring made with start_full (a pool's free queue), as a full ring whose slot i holds the
 * value i. Creating a ring writes nothing.
 *
 * Counters are 64-bit and run freely; sequence words are 8 x position, modulo 2^64, and
 * are compared by signed difference, so wrapping past 2^64 is harmless when the
 * capacity is a power of two (pos % cap stays continuous). For other capacities the slot
 * index jumps at the wrap, which at 10^9 operations a second comes after 73 years; 64-bit
 * counters also make ABA on a slot impossible in practice.
 *
 * Which concurrency each call is correct for: pyshm_ring_claim, any number of claimers of
 * each side at once. The steps after a claim (stage, publish, value, release) are made
 * only by the claimer of that position, or by a repairer once the claimer is dead.
 *
 * Shared memory may be written by a faulty or hostile process. Nothing here trusts what
 * it reads: the capacity and slot array come from the process-local handle, a slot
 * index is always pos % capacity, and a claim that a garbage sequence word could keep
 * retrying gives up and reports corruption.
 */
#ifndef PYSHM_CORE_RING_H
#define PYSHM_CORE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "atomics.h"

struct pyshm_ring_slot {
    pyshm_atomic64 seq;
    pyshm_atomic64 value; /* relaxed: ordered by seq (R1, R2, R3) */
};
_Static_assert(sizeof(struct pyshm_ring_slot) == 16, "ring slot layout");

enum pyshm_ring_phase {
    PYSHM_RING_EMPTY = 0,
    PYSHM_RING_FILLING = 1,
    PYSHM_RING_STAGED = 2,
    PYSHM_RING_FULL = 3,
    PYSHM_RING_DRAINING = 4,
};

enum pyshm_ring_side { PYSHM_RING_ENQ = 0, PYSHM_RING_DEQ = 1 };

/* Process-local handle. The counters live wherever the layer above puts them (next to
 * what it keeps on the same cache line); geometry is validated once, never re-read. */
struct pyshm_ring {
    pyshm_atomic64 *enq_pos;
    pyshm_atomic64 *deq_pos;
    struct pyshm_ring_slot *slots;
    uint64_t capacity;
    uint64_t mask;  /* capacity - 1 when the capacity is a power of two (no division), else 0 */
    int start_full; /* zero-filled memory reads as full, slot i holding the value i */
};

/* Fill in the derived fields of a handle whose capacity is set. */
static inline void pyshm_ring_set_capacity(struct pyshm_ring *r, uint64_t capacity)
{
    r->capacity = capacity;
    r->mask = (capacity & (capacity - 1)) == 0 ? capacity - 1 : 0;
}

/* A claim that loses this many races in a row gives up: contention between correct
 * processes never comes close, a garbage sequence word could loop forever. */
#define PYSHM_RING_MAX_RETRIES (1u << 20)
/* pyshm_ring_claim's result when the retry budget ran out. */
#define PYSHM_RING_CORRUPT (-1)

/* Stored sequence word = sequence word - 8 * slot index - bias, so that zero is the
 * initial state: EMPTY(i) in an empty ring, FULL(i) in one that starts full. */
static inline uint64_t pyshm_ring_seq_bias(const struct pyshm_ring *r)
{
    return r->start_full ? (uint64_t)PYSHM_RING_FULL : 0;
}

static inline uint64_t pyshm_ring_index(const struct pyshm_ring *r, uint64_t pos)
{
    return r->mask || r->capacity == 1 ? pos & r->mask : pos % r->capacity;
}

static inline struct pyshm_ring_slot *pyshm_ring_slot_at(const struct pyshm_ring *r, uint64_t pos)
{
    return &r->slots[pyshm_ring_index(r, pos)];
}

/* The sequence word that means `phase` of position pos. */
static inline uint64_t pyshm_ring_seq(uint64_t pos, enum pyshm_ring_phase phase) { return pos * 8 + (uint64_t)phase; }

static inline uint64_t pyshm_ring_seq_encode(const struct pyshm_ring *r, uint64_t pos, uint64_t seq)
{
    return seq - pyshm_ring_index(r, pos) * 8 - pyshm_ring_seq_bias(r);
}

/* The sequence word of slot `index` (of position pos), from its stored form. */
static inline uint64_t pyshm_ring_seq_decode(const struct pyshm_ring *r, uint64_t index, uint64_t stored)
{
    return stored + index * 8 + pyshm_ring_seq_bias(r);
}

/* The enq counter of a ring that starts full is stored minus the capacity. */
static inline pyshm_atomic64 *pyshm_ring_counter(const struct pyshm_ring *r, enum pyshm_ring_side side)
{
    return side == PYSHM_RING_ENQ ? r->enq_pos : r->deq_pos;
}

static inline uint64_t pyshm_ring_counter_bias(const struct pyshm_ring *r, enum pyshm_ring_side side)
{
    return side == PYSHM_RING_ENQ && r->start_full ? r->capacity : 0;
}

/* The next position of a side, as seen now. `order`: acquire where the caller relies on
 * the claims it counts (A1 in member.h), else relaxed. */
static inline uint64_t pyshm_ring_head(const struct pyshm_ring *r, enum pyshm_ring_side side, memory_order order)
{
    return atomic_load_explicit(pyshm_ring_counter(r, side), order) + pyshm_ring_counter_bias(r, side);
}

/* Values of a ring that starts full are stored minus their slot index. */
static inline uint64_t pyshm_ring_value_bias(const struct pyshm_ring *r, uint64_t pos)
{
    return r->start_full ? pyshm_ring_index(r, pos) : 0;
}

/* The phase a claimer of `side` needs to find at pos. */
static inline enum pyshm_ring_phase pyshm_ring_ready_phase(enum pyshm_ring_side side)
{
    return side == PYSHM_RING_ENQ ? PYSHM_RING_EMPTY : PYSHM_RING_FULL;
}

/* Signed distance of the slot of pos from `phase` of pos: 0 there, < 0 not there yet,
 * > 0 past it. One acquire load (R1 for consumers, R2 for producers). */
static inline int64_t pyshm_ring_distance(const struct pyshm_ring *r, uint64_t pos, enum pyshm_ring_phase phase)
{
    uint64_t index = pyshm_ring_index(r, pos);
    uint64_t stored = atomic_load_explicit(&r->slots[index].seq, memory_order_acquire);
    return (int64_t)(pyshm_ring_seq_decode(r, index, stored) - pyshm_ring_seq(pos, phase));
}

/*
 * Called by pyshm_ring_claim once it has found n ready slots from pos on and before the
 * CAS that would claim them: 0 to go on with the CAS, non-zero to stop (the claim then
 * returns 0; the callback's context says why). The queue layer announces the claim
 * here (A1 in member.h), and a consumer may look at the values first (pyshm_ring_value).
 */
typedef int (*pyshm_ring_before_claim)(void *ctx, uint64_t pos, uint64_t n);

/*
 * The one claim of both sides: find between min and max consecutive slots ready for
 * `side` at its head, then claim them with one CAS of the side's counter. Returns the
 * number claimed (*pos_out is the first position), 0 when fewer than min were ready
 * (the ring is full for producers, empty for consumers) or `before` said stop, or
 * PYSHM_RING_CORRUPT. min >= 1, max >= min, max <= capacity.
 *
 * A slot ready for position p stays ready until whoever claims p changes it, and nobody
 * can claim p while the counter reads below p, so checking the slots before the CAS is
 * enough. The CAS is a release (A1 in member.h): it publishes what `before` wrote.
 */
static PYSHM_ALWAYS_INLINE int64_t pyshm_ring_claim(const struct pyshm_ring *r, enum pyshm_ring_side side, uint64_t min,
                                       uint64_t max, uint64_t *pos_out, pyshm_ring_before_claim before, void *ctx)
{
    pyshm_atomic64 *counter = pyshm_ring_counter(r, side);
    uint64_t bias = pyshm_ring_counter_bias(r, side);
    enum pyshm_ring_phase want = pyshm_ring_ready_phase(side);
    uint64_t stored = atomic_load_explicit(counter, memory_order_relaxed);
    for (uint32_t retries = 0; retries < PYSHM_RING_MAX_RETRIES; retries++) {
        uint64_t pos = stored + bias;
        uint64_t ready = 0;
        int64_t distance = 0;
        for (; ready < max; ready++) {
            /* R1 (consumers) / R2 (producers) acquire. */
            distance = pyshm_ring_distance(r, pos + ready, want);
            if (distance != 0)
                break;
        }
        if (ready >= min) {
            if (before && before(ctx, pos, ready) != 0)
                return 0;
            /* A1 release: pairs with the acquire load of the counter in repair. On failure
             * `stored` is the counter's current value: retry from there. */
            if (atomic_compare_exchange_weak_explicit(counter, &stored, stored + ready, memory_order_release,
                                                      memory_order_relaxed)) {
                *pos_out = pos;
                return (int64_t)ready;
            }
        } else if (distance < 0) {
            /* Producers: the slot still holds the previous lap. Consumers: nothing is
             * published there yet. Either way the ring is not ready. */
            return 0;
        } else {
            /* Another claimer took pos + ready: its CAS is sequenced before every change
             * it makes to the slot, which our acquire saw, so the counter has moved. */
            stored = atomic_load_explicit(counter, memory_order_relaxed);
        }
    }
    return PYSHM_RING_CORRUPT;
}

/* Producer, after its claim: write the value of pos and stage it (R3). */
static inline void pyshm_ring_stage(const struct pyshm_ring *r, uint64_t pos, uint64_t value)
{
    struct pyshm_ring_slot *slot = pyshm_ring_slot_at(r, pos);
    atomic_store_explicit(&slot->value, value - pyshm_ring_value_bias(r, pos), memory_order_relaxed);
    /* R3 release: pairs with the CAS in pyshm_ring_complete. */
    atomic_store_explicit(&slot->seq, pyshm_ring_seq_encode(r, pos, pyshm_ring_seq(pos, PYSHM_RING_STAGED)),
                          memory_order_release);
}

/* Producer, after staging: make the value of pos visible to consumers (R1). */
static inline void pyshm_ring_publish(const struct pyshm_ring *r, uint64_t pos)
{
    /* R1 release: pairs with the acquire load of seq in a consumer's claim. */
    atomic_store_explicit(&pyshm_ring_slot_at(r, pos)->seq,
                          pyshm_ring_seq_encode(r, pos, pyshm_ring_seq(pos, PYSHM_RING_FULL)), memory_order_release);
}

/* The value of pos: for its claimer, or for whoever saw the slot FULL or STAGED (with
 * acquire) for pos and knows it cannot have moved on since. */
static inline uint64_t pyshm_ring_value(const struct pyshm_ring *r, uint64_t pos)
{
    return atomic_load_explicit(&pyshm_ring_slot_at(r, pos)->value, memory_order_relaxed) +
           pyshm_ring_value_bias(r, pos);
}

/* Consumer, after its claim and once it has taken what the value names: give the slot
 * to the producer of the next lap (R2). */
static inline void pyshm_ring_release(const struct pyshm_ring *r, uint64_t pos)
{
    /* R2 release: pairs with the acquire load of seq in a producer's claim. */
    atomic_store_explicit(&pyshm_ring_slot_at(r, pos)->seq,
                          pyshm_ring_seq_encode(r, pos, pyshm_ring_seq(pos + r->capacity, PYSHM_RING_EMPTY)),
                          memory_order_release);
}

/* ---- repair steps: for positions whose claimer is dead (repair.h) ---------------------- */

/* The phase of the slot of pos relative to pos, read with a read-modify-write so that it
 * is the latest value (a plain load may return an older one). Phases of earlier laps read
 * as -1, later laps as PYSHM_RING_DRAINING + 1. */
static inline int pyshm_ring_phase_now(const struct pyshm_ring *r, uint64_t pos)
{
    uint64_t index = pyshm_ring_index(r, pos);
    uint64_t stored = atomic_fetch_add_explicit(&r->slots[index].seq, 0, memory_order_acquire);
    int64_t d = (int64_t)(pyshm_ring_seq_decode(r, index, stored) - pyshm_ring_seq(pos, PYSHM_RING_EMPTY));
    if (d < 0)
        return -1;
    return d > PYSHM_RING_DRAINING ? PYSHM_RING_DRAINING + 1 : (int)d;
}

/* Move the slot of pos from phase `from` to `to` by a CAS: 1 if this call did it. */
static inline int pyshm_ring_shift(const struct pyshm_ring *r, uint64_t pos, enum pyshm_ring_phase from,
                                   uint64_t to_seq, memory_order order)
{
    uint64_t expected = pyshm_ring_seq_encode(r, pos, pyshm_ring_seq(pos, from));
    return atomic_compare_exchange_strong_explicit(&pyshm_ring_slot_at(r, pos)->seq, &expected,
                                                   pyshm_ring_seq_encode(r, pos, to_seq), order,
                                                   memory_order_relaxed);
}

/* A position whose producer died before staging: reserve its slot (EMPTY -> FILLING) so
 * that only this repairer writes its value. 1 if reserved now or already FILLING (a
 * repairer before this one died there), 0 if the slot is past EMPTY. */
static inline int pyshm_ring_reserve_fill(const struct pyshm_ring *r, uint64_t pos)
{
    if (pyshm_ring_shift(r, pos, PYSHM_RING_EMPTY, pyshm_ring_seq(pos, PYSHM_RING_FILLING), memory_order_relaxed))
        return 1;
    return pyshm_ring_phase_now(r, pos) == PYSHM_RING_FILLING;
}

/* After pyshm_ring_reserve_fill: write the value and stage it (R3). */
static inline void pyshm_ring_fill(const struct pyshm_ring *r, uint64_t pos, uint64_t value)
{
    pyshm_ring_stage(r, pos, value);
}

/* A staged position whose producer died: publish it (STAGED -> FULL, R1). 1 if done now. */
static inline int pyshm_ring_complete(const struct pyshm_ring *r, uint64_t pos)
{
    /* R1 release, as pyshm_ring_publish; the CAS also reads the staging (R3 acquire). */
    return pyshm_ring_shift(r, pos, PYSHM_RING_STAGED, pyshm_ring_seq(pos, PYSHM_RING_FULL), memory_order_acq_rel);
}

/* A claimed position whose consumer died before releasing it: reserve its slot
 * (FULL -> DRAINING) so that the value cannot be overwritten while the repairer deals
 * with it. 1 if reserved now or already DRAINING, 0 if not FULL. */
static inline int pyshm_ring_reserve_drain(const struct pyshm_ring *r, uint64_t pos)
{
    if (pyshm_ring_shift(r, pos, PYSHM_RING_FULL, pyshm_ring_seq(pos, PYSHM_RING_DRAINING), memory_order_acquire))
        return 1;
    return pyshm_ring_phase_now(r, pos) == PYSHM_RING_DRAINING;
}

/* After pyshm_ring_reserve_drain: release the slot for the next lap (R2). */
static inline void pyshm_ring_drained(const struct pyshm_ring *r, uint64_t pos)
{
    /* R2 release, as pyshm_ring_release. */
    pyshm_ring_shift(r, pos, PYSHM_RING_DRAINING, pyshm_ring_seq(pos + r->capacity, PYSHM_RING_EMPTY),
                     memory_order_release);
}

/* Whether the k-th position from the head of `side` (k >= 1) is ready for that side, as
 * seen now: one relaxed load of the counter and one of a slot, nothing written. For a
 * waiter that would rather wait for several than take each the moment it appears; only
 * a hint (a claim decides). */
static inline int pyshm_ring_ready_at(const struct pyshm_ring *r, enum pyshm_ring_side side, uint64_t k)
{
    uint64_t pos = pyshm_ring_head(r, side, memory_order_relaxed) + k - 1;
    return pyshm_ring_distance(r, pos, pyshm_ring_ready_phase(side)) >= 0;
}

/* Entries in the ring, as seen at one instant by this process: in [0, capacity]. */
static inline uint64_t pyshm_ring_count(const struct pyshm_ring *r)
{
    uint64_t deq = pyshm_ring_head(r, PYSHM_RING_DEQ, memory_order_relaxed);
    uint64_t enq = pyshm_ring_head(r, PYSHM_RING_ENQ, memory_order_relaxed);
    int64_t used = (int64_t)(enq - deq);
    if (used < 0)
        return 0;
    return (uint64_t)used > r->capacity ? r->capacity : (uint64_t)used;
}

#endif
