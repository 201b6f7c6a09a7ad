/*
 * atomics.h - the C11 atomics pyshm relies on, and the checks that make them safe to
 * share between processes.
 *
 * Every atomic object pyshm places in shared memory is a 64-bit integer. A C11 atomic
 * that is not lock-free is implemented with a lock table private to each process
 * (libatomic), which would silently break mutual exclusion across processes, so the
 * build refuses such a target.
 */
#ifndef PYSHM_CORE_ATOMICS_H
#define PYSHM_CORE_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t),
               "an atomic 64-bit word must have the size of a plain one");

typedef _Atomic uint64_t pyshm_atomic64;

/* Producer-side and consumer-side counters are kept this far apart. */
#define PYSHM_CACHE_LINE 64

#define PYSHM_ALIGN_UP(value, align) (((value) + ((align) - 1)) & ~((uint64_t)(align) - 1))

/* A hint to the CPU inside a spin loop. */
static inline void pyshm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Error codes returned (negated) by the core; the binding maps each to one exception. */
#include <errno.h>
#define PYSHM_EEMPTY ENODATA   /* nothing to dequeue / no free block */
#define PYSHM_EFULL ENOBUFS    /* no room to enqueue */
#define PYSHM_ESTALE EALREADY  /* block not held under this generation (double put) */
#define PYSHM_ECORRUPT EBADMSG /* shared memory holds a value no correct process writes */
#define PYSHM_ETOOBIG EMSGSIZE /* requested length exceeds the block */

#endif
