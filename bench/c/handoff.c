/*
 * handoff.c - W6, the floor: W1's hand-off written in C against pyshm's core, with no
 * Python in the way.
 *
 * A space (region + member table), a pool of 64-byte blocks and a block ring are made
 * before fork(); each child joins the member table with its own entry (as a Python
 * process does on its first call), then
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
#include "space.h"

#define BURST 32
/* How long a put waits for a free queue blocked by a stopped get (mempool.h): as the
 * binding's Mempool.put. */
#define PUT_PATIENCE_NS UINT64_C(200000000)
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

static struct pyshm_member *join(struct pyshm_space *space, struct shared_result *res)
{
    int rc = 0;
    struct pyshm_member *m = pyshm_space_member(space, &rc);
    if (m == NULL)
        fail(res, "joining the member table failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, 0);
    return m;
}

static inline uint8_t *bytes_of(const struct pyshm_block *b) { return b->pool->data + b->index * b->pool->stride; }

static void producer_single(struct pyshm_space *space, const struct pyshm_pool *pool, const struct pyshm_block_ring *ring,
                            uint64_t warm, uint64_t n, struct shared_result *res)
{
    struct pyshm_member *m = join(space, res);
    for (uint64_t seq = 0; seq < warm + n; seq++) {
        if (seq == warm)
            res->t_start_ns = now_ns();
        struct pyshm_block b;
        int64_t got;
        int rc;
        unsigned spins = 0;
        while ((got = pyshm_pool_get(pool, m, &b, 1)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (got != 1)
            fail(res, "pool get failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-got, seq);
        memcpy(bytes_of(&b), &seq, sizeof(seq));
        spins = 0;
        while ((rc = pyshm_block_ring_enqueue(ring, m, &b, 1)) == -PYSHM_EFULL)
            backoff(&spins);
        if (rc < 0)
            fail(res, "enqueue failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, seq);
    }
}

static void consumer_single(struct pyshm_space *space, const struct pyshm_block_ring *ring, uint64_t total,
                            struct shared_result *res)
{
    struct pyshm_member *m = join(space, res);
    for (uint64_t expected = 0; expected < total; expected++) {
        struct pyshm_block b;
        int64_t got;
        int rc;
        unsigned spins = 0;
        while ((got = pyshm_block_ring_dequeue(ring, m, &space->pools, &space->region, 0, 1, &b)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (got != 1)
            fail(res, "dequeue failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-got, expected);
        uint64_t seq;
        memcpy(&seq, bytes_of(&b), sizeof(seq));
        if (seq != expected)
            fail(res, "sequence check failed: got %" PRIu64 ", expected %" PRIu64, seq, expected);
        if ((rc = pyshm_pool_put(b.pool, m, &b, 1, PUT_PATIENCE_NS)) < 0)
            fail(res, "pool put failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, expected);
    }
    res->t_end_ns = now_ns();
}

static void producer_burst(struct pyshm_space *space, const struct pyshm_pool *pool, const struct pyshm_block_ring *ring,
                           uint64_t warm, uint64_t n, struct shared_result *res)
{
    struct pyshm_member *m = join(space, res);
    uint64_t total = warm + n, seq = 0;
    struct pyshm_block held[BURST];
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
        while ((got = pyshm_pool_get(pool, m, held, want)) == -PYSHM_EEMPTY)
            backoff(&spins);
        if (got < 0)
            fail(res, "pool get (burst) failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-got, seq);
        for (int64_t i = 0; i < got; i++) {
            uint64_t s = seq + (uint64_t)i;
            memcpy(bytes_of(&held[i]), &s, sizeof(s));
        }
        int rc;
        spins = 0;
        while ((rc = pyshm_block_ring_enqueue(ring, m, held, (uint64_t)got)) == -PYSHM_EFULL)
            backoff(&spins);
        if (rc < 0)
            fail(res, "enqueue (burst) failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, seq);
        seq += (uint64_t)got;
    }
}

static void consumer_burst(struct pyshm_space *space, const struct pyshm_block_ring *ring, uint64_t total,
                           struct shared_result *res)
{
    struct pyshm_member *m = join(space, res);
    struct pyshm_block taken[BURST];
    uint64_t expected = 0;
    while (expected < total) {
        int64_t got;
        unsigned spins = 0;
        while ((got = pyshm_block_ring_dequeue(ring, m, &space->pools, &space->region, 0, BURST, taken)) ==
               -PYSHM_EEMPTY)
            backoff(&spins);
        if (got < 0)
            fail(res, "dequeue (burst) failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-got, expected);
        const struct pyshm_pool *pool = taken[0].pool;
        for (int64_t i = 0; i < got; i++, expected++) {
            uint64_t seq;
            memcpy(&seq, bytes_of(&taken[i]), sizeof(seq));
            if (seq != expected)
                fail(res, "sequence check failed: got %" PRIu64 ", expected %" PRIu64, seq, expected);
            if (taken[i].pool != pool)
                fail(res, "block from another pool at message %" PRIu64 " (%" PRIu64 ")", expected, 0);
        }
        int rc = pyshm_pool_put(pool, m, taken, (uint64_t)got, PUT_PATIENCE_NS);
        if (rc < 0)
            fail(res, "pool put (burst) failed: %" PRIu64 " (%" PRIu64 ")", (uint64_t)-rc, expected);
    }
    res->t_end_ns = now_ns();
}

/* A space with room for `bytes` of objects, and its member entry: 0 or -errno. */
static int make_space(struct pyshm_space *space, uint64_t bytes)
{
    return pyshm_space_create(space, bytes < PYSHM_MIN_REGION_SIZE ? PYSHM_MIN_REGION_SIZE : bytes);
}

/* Create a pool and add it to the space's table (the table's copy in *pool): 0 or -errno. */
static int make_pool(struct pyshm_space *space, uint64_t count, uint64_t elt_size, uint32_t flags,
                     const struct pyshm_pool **pool)
{
    uint64_t offset;
    int rc = pyshm_pool_create(&space->region, count, elt_size, flags, NULL, &offset);
    return rc < 0 ? rc : pyshm_pool_table_add(&space->pools, &space->region, offset, pool);
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
    struct pyshm_space space;
    int rc = make_space(&space, pool_bytes + ring_bytes + 4096);
    if (rc < 0) {
        fprintf(stderr, "handoff: space create: %s\n", strerror(-rc));
        return 1;
    }
    const struct pyshm_pool *pool;
    struct pyshm_block_ring ring;
    uint64_t ring_offset;
    uint32_t pool_flags = PYSHM_MEMPOOL_F_SC_GET | PYSHM_MEMPOOL_F_SP_PUT;
    uint32_t ring_flags = PYSHM_BLOCK_RING_F_SP_ENQ | PYSHM_BLOCK_RING_F_SC_DEQ;
    if ((rc = make_pool(&space, pool_count, 64, pool_flags, &pool)) < 0 ||
        (rc = pyshm_block_ring_create(&space.region, ring_count, ring_flags, NULL, &ring_offset)) < 0 ||
        (rc = pyshm_block_ring_attach(&space.region, ring_offset, &ring)) < 0) {
        fprintf(stderr, "handoff: create: %s\n", strerror(-rc));
        return 1;
    }
    fflush(NULL);
    pid_t consumer = fork();
    if (consumer == 0) {
        if (burst)
            consumer_burst(&space, &ring, warm + n, res);
        else
            consumer_single(&space, &ring, warm + n, res);
        pyshm_space_close(&space);
        _exit(0);
    }
    pid_t producer = fork();
    if (producer == 0) {
        if (burst)
            producer_burst(&space, pool, &ring, warm, n, res);
        else
            producer_single(&space, pool, &ring, warm, n, res);
        pyshm_space_close(&space);
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
    if (pyshm_pool_free_count(pool) != pool_count) {
        fprintf(stderr, "handoff: %" PRIu64 " of %" PRIu64 " blocks back in the pool\n", pyshm_pool_free_count(pool),
                pool_count);
        return 1;
    }
    double seconds = (double)(res->t_end_ns - res->t_start_ns) / 1e9;
    printf("{\"mode\": \"%s\", \"warm\": %" PRIu64 ", \"n\": %" PRIu64 ", \"seconds\": %.9f, \"msgs_per_s\": %.1f}\n",
           burst ? "burst" : "single", warm, n, seconds, (double)n / seconds);
    pyshm_space_close(&space);
    return 0;
}

static int run_pool(uint64_t count, uint64_t elt_size, uint64_t region_bytes)
{
    uint64_t footprint;
    if (pyshm_pool_footprint(count, elt_size, &footprint) < 0) {
        fprintf(stderr, "handoff: bad pool geometry\n");
        return 1;
    }
    struct pyshm_space space;
    const struct pyshm_pool *pool = NULL;
    uint64_t t0 = now_ns();
    int rc = make_space(&space, region_bytes);
    if (rc == 0)
        rc = make_pool(&space, count, elt_size, 0, &pool);
    uint64_t t1 = now_ns();
    if (rc < 0) {
        fprintf(stderr, "handoff: pool create: %s\n", strerror(-rc));
        return 1;
    }
    /* Every block must come out once. */
    struct pyshm_member *m = pyshm_space_member(&space, &rc);
    if (m == NULL) {
        fprintf(stderr, "handoff: join: %d\n", rc);
        return 1;
    }
    struct pyshm_block blocks[BURST];
    uint64_t got = 0;
    int64_t k;
    while ((k = pyshm_pool_get(pool, m, blocks, BURST)) > 0)
        got += (uint64_t)k;
    if (got != count) {
        fprintf(stderr, "handoff: got %" PRIu64 " blocks of %" PRIu64 "\n", got, count);
        return 1;
    }
    printf("{\"mode\": \"pool\", \"count\": %" PRIu64 ", \"elt_size\": %" PRIu64 ", \"region_bytes\": %" PRIu64
           ", \"create_seconds\": %.6f, \"footprint\": %" PRIu64 ", \"stride\": %" PRIu64
           ", \"overhead_per_block\": %.3f}\n",
           count, elt_size, region_bytes, (double)(t1 - t0) / 1e9, footprint, pool->stride,
           (double)(footprint - count * elt_size) / (double)count);
    /* The blocks are still held: a close would leave the entry for a repair; the region
     * goes with the process anyway. */
    pyshm_space_close(&space);
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
