/*
 * hooks.h - route every C11 atomic operation of the code under test through the
 * deterministic scheduler (sched.h).
 *
 * Force-included when compiling the core and the adapter:
 *
 *     gcc -std=c11 -include tests/sched/hooks.h -c src/core/ring.c ...
 *
 * It includes <stdatomic.h> first (so the core's own #include of it is a no-op), then
 * #undef's and redefines each atomic operation macro: the new one first calls
 * sched_point(op, address) - where the scheduler may switch to another simulated
 * process, or kill the current one - and then performs the real operation with GCC's
 * __atomic builtins and the memory order given. The definitions follow GCC's own
 * <stdatomic.h> (statement expressions, __auto_type, __typeof__): GNU extensions that
 * gcc accepts in -std=c11 mode (not under -pedantic), marked __extension__.
 *
 * A weak compare-exchange whose comparison would succeed may be made to fail
 * spuriously, as C11 allows: the scheduler decides (sched_weak_cas_fails). The
 * expected value is left as it is, which is what a real spurious failure does (the
 * current value equals it).
 *
 * Nothing here changes the code under test: only its atomics become scheduling points.
 * Plain (non-atomic) accesses to shared memory are not points: the core makes every
 * cross-process access through these macros.
 */
#ifndef PYSHM_SCHED_HOOKS_H
#define PYSHM_SCHED_HOOKS_H

#include <stdatomic.h>
#include <stdbool.h>

enum sched_op {
    SCHED_OP_LOAD = 1,
    SCHED_OP_STORE = 2,
    SCHED_OP_RMW = 3,      /* exchange, fetch_add/sub/or/and/xor, flag test-and-set */
    SCHED_OP_CAS = 4,      /* strong compare-exchange */
    SCHED_OP_CAS_WEAK = 5, /* weak compare-exchange */
    SCHED_OP_FENCE = 6     /* thread fence: no address */
};

/* The scheduler: called before every atomic operation. */
void sched_point(int op, const volatile void *addr);
/* Whether a weak CAS at addr that would succeed fails spuriously this time. */
int sched_weak_cas_fails(const volatile void *addr);

#undef atomic_load_explicit
#undef atomic_load
#undef atomic_store_explicit
#undef atomic_store
#undef atomic_exchange_explicit
#undef atomic_exchange
#undef atomic_compare_exchange_strong_explicit
#undef atomic_compare_exchange_strong
#undef atomic_compare_exchange_weak_explicit
#undef atomic_compare_exchange_weak
#undef atomic_fetch_add_explicit
#undef atomic_fetch_add
#undef atomic_fetch_sub_explicit
#undef atomic_fetch_sub
#undef atomic_fetch_or_explicit
#undef atomic_fetch_or
#undef atomic_fetch_and_explicit
#undef atomic_fetch_and
#undef atomic_fetch_xor_explicit
#undef atomic_fetch_xor
#undef atomic_flag_test_and_set_explicit
#undef atomic_flag_test_and_set
#undef atomic_flag_clear_explicit
#undef atomic_flag_clear
#undef atomic_thread_fence

#define atomic_load_explicit(PTR, MO)                                                                             \
    __extension__({                                                                                               \
        __auto_type sched_ld_p_ = (PTR);                                                                          \
        __typeof__((void)0, *sched_ld_p_) sched_ld_v_;                                                            \
        sched_point(SCHED_OP_LOAD, sched_ld_p_);                                                                  \
        __atomic_load(sched_ld_p_, &sched_ld_v_, (MO));                                                           \
        sched_ld_v_;                                                                                              \
    })
#define atomic_load(PTR) atomic_load_explicit(PTR, __ATOMIC_SEQ_CST)

#define atomic_store_explicit(PTR, VAL, MO)                                                                       \
    __extension__({                                                                                               \
        __auto_type sched_st_p_ = (PTR);                                                                          \
        __typeof__((void)0, *sched_st_p_) sched_st_v_ = (VAL);                                                    \
        sched_point(SCHED_OP_STORE, sched_st_p_);                                                                 \
        __atomic_store(sched_st_p_, &sched_st_v_, (MO));                                                          \
    })
#define atomic_store(PTR, VAL) atomic_store_explicit(PTR, VAL, __ATOMIC_SEQ_CST)

#define atomic_exchange_explicit(PTR, VAL, MO)                                                                    \
    __extension__({                                                                                               \
        __auto_type sched_xc_p_ = (PTR);                                                                          \
        __typeof__((void)0, *sched_xc_p_) sched_xc_v_ = (VAL), sched_xc_r_;                                       \
        sched_point(SCHED_OP_RMW, sched_xc_p_);                                                                   \
        __atomic_exchange(sched_xc_p_, &sched_xc_v_, &sched_xc_r_, (MO));                                         \
        sched_xc_r_;                                                                                              \
    })
#define atomic_exchange(PTR, VAL) atomic_exchange_explicit(PTR, VAL, __ATOMIC_SEQ_CST)

