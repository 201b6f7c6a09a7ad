/*
 * wait.h - sleeping until another process makes data or room, without a lock, and
 * without anything a dead sleeper could leave that costs the living for long.
 *
 * A waitpoint lives in shared memory next to the thing waited for (a queue's "not empty"
 * or "not full" side). It is an event count: a 32-bit epoch that every wake-up bumps,
 * and a marker in which a sleeper leaves the epoch it is about to sleep on. A notifier
 * that finds no marker for the current epoch makes no system call.
 *
 *   waiter                                        notifier
 *   1. e = epoch                                  a. make the change (publish, release, ...)
 *   2. marker = max(marker, e)    (RMW)           b. fence                       (seq_cst)
 *   3. fence                      (seq_cst)       c. m = marker; if m is set:
 *   4. try the operation again; done if it            CAS epoch m -> m + 1; if that
 *      succeeds                                        succeeded, futex-wake all
 *   5. futex-wait while epoch == e
 *
 *   label  ordering
 *   W1     the fences of 3 and b are in the single total order of seq_cst operations:
 *          if the waiter's is first, the notifier's load in c sees the waiter's marker
 *          (or a later one, which is never older: 2 keeps the maximum); if the
 *          notifier's is first, the waiter's retry in 4 sees the change. So a sleeper
 *          was either seen or did not need to sleep.
 *   W2     the CAS in c moves the epoch on before the wake; the kernel compares the
 *          epoch with e atomically with going to sleep, so a bump between 1 and 5 makes
 *          the wait return at once. Every bump is followed by a wake, so a waiter asleep
 *          on e is woken by whichever notifier moves the epoch past e.
 *
 * Nothing needs repair after a sleeper dies: its marker names an epoch; the first
 * notifier after its death bumps that epoch (one wake-up nobody needed) and from then on
 * the marker is stale (the CAS in c expects the marker's epoch) and costs nothing. A
 * waiter that set its marker and then succeeded in 4 likewise costs the next notifier one
 * wake-up at most.
 *
 * The futex is a process-shared one (no FUTEX_PRIVATE_FLAG): the word is in a mapping
 * shared between processes, at a different address in each. Sleeps are cut into slices
 * (PYSHM_WAIT_SLICE_NS) so the caller can check for signals between them.
 */
#ifndef PYSHM_CORE_WAIT_H
#define PYSHM_CORE_WAIT_H

#include <stdint.h>

#include "atomics.h"

struct pyshm_waitpoint {
    pyshm_atomic32 epoch;
    uint32_t reserved;
    pyshm_atomic64 marker; /* 1 << 32 | epoch a waiter sleeps on; 0: none yet */
};
_Static_assert(sizeof(struct pyshm_waitpoint) == 16, "waitpoint layout");

#define PYSHM_WAIT_MARKED (UINT64_C(1) << 32)

/* Longest single sleep: the caller checks for signals at least this often. */
#define PYSHM_WAIT_SLICE_NS (50 * 1000 * 1000)

/* Steps 1 to 3: announce a sleeper; returns the epoch to pass to pyshm_wait_sleep. */
uint32_t pyshm_wait_prepare(struct pyshm_waitpoint *w);

/* Step 5: sleep while the epoch is e, at most min(timeout_ns, one slice). Returns when
 * woken, timed out or interrupted: the caller re-checks everything. */
void pyshm_wait_sleep(struct pyshm_waitpoint *w, uint32_t e, uint64_t timeout_ns);

/* Step c once a marker is seen: bump the epoch it names and wake, if it is current. */
void pyshm_wait_wake(struct pyshm_waitpoint *w, uint64_t marker);

/* Steps b and c. Makes no system call unless a sleeper marked the current epoch. */
static inline void pyshm_wait_notify(struct pyshm_waitpoint *w)
{
    /* W1 fence: pairs with the fence in pyshm_wait_prepare. */
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t marker = atomic_load_explicit(&w->marker, memory_order_relaxed);
    /* An epoch already past the marked one (it only grows, so an older read of it is
     * still no later than the truth) means the marker is stale: nobody to wake. */
    if (marker != 0 &&
        (int32_t)(atomic_load_explicit(&w->epoch, memory_order_relaxed) - (uint32_t)marker) <= 0)
        pyshm_wait_wake(w, marker);
}

/* Wake every sleeper, whatever the marker says (shutdown, closing a handle). */
void pyshm_wait_wake_all(struct pyshm_waitpoint *w);

/* Monotonic clock in nanoseconds. */
uint64_t pyshm_now_ns(void);

#endif
