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

int pyshm_wait_sleep(struct pyshm_waitpoint *w, uint32_t epoch_seen, uint64_t timeout_ns)
{
    if (timeout_ns > PYSHM_WAIT_SLICE_NS)
        timeout_ns = PYSHM_WAIT_SLICE_NS;
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u), .tv_nsec = (long)(timeout_ns % 1000000000u)};
#if defined(__linux__)
    /* Returns at once if the epoch moved (W2); EINTR and ETIMEDOUT are normal ends. */
    syscall(SYS_futex, (uint32_t *)&w->epoch, FUTEX_WAIT, epoch_seen, &ts, NULL, 0);
#else
    if (atomic_load_explicit(&w->epoch, memory_order_acquire) == epoch_seen) {
        struct timespec nap = {0, timeout_ns < 1000000u ? (long)timeout_ns : 1000000L};
        nanosleep(&nap, NULL);
    }
    (void)ts;
#endif
    return 0;
}

void pyshm_wait_wake_all(struct pyshm_waitpoint *w)
{
    /* W2: the bump is visible before anyone is woken. */
    atomic_fetch_add_explicit(&w->epoch, 1, memory_order_seq_cst);
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)&w->epoch, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
#endif
}