#define atomic_compare_exchange_strong_explicit(PTR, EXP, DES, SUC, FAIL)                                         \
    __extension__({                                                                                               \
        __auto_type sched_cs_p_ = (PTR);                                                                          \
        __typeof__((void)0, *sched_cs_p_) sched_cs_d_ = (DES);                                                    \
        sched_point(SCHED_OP_CAS, sched_cs_p_);                                                                   \
        __atomic_compare_exchange(sched_cs_p_, (EXP), &sched_cs_d_, 0, (SUC), (FAIL));                           \
    })
#define atomic_compare_exchange_strong(PTR, EXP, DES)                                                             \
    atomic_compare_exchange_strong_explicit(PTR, EXP, DES, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

/* The point comes first; then, if the comparison would succeed, the scheduler may make
 * it fail spuriously (it is one indivisible step: nothing else runs in between). */
#define atomic_compare_exchange_weak_explicit(PTR, EXP, DES, SUC, FAIL)                                           \
    __extension__({                                                                                               \
        __auto_type sched_cw_p_ = (PTR);                                                                          \
        __auto_type sched_cw_e_ = (EXP);                                                                          \
        __typeof__((void)0, *sched_cw_p_) sched_cw_d_ = (DES), sched_cw_c_;                                       \
        sched_point(SCHED_OP_CAS_WEAK, sched_cw_p_);                                                              \
        __atomic_load(sched_cw_p_, &sched_cw_c_, __ATOMIC_RELAXED);                                               \
        (sched_cw_c_ == *sched_cw_e_ && sched_weak_cas_fails(sched_cw_p_))                                        \
            ? (_Bool)0                                                                                            \
            : __atomic_compare_exchange(sched_cw_p_, sched_cw_e_, &sched_cw_d_, 1, (SUC), (FAIL));                \
    })
#define atomic_compare_exchange_weak(PTR, EXP, DES)                                                               \
    atomic_compare_exchange_weak_explicit(PTR, EXP, DES, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

#define SCHED_FETCH_OP_(BUILTIN, PTR, VAL, MO)                                                                    \
    __extension__({                                                                                               \
        __auto_type sched_fo_p_ = (PTR);                                                                          \
        sched_point(SCHED_OP_RMW, sched_fo_p_);                                                                   \
        BUILTIN(sched_fo_p_, (VAL), (MO));                                                                        \
    })
#define atomic_fetch_add_explicit(PTR, VAL, MO) SCHED_FETCH_OP_(__atomic_fetch_add, PTR, VAL, MO)
#define atomic_fetch_sub_explicit(PTR, VAL, MO) SCHED_FETCH_OP_(__atomic_fetch_sub, PTR, VAL, MO)
#define atomic_fetch_or_explicit(PTR, VAL, MO) SCHED_FETCH_OP_(__atomic_fetch_or, PTR, VAL, MO)
#define atomic_fetch_and_explicit(PTR, VAL, MO) SCHED_FETCH_OP_(__atomic_fetch_and, PTR, VAL, MO)
#define atomic_fetch_xor_explicit(PTR, VAL, MO) SCHED_FETCH_OP_(__atomic_fetch_xor, PTR, VAL, MO)
#define atomic_fetch_add(PTR, VAL) atomic_fetch_add_explicit(PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_sub(PTR, VAL) atomic_fetch_sub_explicit(PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_or(PTR, VAL) atomic_fetch_or_explicit(PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_and(PTR, VAL) atomic_fetch_and_explicit(PTR, VAL, __ATOMIC_SEQ_CST)
#define atomic_fetch_xor(PTR, VAL) atomic_fetch_xor_explicit(PTR, VAL, __ATOMIC_SEQ_CST)

#define atomic_flag_test_and_set_explicit(PTR, MO)                                                                \
    __extension__({                                                                                               \
        __auto_type sched_ft_p_ = (PTR);                                                                          \
        sched_point(SCHED_OP_RMW, sched_ft_p_);                                                                   \
        __atomic_test_and_set(sched_ft_p_, (MO));                                                                 \
    })
#define atomic_flag_test_and_set(PTR) atomic_flag_test_and_set_explicit(PTR, __ATOMIC_SEQ_CST)
#define atomic_flag_clear_explicit(PTR, MO)                                                                       \
    __extension__({                                                                                               \
        __auto_type sched_fc_p_ = (PTR);                                                                          \
        sched_point(SCHED_OP_STORE, sched_fc_p_);                                                                 \
        __atomic_clear(sched_fc_p_, (MO));                                                                        \
    })
#define atomic_flag_clear(PTR) atomic_flag_clear_explicit(PTR, __ATOMIC_SEQ_CST)

#define atomic_thread_fence(MO)                                                                                   \
    __extension__({                                                                                               \
        sched_point(SCHED_OP_FENCE, (const volatile void *)0);                                                    \
        __atomic_thread_fence(MO);                                                                                \
    })

#endif
