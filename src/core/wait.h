/*
 * wait.h - sleeping until another process makes data or room, without a lock.
 *
 * A waitpoint lives in shared memory next to the thing waited for (a ring's "not empty"
 * or "not full" side). It is an event count: a 32-bit epoch that every wake-up bumps, and
 * a count of sleepers, so a side that finds nobody asleep makes no system call.
 *
 *   waiter                                      notifier
 *   1. waiters += 1          (seq_cst)          a. make the change (enqueue, dequeue, ...)
 *   2. epoch_seen = epoch    (seq_cst)          b. fence                (seq_cst)
 *   3. try the operation again; done if it      c. if waiters > 0:
 *      succeeds                                       epoch += 1, futex-wake all
 *   4. futex-wait while epoch == epoch_seen
 *   5. waiters -= 1
 *
 *   label  ordering
 *   W1     1 (seq_cst RMW) and b (seq_cst fence) are in the single total order: either
 *          the notifier's load in c sees our increment, or our retry in 3 sees its change.
 *          So no wake-up is lost: a sleeper was either seen (and woken) or did not sleep.
 *   W2     epoch += 1 happens before the futex wake; the kernel compares epoch with
 *          epoch_seen atomically with going to sleep, so a bump between 2 and 4 makes
 *          the wait return at once.
 *
 * The futex is a process-shared one (no FUTEX_PRIVATE_FLAG): the word is in a mapping
 * shared between processes, at a different address in each. Sleeps are cut into slices
 * (PYSHM_WAIT_SLICE_NS) so the caller can check for signals between them; waiters also
 * re-check after each slice, which bounds the cost of a missed wake-up from a process
 * killed between a and c to one slice.
 */
#ifndef PYSHM_CORE_WAIT_H
#define PYSHM_CORE_WAIT_H

#include <stdint.h>

#include "atomics.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

typedef _Atomic uint32_t pyshm_atomic32;

struct pyshm_waitpoint {
    pyshm_atomic32 epoch;
    pyshm_atomic32 waiters;
};
_Static_assert(sizeof(struct pyshm_waitpoint) == 8, "waitpoint layout");

/* Longest single sleep: the caller checks for signals at least this often. */
#define PYSHM_WAIT_SLICE_NS (50 * 1000 * 1000)

/* Step 1 and 2: announce a sleeper; returns the epoch to pass to pyshm_wait_sleep. */
static inline uint32_t pyshm_wait_prepare(struct pyshm_waitpoint *w)
{
    /* W1 seq_cst: pairs with the fence in pyshm_wait_notify. */
    atomic_fetch_add_explicit(&w->waiters, 1, memory_order_seq_cst);
    return atomic_load_explicit(&w->epoch, memory_order_seq_cst);
}

/* Step 5. */
static inline void pyshm_wait_done(struct pyshm_waitpoint *w)
{
    atomic_fetch_sub_explicit(&w->waiters, 1, memory_order_relaxed);
}

/* Step 4: sleep while the epoch is unchanged, at most min(timeout_ns, one slice).
 * Returns 0 (woken, timed out, or interrupted: the caller re-checks everything). */
int pyshm_wait_sleep(struct pyshm_waitpoint *w, uint32_t epoch_seen, uint64_t timeout_ns);

/* Wake every sleeper (b, c). Makes no system call when none is announced. */
void pyshm_wait_wake_all(struct pyshm_waitpoint *w);

static inline void pyshm_wait_notify(struct pyshm_waitpoint *w)
{
    /* W1 fence: pairs with the seq_cst increment in pyshm_wait_prepare. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->waiters, memory_order_relaxed) != 0)
        pyshm_wait_wake_all(w);
}

/* Monotonic clock in nanoseconds. */
uint64_t pyshm_now_ns(void);

#endif
