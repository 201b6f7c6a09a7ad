/*
 * tc.h - the small test harness shared by the C tests of src/core (see run.sh).
 *
 * A test is a void function. CHECK records a failure and goes on; REQUIRE records one and
 * returns from the calling function. Both may be used from any thread of the test
 * process (failures are counted atomically). A test registered as "known bug" (TC_XFAIL)
 * is expected to fail until the core is fixed: its failure is reported as XFAIL and not
 * counted, and if it starts passing it is counted as a failure (XPASS), so that the mark
 * gets removed. `--strict` runs such tests as ordinary ones.
 *
 * Handles. Every struct pyshm_space a test uses is made by pyshm_space_create or
 * pyshm_space_attach_fd (through the helpers below), never by hand: a "process" of a test
 * is one space with its own mapping, member entry, lock description and pool table.
 */
#ifndef PYSHM_TESTS_TC_H
#define PYSHM_TESTS_TC_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "block_ring.h"
#include "errors.h"
#include "member.h"
#include "mempool.h"
#include "pool_table.h"
#include "queue.h"
#include "rawbuf.h"
#include "region.h"
#include "repair.h"
#include "ring.h"
#include "space.h"

/* ---- configuration, set by main() from argv and the build ---- */
struct tc_config {
    uint64_t messages; /* per stress run, all producers together */
    int tsan;          /* built with -fsanitize=thread */
    int fault_build;   /* built with -DPYSHM_FAULT_INJECTION (kill points armed by PYSHM_FAULT) */
    int fork_tests;    /* run the tests that fork() */
    int strict;        /* treat known-bug tests as ordinary tests */
};
extern struct tc_config tc_cfg;

/* ---- failure recording ---- */
extern atomic_long tc_failures; /* in the current test */
void tc_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tc_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                       \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tc_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                                     \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Integer comparison that prints both sides. */
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long tc_a_ = (long long)(a), tc_b_ = (long long)(b);                                  \
        if (tc_a_ != tc_b_)                                                                        \
            tc_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %lld != %lld", #a, #b, tc_a_, tc_b_);   \
    } while (0)

