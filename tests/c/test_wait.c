/*
 * test_wait.c - waitpoints (wait.h): the epoch and marker protocol (a notifier with no
 * marker for the current epoch changes nothing; a marked epoch is bumped once; a stale
 * marker costs nothing), and sleepers woken by the queue operations that make data or room
 * (queue.h finish notifies), in another thread and in another process. No timing is
 * asserted: a lost wake-up shows as a hang, which the harness's alarm reports.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc.h"
#include "wait.h"

static void test_epoch_and_marker(void)
{
    struct pyshm_waitpoint *w = calloc(1, sizeof(*w));
    REQUIRE(w != NULL);
    /* Zero: no sleeper, nothing to do. */
    pyshm_wait_notify(w);
    CHECK_EQ(atomic_load(&w->epoch), 0);
    CHECK_EQ(atomic_load(&w->marker), 0);
    /* A sleeper marks the epoch it sleeps on; the next notify bumps it, once. */
    uint32_t e = pyshm_wait_prepare(w);
    CHECK_EQ(e, 0);
    CHECK_EQ(atomic_load(&w->marker), PYSHM_WAIT_MARKED | 0);
    pyshm_wait_notify(w);
    CHECK_EQ(atomic_load(&w->epoch), 1);
    pyshm_wait_notify(w); /* the marker is stale now */
    CHECK_EQ(atomic_load(&w->epoch), 1);
    /* Sleeping on a past epoch returns at once (the kernel compares the epoch first). */
    pyshm_wait_sleep(w, e, UINT64_C(60000000000));
    /* Two sleepers on the same epoch: one bump. A sleeper on an older epoch does not hide
     * the mark of a newer one. */
    e = pyshm_wait_prepare(w);
    CHECK_EQ(e, 1);
    CHECK_EQ(pyshm_wait_prepare(w), 1);
    pyshm_wait_notify(w);
    CHECK_EQ(atomic_load(&w->epoch), 2);
    atomic_store(&w->marker, PYSHM_WAIT_MARKED | 7); /* a newer epoch's mark (as a racing sleeper) */
    CHECK_EQ(pyshm_wait_prepare(w), 2);
    CHECK_EQ(atomic_load(&w->marker), PYSHM_WAIT_MARKED | 7); /* kept: the newest */
    pyshm_wait_wake(w, PYSHM_WAIT_MARKED | 5); /* a wake for an epoch that is not current */
    CHECK_EQ(atomic_load(&w->epoch), 2);
    /* wake_all always bumps. */
    pyshm_wait_wake_all(w);
    CHECK_EQ(atomic_load(&w->epoch), 3);
    /* The 32-bit epoch wraps: a marker for epoch 2^32 - 1, then 0. */
    atomic_store(&w->epoch, UINT32_MAX);
    atomic_store(&w->marker, 0);
    CHECK_EQ(pyshm_wait_prepare(w), UINT32_MAX);
    pyshm_wait_notify(w);
    CHECK_EQ(atomic_load(&w->epoch), 0);
    CHECK_EQ(pyshm_wait_prepare(w), 0);
    CHECK_EQ(atomic_load(&w->marker), PYSHM_WAIT_MARKED | 0);
    pyshm_wait_notify(w);
    CHECK_EQ(atomic_load(&w->epoch), 1);
    free(w);
}

/* A consumer that sleeps on the Ring's "not empty" waitpoint until it gets n blocks. */
struct sleeper {
    struct pyshm_space own;
    uint64_t ring_off;
    uint64_t want, got, sleeps;
};

static int64_t sleepy_dequeue(struct pyshm_space *s, const struct pyshm_block_ring *q, struct pyshm_member *m,
                              struct pyshm_block *out, uint64_t *sleeps)
{
    for (;;) {
        int64_t n = pyshm_block_ring_dequeue(q, m, &s->pools, &s->region, 0, 1, out);
        if (n != -PYSHM_EEMPTY)
            return n;
        /* 1-3 of wait.h, then try again before sleeping (4), then sleep (5). */
        uint32_t e = pyshm_wait_prepare(&q->queue.shared->not_empty);
        n = pyshm_block_ring_dequeue(q, m, &s->pools, &s->region, 0, 1, out);
        if (n != -PYSHM_EEMPTY)
            return n;
        ++*sleeps;
        pyshm_wait_sleep(&q->queue.shared->not_empty, e, UINT64_C(10000000000));
    }
}

