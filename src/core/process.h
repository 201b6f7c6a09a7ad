/*
 * process.h - who holds a block, in a form that survives pid reuse.
 *
 * A holder is recorded as one 64-bit word: the pid in the top 22 bits (Linux pids are
 * below 2^22) and the process start time (clock ticks since boot, /proc/PID/stat field
 * 22) in the low 42. A later process that reuses the pid has a later start time, so it
 * is never mistaken for the holder. 0 means "nobody recorded".
 */
#ifndef PYSHM_CORE_PROCESS_H
#define PYSHM_CORE_PROCESS_H

#include <stdatomic.h>
#include <stdint.h>

#define PYSHM_HOLDER_PID_SHIFT 42
#define PYSHM_HOLDER_START_MASK ((UINT64_C(1) << PYSHM_HOLDER_PID_SHIFT) - 1)

/* This process's holder word (computed once per process, again after fork). */
uint64_t pyshm_holder_self(void);

/* The cache behind pyshm_holder_self, 0 until computed (and again right after fork). */
extern _Atomic uint64_t pyshm_self_holder;

/* pyshm_holder_self without a call on the hot path. */
static inline uint64_t pyshm_holder_self_fast(void)
{
    uint64_t holder = atomic_load_explicit(&pyshm_self_holder, memory_order_relaxed);
    return holder ? holder : pyshm_holder_self();
}

/* 1 if the process a holder word names has exited (or is a zombie), 0 if it still
 * runs or cannot be told (then the block is left alone: never reclaim on a guess). */
int pyshm_holder_is_gone(uint64_t holder);

#endif
