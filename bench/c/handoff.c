/*
 * handoff.c - W6, the floor: W1's hand-off written in C against pyshm's core, with no
 * Python in the way.
 *
 * A region, a pool of 64-byte blocks and a block ring are made before fork(); then
 *   producer: pool get, write a sequence number into the block, ring enqueue
 *   consumer: ring dequeue, read and check the sequence number, pool put
 * one element at a time ("single") or in bursts of up to 32 ("burst"), spinning with
 * pyshm_cpu_relax() while the pool is empty or the ring is full/empty, and yielding the
 * CPU after a long run of failures (as the Python spin loops do) so that an
 * oversubscribed machine still lets the other side run. Both sides use the same flags as
 * the Python W1 (single producer / single consumer).
 *
 * Also "pool": time creating a 1 GiB region with a pool of 1,000,000 blocks and report
 * the pool's footprint beyond its blocks' bytes.
 *
 * Build (run.py does this, from the repository root):
 *   gcc -O2 -std=c11 -Isrc/core -o bench/c/build/handoff bench/c/handoff.c src/core/[a-z]*.c
 * Usage:
 *   handoff single|burst WARM N [POOL RING]    one JSON line on stdout, exit 0
 *   handoff pool COUNT ELT_SIZE REGION_BYTES
 *   handoff lines ROUNDS                          cache-line round trip between two processes
 * Exit status 1 and a message on stderr when a check fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdalign.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block_ring.h"
#include "mempool.h"
#include "region.h"

#define BURST 32
/* Failed attempts in a row before a spinning side yields its CPU. */
#define SPIN_BEFORE_YIELD 4096u

static inline void backoff(unsigned *spins)
{
    if (++*spins >= SPIN_BEFORE_YIELD) {
        *spins = 0;
        sched_yield();
    } else {
        pyshm_cpu_relax();
    }
}

