/*
 * waitmany.h - sleeping on several futex words at once (futex_waitv, Linux 5.16+).
 *
 * The asyncio side of the binding keeps a few watcher threads, each asleep on up to
 * PYSHM_WAITMANY_MAX words: the epochs of the waitpoints (wait.h) that tasks await, which
 * are process-shared words, and one private word of the thread's own that tells it its
 * set changed. Like pyshm_wait_sleep, a return says nothing for sure: the caller reads
 * the words again.
 */
#ifndef PYSHM_CORE_WAITMANY_H
#define PYSHM_CORE_WAITMANY_H

#include <stdint.h>

/* The kernel's limit on words per call. */
#define PYSHM_WAITMANY_MAX 128

struct pyshm_waitmany_word {
    const uint32_t *addr;
    uint32_t expected; /* sleep while the word holds this */
    int private_word;  /* 1: a word of this process only (FUTEX_PRIVATE_FLAG) */
};

/* Sleep while every word holds its expected value, for at most timeout_ns (UINT64_MAX:
 * no limit). Returns the index of a word woken, -EAGAIN if a word already differed,
 * -ETIMEDOUT, -EINTR, or -ENOSYS where the system call does not exist. */
int pyshm_waitmany(const struct pyshm_waitmany_word *words, uint32_t n, uint64_t timeout_ns);

/* Wake every thread asleep on a private word. */
void pyshm_waitmany_wake_private(uint32_t *addr);

#endif