static void *sleeper_main(void *arg)
{
    struct sleeper *z = arg;
    struct pyshm_member *m = tc_member(&z->own);
    struct pyshm_block_ring q;
    if (!m || pyshm_block_ring_attach(&z->own.region, z->ring_off, &q) != 0)
        return NULL;
    while (z->got < z->want) {
        struct pyshm_block b;
        int64_t n = sleepy_dequeue(&z->own, &q, m, &b, &z->sleeps);
        if (n != 1) {
            tc_fail(__FILE__, __LINE__, "dequeue = %" PRId64, n);
            return NULL;
        }
        if (pyshm_pool_put(b.pool, m, &b, 1, TC_PATIENCE_NS) != 0) {
            tc_fail(__FILE__, __LINE__, "put");
            return NULL;
        }
        z->got++;
    }
    return NULL;
}

static void test_sleeper_woken_by_enqueue(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 32, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct sleeper *z = calloc(1, sizeof(*z));
    REQUIRE(z != NULL);
    z->ring_off = q.offset;
    z->want = 200;
    REQUIRE(tc_space_attach_view(&z->own, &s) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, sleeper_main, z) == 0);
    uint64_t rng = 9;
    for (uint64_t i = 0; i < z->want; i++) {
        struct pyshm_block b;
        int64_t n;
        while ((n = pyshm_pool_get(p, m, &b, 1)) == -PYSHM_EEMPTY)
            tc_yield();
        REQUIRE_EQ(n, 1);
        if (tc_rand(&rng) % 4 == 0)
            usleep(200); /* let the consumer fall asleep now and then */
        REQUIRE_EQ(pyshm_block_ring_enqueue(&q, m, &b, 1), 0); /* notifies "not empty" */
    }
    pthread_join(th, NULL);
    CHECK_EQ(z->got, z->want);
    tc_space_close(&z->own);
    free(z);
    tc_check_quiet(&s, &q, 1);
    pyshm_space_close(&s);
}

/* The same across processes: the futex is a shared one, the word at another address. */
static void test_sleeper_in_another_process(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 32, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 4, 0, NULL, &q) == 0);
    uint64_t *sleeps = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(sleeps != MAP_FAILED);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(60);
        struct sleeper z = {.ring_off = q.offset, .want = 50};
        if (tc_space_attach(&z.own, &s) < 0)
            _exit(10);
        sleeper_main(&z);
        *sleeps = z.sleeps;
        int ok = z.got == z.want && atomic_load(&tc_failures) == 0;
        pyshm_space_close(&z.own);
        _exit(ok ? 0 : 11);
    }
    for (int i = 0; i < 50; i++) {
        struct pyshm_block b;
        int64_t n;
        while ((n = pyshm_pool_get(p, m, &b, 1)) == -PYSHM_EEMPTY)
            tc_yield();
        REQUIRE_EQ(n, 1);
        if (i % 3 == 0)
            usleep(500);
        REQUIRE_EQ(pyshm_block_ring_enqueue(&q, m, &b, 1), 0);
    }
    CHECK(tc_reap_ok(pid) == 0);
    if (getenv("TC_VERBOSE"))
        printf("      the other process slept %" PRIu64 " times\n", *sleeps);
    munmap(sleeps, 4096);
    tc_check_quiet(&s, &q, 1);
    CHECK_EQ(tc_other_members(&s), 0);
    pyshm_space_close(&s);
}

/* Shutdown wakes every sleeper on both sides. */
static void *shutdown_sleeper(void *arg)
{
    struct sleeper *z = arg;
    struct pyshm_member *m = tc_member(&z->own);
    struct pyshm_block_ring q;
    if (!m || pyshm_block_ring_attach(&z->own.region, z->ring_off, &q) != 0)
        return NULL;
    struct pyshm_block b;
    z->got = (uint64_t)sleepy_dequeue(&z->own, &q, m, &b, &z->sleeps); /* ESHUTDOWN ends it */
    return NULL;
}

static void test_shutdown_wakes_sleepers(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_block_ring q;
    REQUIRE(tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct sleeper *z = calloc(2, sizeof(*z));
    REQUIRE(z != NULL);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        z[i].ring_off = q.offset;
        REQUIRE(tc_space_attach_view(&z[i].own, &s) == 0);
        REQUIRE(pthread_create(&th[i], NULL, shutdown_sleeper, &z[i]) == 0);
    }
    usleep(20000); /* most likely asleep by now; correct either way */
    pyshm_block_ring_shutdown(&q, 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ((int64_t)z[i].got, -ESHUTDOWN);
        tc_space_close(&z[i].own);
    }
    free(z);
    pyshm_space_close(&s);
}

const struct tc_test tc_wait_tests[] = {
    {"wait_epoch_and_marker", test_epoch_and_marker, 0, NULL},
    {"wait_sleeper_woken_by_enqueue", test_sleeper_woken_by_enqueue, 0, NULL},
    {"wait_shutdown_wakes_sleepers", test_shutdown_wakes_sleepers, 0, NULL},
    {"wait_sleeper_in_another_process", test_sleeper_in_another_process, TC_FORK, NULL},
};
const size_t tc_wait_test_count = TC_COUNT(tc_wait_tests);