/* Written by the children, read by the parent: a private shared page. */
struct shared_result {
    uint64_t t_start_ns; /* producer, before its first timed message */
    uint64_t t_end_ns;   /* consumer, after checking its last message */
    char error[256];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(struct shared_result *res, const char *fmt, uint64_t a, uint64_t b)
{
    snprintf(res->error, sizeof(res->error), fmt, a, b);
    fprintf(stderr, "handoff: %s\n", res->error);
    _exit(1);
}

static void producer_single(struct pyshm_pool *pool, struct pyshm_block_ring *ring, uint64_t warm,
                            uint64_t n, struct shared_result *res)
{
    for (uint64_t seq = 0; seq < warm + n; seq++) {
        if (seq == warm)
            res->t_start_ns = now_ns();
        uint64_t index, gen;
        int rc;
        unsigned spins = 0;
        while ((rc = pyshm_pool_get(pool, &index, &gen)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (rc < 0)
            fail(res, "pool get failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, seq);
        memcpy(pool->data + index * pool->stride, &seq, sizeof(seq));
        spins = 0;
        while ((rc = pyshm_block_ring_enqueue(ring, pool, index, &gen)) == -PYSHM_EFULL)
            backoff(&spins);
        if (rc < 0)
            fail(res, "enqueue failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, seq);
    }
}

static void consumer_single(struct pyshm_region *region, struct pyshm_block_ring *ring, uint64_t total,
                            struct shared_result *res)
{
    for (uint64_t expected = 0; expected < total; expected++) {
        struct pyshm_taken_block b;
        int rc;
        unsigned spins = 0;
        while ((rc = pyshm_block_ring_dequeue(ring, region, 0, &b)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (rc < 0)
            fail(res, "dequeue failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, expected);
        uint64_t seq;
        memcpy(&seq, b.pool->data + b.index * b.pool->stride, sizeof(seq));
        if (seq != expected)
            fail(res, "sequence check failed: got %" PRIu64 ", expected %" PRIu64, seq, expected);
        if ((rc = pyshm_pool_put(b.pool, b.index, &b.gen)) < 0)
            fail(res, "pool put failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, expected);
    }
    res->t_end_ns = now_ns();
}

static void producer_burst(struct pyshm_pool *pool, struct pyshm_block_ring *ring, uint64_t warm, uint64_t n,
                           struct shared_result *res)
{
    uint64_t total = warm + n, seq = 0;
    uint64_t indices[BURST], gens[BURST];
    struct pyshm_held_block held[BURST];
    int started = warm == 0;
    if (started)
        res->t_start_ns = now_ns();
    while (seq < total) {
        if (!started && seq >= warm) {
            res->t_start_ns = now_ns();
            started = 1;
        }
        uint64_t want = total - seq < BURST ? total - seq : BURST;
        int64_t got;
        unsigned spins = 0;
        while ((got = pyshm_pool_get_burst(pool, indices, gens, want)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (got < 0)
            fail(res, "pool get_burst failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-got, seq);
        for (int64_t i = 0; i < got; i++) {
            uint64_t s = seq + (uint64_t)i;
            memcpy(pool->data + indices[i] * pool->stride, &s, sizeof(s));
            held[i] = (struct pyshm_held_block){.pool = pool, .index = indices[i], .gen = gens[i]};
        }
        int rc;
        spins = 0;
        while ((rc = pyshm_block_ring_enqueue_burst(ring, held, (uint64_t)got)) == -PYSHM_EFULL)
            backoff(&spins);
        if (rc < 0)
            fail(res, "enqueue_burst failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, seq);
        seq += (uint64_t)got;
    }
}

static void consumer_burst(struct pyshm_region *region, struct pyshm_block_ring *ring, uint64_t total,
                           struct shared_result *res)
{
    struct pyshm_taken_block taken[BURST];
    uint64_t indices[BURST], gens[BURST];
    uint64_t expected = 0;
    while (expected < total) {
        int64_t got;
        unsigned spins = 0;
        while ((got = pyshm_block_ring_dequeue_burst(ring, region, taken, BURST)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (got < 0)
            fail(res, "dequeue_burst failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-got, expected);
        const struct pyshm_pool *pool = taken[0].pool;
        for (int64_t i = 0; i < got; i++, expected++) {
            uint64_t seq;
            memcpy(&seq, taken[i].pool->data + taken[i].index * taken[i].pool->stride, sizeof(seq));
            if (seq != expected)
                fail(res, "sequence check failed: got %" PRIu64 ", expected %" PRIu64, seq, expected);
            if (taken[i].pool != pool)
                fail(res, "block from another pool at message %" PRIu64 " (%" PRIu64 ")", expected, 0);
            indices[i] = taken[i].index;
            gens[i] = taken[i].gen;
        }
        int rc = pyshm_pool_put_burst(pool, indices, gens, (uint64_t)got);
        if (rc < 0)
            fail(res, "pool put_burst failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, expected);
    }
    res->t_end_ns = now_ns();
}

static int run_handoff(int burst, uint64_t warm, uint64_t n, uint64_t pool_count, uint64_t ring_count)
{
    struct shared_result *res = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(res, 0, sizeof(*res));
    uint64_t pool_bytes, ring_bytes;
    if (pyshm_pool_footprint(pool_count, 64, &pool_bytes) < 0 || pyshm_block_ring_footprint(ring_count, &ring_bytes) < 0) {
        fprintf(stderr, "handoff: bad geometry\n");
        return 1;
    }
    struct pyshm_region region;
    int rc = pyshm_region_create(&region, pyshm_region_size_for(pool_bytes) + ring_bytes + 4096);
    if (rc < 0) {
        fprintf(stderr, "handoff: region create: %s\n", strerror(-rc));
        return 1;
    }
    struct pyshm_pool pool;
    struct pyshm_block_ring ring;
    uint32_t pool_flags = PYSHM_MEMPOOL_F_SC_GET | PYSHM_MEMPOOL_F_SP_PUT;
    uint32_t ring_flags = PYSHM_RING_F_SP_ENQ | PYSHM_RING_F_SC_DEQ;
    if ((rc = pyshm_pool_create(&region, pool_count, 64, pool_flags, NULL, &pool)) < 0 ||
        (rc = pyshm_block_ring_create(&region, ring_count, ring_flags, NULL, &ring)) < 0) {
        fprintf(stderr, "handoff: create: %s\n", strerror(-rc));
        return 1;
    }
    pid_t consumer = fork();
    if (consumer == 0) {
        if (burst)
            consumer_burst(&region, &ring, warm + n, res);
        else
            consumer_single(&region, &ring, warm + n, res);
        _exit(0);
    }
    pid_t producer = fork();
    if (producer == 0) {
        if (burst)
            producer_burst(&pool, &ring, warm, n, res);
        else
            producer_single(&pool, &ring, warm, n, res);
        _exit(0);
    }
    int ok = 1;
    pid_t pids[2] = {producer, consumer};
    for (int i = 0; i < 2; i++) {
        int status;
        if (pids[i] < 0 || waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "handoff: a child failed: %s\n", res->error[0] ? res->error : "(no message)");
        return 1;
    }
    if (pyshm_pool_free_count(&pool) != pool_count) {
        fprintf(stderr, "handoff: %" PRIu64 " of %" PRIu64 " blocks back in the pool\n", pyshm_pool_free_count(&pool),
                pool_count);
        return 1;
    }
    double seconds = (double)(res->t_end_ns - res->t_start_ns) / 1e9;
    printf("{\"mode\": \"%s\", \"warm\": %" PRIu64 ", \"n\": %" PRIu64 ", \"seconds\": %.9f, \"msgs_per_s\": %.1f}\n",
           burst ? "burst" : "single", warm, n, seconds, (double)n / seconds);
    pyshm_region_close(&region);
    return 0;
}

static int run_pool(uint64_t count, uint64_t elt_size, uint64_t region_bytes)
{
    uint64_t footprint;
    if (pyshm_pool_footprint(count, elt_size, &footprint) < 0) {
        fprintf(stderr, "handoff: bad pool geometry\n");
        return 1;
    }
    struct pyshm_region region;
    struct pyshm_pool pool;
    uint64_t t0 = now_ns();
    int rc = pyshm_region_create(&region, region_bytes);
    if (rc == 0)
        rc = pyshm_pool_create(&region, count, elt_size, 0, NULL, &pool);
    uint64_t t1 = now_ns();
    if (rc < 0) {
        fprintf(stderr, "handoff: pool create: %s\n", strerror(-rc));
        return 1;
    }
    /* Every block must come out once. */
    uint64_t index, gen, got = 0;
    while (pyshm_pool_get(&pool, &index, &gen) == 0)
        got++;
    if (got != count) {
        fprintf(stderr, "handoff: got %" PRIu64 " blocks of %" PRIu64 "\n", got, count);
        return 1;
    }
    printf("{\"mode\": \"pool\", \"count\": %" PRIu64 ", \"elt_size\": %" PRIu64 ", \"region_bytes\": %" PRIu64
           ", \"create_seconds\": %.6f, \"footprint\": %" PRIu64 ", \"stride\": %" PRIu64
           ", \"overhead_per_block\": %.3f}\n",
           count, elt_size, region_bytes, (double)(t1 - t0) / 1e9, footprint, pool.stride,
           (double)(footprint - count * elt_size) / (double)count);
    pyshm_region_close(&region);
    return 0;
}

/*
 * What moving one cache line between the two processes costs on this machine right now:
 * two processes take turns incrementing a shared counter (each waits for the other's
 * value); one round trip is two line transfers. A reference for reading W1 and W6, whose
 * every message moves a few lines from one core to the other.
 */
static int run_lines(uint64_t rounds)
{
    struct line {
        alignas(64) pyshm_atomic64 turn;
        uint64_t t_start_ns, t_end_ns;
    } *l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    atomic_store(&l->turn, 0);
    pid_t pids[2];
    for (uint64_t side = 0; side < 2; side++) {
        pids[side] = fork();
        if (pids[side] == 0) {
            unsigned spins = 0;
            if (side == 0)
                l->t_start_ns = now_ns();
            for (uint64_t i = side; i < 2 * rounds; i += 2) {
                while (atomic_load_explicit(&l->turn, memory_order_acquire) != i)
                    backoff(&spins);
                atomic_store_explicit(&l->turn, i + 1, memory_order_release);
            }
            if (side == 1)
                l->t_end_ns = now_ns();
            _exit(0);
        }
    }
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        int status;
        if (pids[i] < 0 || waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ok = 0;
    }
    if (!ok)
        return 1;
    printf("{\"mode\": \"lines\", \"rounds\": %" PRIu64 ", \"round_trip_ns\": %.1f}\n", rounds,
           (double)(l->t_end_ns - l->t_start_ns) / (double)rounds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "lines") == 0)
        return run_lines(strtoull(argv[2], NULL, 10));
    if (argc >= 4 && (strcmp(argv[1], "single") == 0 || strcmp(argv[1], "burst") == 0)) {
        uint64_t pool_count = argc > 4 ? strtoull(argv[4], NULL, 10) : 1024;
        uint64_t ring_count = argc > 5 ? strtoull(argv[5], NULL, 10) : 1024;
        return run_handoff(argv[1][0] == 'b', strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), pool_count,
                           ring_count);
    }
    if (argc == 5 && strcmp(argv[1], "pool") == 0)
        return run_pool(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    fprintf(stderr, "usage: %s single|burst WARM N [POOL RING] | pool COUNT ELT_SIZE REGION_BYTES | lines ROUNDS\n",
            argv[0]);
    return 2;
}
