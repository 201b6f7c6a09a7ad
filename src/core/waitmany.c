/* waitmany.c - futex_waitv on Linux; -ENOSYS elsewhere. */
#define _GNU_SOURCE
#include "waitmany.h"

#include <errno.h>
#include <limits.h>
#include <time.h>

#include "wait.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#if defined(__x86_64__) || defined(__aarch64__)
#define SYS_futex_waitv 449
#endif
#endif

/* As in linux/futex.h (5.16+), for older headers. */
struct pyshm_futex_waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};
#define PYSHM_FUTEX_32 2u
#define PYSHM_FUTEX_PRIVATE 128u
#endif

int pyshm_waitmany(const struct pyshm_waitmany_word *words, uint32_t n, uint64_t timeout_ns)
{
#if defined(__linux__) && defined(SYS_futex_waitv)
    struct pyshm_futex_waitv v[PYSHM_WAITMANY_MAX];
    if (n == 0 || n > PYSHM_WAITMANY_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        v[i].val = words[i].expected;
        v[i].uaddr = (uint64_t)(uintptr_t)words[i].addr;
        v[i].flags = PYSHM_FUTEX_32 | (words[i].private_word ? PYSHM_FUTEX_PRIVATE : 0u);
        v[i].reserved = 0;
    }
    struct timespec deadline, *dl = NULL;
    if (timeout_ns != UINT64_MAX) {
        uint64_t at = pyshm_now_ns() + timeout_ns; /* absolute, CLOCK_MONOTONIC */
        deadline.tv_sec = (time_t)(at / 1000000000u);
        deadline.tv_nsec = (long)(at % 1000000000u);
        dl = &deadline;
    }
    long rc = syscall(SYS_futex_waitv, v, n, 0, dl, CLOCK_MONOTONIC);
    return rc < 0 ? -errno : (int)rc;
#else
    (void)words;
    (void)n;
    (void)timeout_ns;
    return -ENOSYS;
#endif
}

void pyshm_waitmany_wake_private(uint32_t *addr)
{
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}
