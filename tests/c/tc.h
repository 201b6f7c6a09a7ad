/*
 * tc.h - the small test harness shared by the C tests of src/core (see run.sh).
 *
 * A test is a void function. CHECK records a failure and goes on; REQUIRE records one and
 * returns from the calling function. Both may be used from any thread of the test
 * process (failures are counted atomically). A test registered as "known bug" (TC_XFAIL)
 * is expected to fail until the core is fixed: its failure is reported as XFAIL and not
 * counted, and if it starts passing it is counted as a failure (XPASS), so that the mark
 * gets removed. `--strict` runs such tests as ordinary ones.
 */
#ifndef PYSHM_TESTS_TC_H
#define PYSHM_TESTS_TC_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "block_ring.h"
#include "mempool.h"
#include "region.h"
#include "ring.h"

/* ---- configuration, set by main() from argv and the build ---- */
struct tc_config {
    uint64_t messages;     /* per stress run, all producers together */
    int tsan;              /* built with -fsanitize=thread */
    int fork_tests;        /* run the tests that fork() */
    int strict;            /* treat known-bug tests as ordinary tests */
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
enum { TC_FORK = 1, TC_XFAIL = 2 };
struct tc_test {
    const char *name;
    void (*fn)(void);
    unsigned flags;
    const char *note; /* why it is a known bug */
};
extern const struct tc_test tc_edge_tests[];
extern const size_t tc_edge_test_count;
extern const struct tc_test tc_region_tests[];
extern const size_t tc_region_test_count;
extern const struct tc_test tc_burst_tests[];
extern const size_t tc_burst_test_count;
extern const struct tc_test tc_stress_tests[];
extern const size_t tc_stress_test_count;
extern const struct tc_test tc_fork_tests[];
extern const size_t tc_fork_test_count;

/* ---- helpers (test_core.c) ---- */

/* A region for one test; REQUIRE-style failure is reported by the caller. */
int tc_region(struct pyshm_region *r, uint64_t size);

/*
 * A second process-local handle onto the same region, as another process would have:
 * its own pool table (initially empty) and, when the region has a memfd, its own mapping
 * at a different address. Release with tc_view_close (never pyshm_region_close).
 */
int tc_view_open(const struct pyshm_region *src, struct pyshm_region *view);
void tc_view_close(const struct pyshm_region *src, struct pyshm_region *view);

/* A heap ring.h ring of `capacity` slots. Free with tc_raw_ring_free. */
int tc_raw_ring_alloc(struct pyshm_ring *r, uint64_t capacity);
void tc_raw_ring_free(struct pyshm_ring *r);

/* Enqueue/dequeue through the chosen variant. */
int tc_enq(const struct pyshm_ring *r, int sp, uint64_t v);
int tc_deq(const struct pyshm_ring *r, int sc, uint64_t *v);

/* Write an entry into the ring the way a faulty producer would: a valid sequence word
 * and an arbitrary value. 0, or -1 if the slot at the tail was not free. */
int tc_inject(const struct pyshm_ring *r, uint64_t value);

static inline uint8_t *tc_block(const struct pyshm_pool *p, uint64_t index)
{
    return p->data + index * p->stride;
}

static inline uint64_t tc_state(const struct pyshm_pool *p, uint64_t index)
{
    return atomic_load_explicit(&p->states[index], memory_order_relaxed);
}

void tc_yield(void);

#endif