#define REQUIRE_EQ(a, b)                                                                           \
    do {                                                                                           \
        long long tc_a_ = (long long)(a), tc_b_ = (long long)(b);                                  \
        if (tc_a_ != tc_b_) {                                                                      \
            tc_fail(__FILE__, __LINE__, "REQUIRE_EQ(%s, %s): %lld != %lld", #a, #b, tc_a_, tc_b_); \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- test tables ---- */
enum {
    TC_FORK = 1,  /* forks: skipped under ThreadSanitizer (--no-fork) */
    TC_XFAIL = 2, /* a known core bug: expected to fail */
    TC_FAULT = 4, /* needs the kill points: runs only in the fault-injection build */
};
struct tc_test {
    const char *name;
    void (*fn)(void);
    unsigned flags;
    const char *note; /* why it is a known bug */
};
#define TC_TABLE(group)                                                                            \
    extern const struct tc_test tc_##group##_tests[];                                              \
    extern const size_t tc_##group##_test_count
TC_TABLE(ring);
TC_TABLE(edge);
TC_TABLE(burst);
TC_TABLE(region);
TC_TABLE(member);
TC_TABLE(sparse);
TC_TABLE(wait);
TC_TABLE(repair);
TC_TABLE(stress);
TC_TABLE(fork);
#define TC_COUNT(table) (sizeof(table) / sizeof((table)[0]))

/* ---- spaces: one per simulated process (test_core.c) ---- */

/* Create a space (memfd region) of `size` bytes for objects; prints why on failure. */
int tc_space(struct pyshm_space *s, uint64_t size);
/* Another "process" on the same region: attach a dup of src's fd, with its own mapping,
 * member entry, lock description and pool table. */
int tc_space_attach(struct pyshm_space *dst, const struct pyshm_space *src);
/* The same, but under ThreadSanitizer the handle is then moved onto src's mapping (its own
 * mapping is unmapped): TSan tracks memory by address, and a second mapping would hide the
 * synchronization (and any race) from it. Close with tc_space_close. */
int tc_space_attach_view(struct pyshm_space *dst, const struct pyshm_space *src);
/* Close a space made by any of the above. */
void tc_space_close(struct pyshm_space *s);
/* What the kernel does when the process behind s is killed: its lock description goes,
 * its member entry stays as it is (with whatever it announced or held), for a repair. */
void tc_space_die(struct pyshm_space *s);
/* This space's membership (joining if needed), or NULL with a failure recorded. */
struct pyshm_member *tc_member(struct pyshm_space *s);

/* Create a pool and add it to the space's table: the table's copy, or NULL (failure recorded). */
const struct pyshm_pool *tc_pool(struct pyshm_space *s, uint64_t count, uint64_t elt, uint32_t flags,
                                 const char *name);
/* The pool at `offset` as this space knows it (validated and added to its table), or NULL. */
const struct pyshm_pool *tc_pool_at(struct pyshm_space *s, uint64_t offset);
/* Create a ring and attach it through the space: 0, or -errno (failure recorded). */
int tc_ring(struct pyshm_space *s, uint64_t capacity, uint32_t flags, const char *name, struct pyshm_block_ring *out);

/* Patience for puts in tests: long enough never to end a put that can succeed. */
#define TC_PATIENCE_NS UINT64_C(5000000000)

/* ---- blocks ---- */
static inline uint8_t *tc_bytes(const struct pyshm_block *b) { return b->pool->data + b->index * b->pool->stride; }
static inline uint64_t tc_state(const struct pyshm_pool *p, uint64_t index)
{
    return atomic_load_explicit(&p->words[index].state, memory_order_relaxed);
}
static inline uint64_t tc_holder(const struct pyshm_pool *p, uint64_t index)
{
    return atomic_load_explicit(&p->words[index].holder, memory_order_relaxed);
}
/* Get exactly one block (failure recorded otherwise): 0 or -1. */
int tc_get1(const struct pyshm_pool *p, struct pyshm_member *m, struct pyshm_block *b);
/* Every block of every pool of s FREE, every free queue full, every ring of `rings` empty. */
void tc_check_quiet(struct pyshm_space *s, const struct pyshm_block_ring *rings, size_t nrings);
/*
 * Conservation after a repair: drain each ring into its pools through s, then take every
 * block of each pool out of its free queue: each block must come out exactly once (the
 * free queue holds each once, no holes or lost blocks), then all go back. Records failures;
 * returns the number of problems found.
 */
int tc_check_conservation(struct pyshm_space *s, const struct pyshm_block_ring *rings, size_t nrings);
/* Owned entries of the member table other than s's own. */
int tc_other_members(const struct pyshm_space *s);

/* ---- ring.h rings on the heap, for the tests of the bare FIFO ---- */

/* Zero-filled counters and slots: an empty ring, or a full one (slot i holding i). */
int tc_raw_ring_alloc(struct pyshm_ring *r, uint64_t capacity, int start_full);
void tc_raw_ring_free(struct pyshm_ring *r);
/* Put a ring (any ring: raw, a free queue, a Ring's queue) in the state a correct history
 * would leave: positions [deq, enq) FULL with values[0..), [enq, deq + capacity) EMPTY,
 * every slot released. Needs enq - deq <= capacity. */
void tc_ring_place(const struct pyshm_ring *r, uint64_t deq, uint64_t enq, const uint64_t *values);
/* One value in / out, the way the queue layer does it (claim, stage, publish / claim,
 * value, release): 0, or 1 when full / empty, or PYSHM_RING_CORRUPT. */
int tc_enq(const struct pyshm_ring *r, uint64_t v);
int tc_deq(const struct pyshm_ring *r, uint64_t *v);
/* All or none of n values (1 when not all fit), or up to max out (the count, 0 when empty). */
int64_t tc_enq_burst(const struct pyshm_ring *r, const uint64_t *v, uint64_t n);
int64_t tc_deq_burst(const struct pyshm_ring *r, uint64_t *out, uint64_t max);
/* Enqueue a value as a faulty producer would: a correct slot protocol, any value, no block
 * moved. 0, or -1 when the tail slot was not free. */
int tc_inject(const struct pyshm_queue *q, uint64_t value);

/* The phase of the slot of pos relative to pos (ring.h pyshm_ring_phase_now). */
static inline int tc_phase(const struct pyshm_ring *r, uint64_t pos) { return pyshm_ring_phase_now(r, pos); }

/* ---- processes ---- */

/* Wait for a child; 0 if it exited with status 0 (failure recorded otherwise). */
int tc_reap_ok(pid_t pid);
/* Wait for a child that must have died of `sig` (or exited 0 if sig is 0), or either. */
int tc_reap(pid_t pid, int *status);

void tc_yield(void);
uint64_t tc_rand(uint64_t *state);

#endif
