/* wait.c - futex sleeps on a shared word (Linux), a short nap elsewhere. */
#define _GNU_SOURCE
#include "wait.h"

#include <errno.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

uint64_t pyshm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void futex_wake_all(struct pyshm_waitpoint *w)
{
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)&w->epoch, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
#else
    (void)w;
#endif
}

uint32_t pyshm_wait_prepare(struct pyshm_waitpoint *w)
{
    uint32_t e = atomic_load_explicit(&w->epoch, memory_order_relaxed);
    uint64_t want = PYSHM_WAIT_MARKED | e;
    uint64_t marker = atomic_load_explicit(&w->marker, memory_order_relaxed);
    /* Keep the newest epoch (by signed 32-bit distance): a waiter that read an older one
     * must not hide the mark of one that sleeps on a newer epoch. */
    while ((marker == 0 || (int32_t)((uint32_t)marker - e) < 0) &&
           !atomic_compare_exchange_weak_explicit(&w->marker, &marker, want, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    /* W1 fence: pairs with the fence in pyshm_wait_notify. */
    atomic_thread_fence(memory_order_seq_cst);
    return e;
}

void pyshm_wait_sleep(struct pyshm_waitpoint *w, uint32_t e, uint64_t timeout_ns)
{
    if (timeout_ns > PYSHM_WAIT_SLICE_NS)
        timeout_ns = PYSHM_WAIT_SLICE_NS;
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u), .tv_nsec = (long)(timeout_ns % 1000000000u)};
#if defined(__linux__)
    /* Returns at once if the epoch moved (W2); EINTR and ETIMEDOUT are normal ends. */
    syscall(SYS_futex, (uint32_t *)&w->epoch, FUTEX_WAIT, e, &ts, NULL, 0);
#else
    if (atomic_load_explicit(&w->epoch, memory_order_acquire) == e) {
        struct timespec nap = {0, timeout_ns < 1000000u ? (long)timeout_ns : 1000000L};
        nanosleep(&nap, NULL);
    }
    (void)ts;
#endif
}

void pyshm_wait_wake(struct pyshm_waitpoint *w, uint64_t marker)
{
    uint32_t e = (uint32_t)marker;
    /* W2: only a sleeper on the current epoch needs the bump; a stale marker fails here. */
    if (atomic_compare_exchange_strong_explicit(&w->epoch, &e, e + 1, memory_order_seq_cst, memory_order_relaxed))
        futex_wake_all(w);
}

void pyshm_wait_wake_all(struct pyshm_waitpoint *w)
{
    atomic_fetch_add_explicit(&w->epoch, 1, memory_order_seq_cst);
    futex_wake_all(w);
}
