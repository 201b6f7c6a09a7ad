/*
 * atomics.h - the C11 atomics pyshm relies on, and the checks that make them safe to
 * share between processes.
 *
 * Every atomic object pyshm places in shared memory is a 64-bit integer, except the
 * 32-bit futex words of wait.h. A C11 atomic that is not lock-free is implemented with a
 * lock table private to each process (libatomic), which would silently break mutual
 * exclusion across processes, so the build refuses such a target.
 *
 * Every atomic operation of the core on shared memory is written with the <stdatomic.h>
 * generic functions, nothing else (no __atomic or __sync builtins, no volatile tricks).
 * That is the one hook the deterministic-schedule tests use: tests/sched/hooks.h is
 * force-included into a test build and wraps each of those functions so that a
 * scheduler chooses which simulated process runs next, and may kill it, before every
 * atomic step (tests/sched/README.md).
 */
#ifndef PYSHM_CORE_ATOMICS_H
#define PYSHM_CORE_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "an atomic 64-bit word must have the size of a plain one");
_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "an atomic 32-bit word must have the size of a plain one");

typedef _Atomic uint64_t pyshm_atomic64;
typedef _Atomic uint32_t pyshm_atomic32;

/* Producer-side and consumer-side counters are kept this far apart. */
#define PYSHM_CACHE_LINE 64

#define PYSHM_ALIGN_UP(value, align) (((value) + ((align) - 1)) & ~((uint64_t)(align) - 1))

/* For the few functions whose callers pass constants (a count of 1, a known callback)
 * that should be specialised away: the hot single-block paths. */
#if defined(__GNUC__)
#define PYSHM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PYSHM_ALWAYS_INLINE inline
#endif

/* A hint to the CPU inside a spin loop. */
static inline void pyshm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
