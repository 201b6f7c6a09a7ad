/*
 * test_fork.c - the block path across fork()ed processes: producers and consumers are
 * child processes sharing a region created before the fork, with the seen table in
 * shared memory; and a fork child's stale copy of a held block.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repair.h"
#include "stress.h"

/* ------------------------------------------------------------------------------------ */
/* The block path across processes                                                       */

#define FORK_PRODUCERS 2
#define FORK_CONSUMERS 2

/* Shared by the parent and its children (MAP_SHARED), beside the region. */
struct fork_ctl {
    atomic_int producers_done;
    atomic_int abort;
    atomic_uint_fast64_t pool_b_offset; /* 0 until producer 1 has created its pool */
    atomic_uchar seen[];
};

struct fork_env {
    struct pyshm_region *region;
    struct pyshm_pool *pool_a;
    struct pyshm_block_ring *ring;
    struct fork_ctl *ctl;
    uint64_t per;
};

static int fork_producers_done(void *ctx)
{
    struct fork_ctl *ctl = ctx;
    return atomic_load_explicit(&ctl->producers_done, memory_order_acquire) == FORK_PRODUCERS;
}

/* Producer 0 sends in pool A (made before fork); producer 1 makes pool B after fork and
 * alternates between A and B, so consumers must find B by re-walking. */
static int fork_producer(struct fork_env *e, int id)
{
    struct pyshm_pool pool_b, *pools[2] = {e->pool_a, e->pool_a};
    if (id == 1) {
        if (pyshm_pool_create(e->region, 8, 120, 0, NULL, &pool_b) != 0) {
            tc_fail(__FILE__, __LINE__, "pool B");
            return 1;
        }
        pools[1] = &pool_b;
        atomic_store_explicit(&e->ctl->pool_b_offset, pool_b.offset, memory_order_release);
    }
    uint64_t me = 1 + (uint64_t)id;
    for (uint64_t seq = 0; seq < e->per; seq++) {
        const struct pyshm_pool *pool = pools[seq % 2];
        uint64_t index, gen;
        int rc;
        while ((rc = pyshm_pool_get(pool, &index, &gen)) == -PYSHM_EEMPTY && !atomic_load(&e->ctl->abort))
            tc_yield();
        if (rc != 0)
            return 1;
        uint8_t *b = tc_block(pool, index);
        own_block(b, me);
        stamp_message(b, pool->elt_size, (uint64_t)id, seq);
        if (!still_owner(b, me, "before enqueue"))
            return 1;
        while ((rc = pyshm_block_ring_enqueue(e->ring, pool, index, &gen)) == -PYSHM_EFULL &&
               !atomic_load(&e->ctl->abort))
            tc_yield();
        if (rc != 0) {
            tc_fail(__FILE__, __LINE__, "enqueue gave %d", rc);
            return 1;
        }
    }
    atomic_fetch_add_explicit(&e->ctl->producers_done, 1, memory_order_release);
    return 0;
}

static uint64_t fork_pool(void *ctx, uint64_t producer, uint64_t seq)
{
    struct fork_env *e = ctx;
    if (producer == 1 && seq % 2 == 1)
        return atomic_load_explicit(&e->ctl->pool_b_offset, memory_order_acquire);
    return e->pool_a->offset;
}

static int fork_consumer(struct fork_env *e, int id)
{
    /* Consumer 0 keeps the handle it inherited (it knows pool A only); consumer 1 starts
     * from nothing, with its own table and mapping, as an unrelated process would. */
    struct pyshm_region own, *region = e->region;
    if (id == 1) {
        if (tc_view_open(e->region, &own) != 0)
            return 1;
        region = &own;
    }
    struct pyshm_block_ring ring;
    if (pyshm_block_ring_attach(region, e->ring->offset, &ring) != 0) {
        tc_fail(__FILE__, __LINE__, "ring attach");
        return 1;
    }
    struct consumer_ctx c = {
        .ring = &ring, .region = region, .producers = FORK_PRODUCERS, .per = e->per, .me = 1000 + (uint64_t)id,
        .expected_pool = fork_pool, .pool_ctx = e, .large_elt = 120, .picky = id == 0, .seen = e->ctl->seen,
        .abort = &e->ctl->abort, .producers_done = fork_producers_done, .done_ctx = e->ctl,
    };
    consume(&c);
    if (region == &own)
        tc_view_close(e->region, &own);
    return 0;
}

/* Fork one child running fn; it ends with _exit: 0 if it recorded no failure. */
static pid_t spawn(struct fork_env *e, int (*fn)(struct fork_env *, int), int id)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(90); /* a hung child dies and the parent reports it */
        atomic_store(&tc_failures, 0);
        int rc = fn(e, id);
        if (rc != 0 || atomic_load(&tc_failures) != 0) {
            atomic_store(&e->ctl->abort, 1);
            _exit(rc != 0 ? 10 + rc : 20);
        }
        _exit(0);
    }
    return pid;
}

static void test_fork_block_path(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 20) == 0);
    struct pyshm_pool pool_a;
    struct pyshm_block_ring ring;
    REQUIRE_EQ(pyshm_pool_create(&r, 16, 64, 0, NULL, &pool_a), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 8, 0, NULL, &ring), 0);
    pyshm_ring_init(&ring.ring, UINT64_MAX - tc_cfg.messages / 3);
    uint64_t per = tc_cfg.messages / FORK_PRODUCERS;
    size_t ctl_size = sizeof(struct fork_ctl) + FORK_PRODUCERS * per;
    struct fork_ctl *ctl = mmap(NULL, ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(ctl != MAP_FAILED);
    struct fork_env e = {.region = &r, .pool_a = &pool_a, .ring = &ring, .ctl = ctl, .per = per};

    pid_t pids[FORK_PRODUCERS + FORK_CONSUMERS];
    int n = 0;
    for (int i = 0; i < FORK_CONSUMERS; i++)
        pids[n++] = spawn(&e, fork_consumer, i);
    for (int i = 0; i < FORK_PRODUCERS; i++)
        pids[n++] = spawn(&e, fork_producer, i);
    for (int i = 0; i < n; i++)
        CHECK(pids[i] > 0);
    /* Reap in any order; once one fails, tell the others to stop rather than wait. */
    for (int left = n; left > 0;) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0)
            break;
        left--;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            tc_fail(__FILE__, __LINE__, "child %d ended with %s %d", (int)pid,
                    WIFEXITED(status) ? "exit status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            atomic_store(&ctl->abort, 1);
        }
    }
    check_all_seen(ctl->seen, FORK_PRODUCERS, per);
    CHECK_EQ(pyshm_block_ring_count(&ring), 0);
    CHECK_EQ(pyshm_pool_free_count(&pool_a), pool_a.count);
    /* The parent never saw pool B: its handle finds it by re-walking, like any process. */
    uint64_t b_offset = atomic_load(&ctl->pool_b_offset);
    CHECK(b_offset != 0);
    if (b_offset) {
        struct pyshm_pool pool_b;
        CHECK_EQ(pyshm_pool_attach(&r, b_offset, &pool_b), 0);
        const struct pyshm_pool *found = NULL;
        uint64_t index;
        CHECK_EQ(pyshm_region_find_block(&r, pyshm_pool_block_offset(&pool_b, 7), &found, &index), 0);
        CHECK(found && found->offset == b_offset && index == 7);
        CHECK_EQ(pyshm_pool_free_count(&pool_b), 8);
        for (uint64_t i = 0; i < pool_b.count; i++)
            CHECK(pyshm_block_kind_of(tc_state(&pool_b, i)) == PYSHM_BLOCK_FREE);
    }
    for (uint64_t i = 0; i < pool_a.count; i++)
        CHECK(pyshm_block_kind_of(tc_state(&pool_a, i)) == PYSHM_BLOCK_FREE);
    munmap(ctl, ctl_size);
    pyshm_region_close(&r);
}

/* A fork child's copy of a held block: whoever puts first wins, the other copy is stale. */
static int put_in_child(struct fork_env *e, int id)
{
    (void)id;
    uint64_t index = e->per & 0xffffffffu, gen = e->per >> 32;
    return pyshm_pool_put(e->pool_a, index, &gen) == 0 ? 0 : 1;
}

static void test_fork_stale_put(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 32, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q), 0);
    struct fork_ctl *ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(ctl != MAP_FAILED);
    uint64_t index, gen;
    REQUIRE_EQ(pyshm_pool_get(&p, &index, &gen), 0);
    struct fork_env e = {.region = &r, .pool_a = &p, .ctl = ctl, .per = gen << 32 | index};
    pid_t pid = spawn(&e, put_in_child, 0);
    REQUIRE(pid > 0);
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uint64_t g = gen;
    CHECK_EQ(pyshm_pool_put(&p, index, &g), -PYSHM_ESTALE);
    g = gen;
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, index, &g), -PYSHM_ESTALE);
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    munmap(ctl, 4096);
    pyshm_region_close(&r);
}

/* Child: move a held block to IN_RING and claim a ring position for it, announced, then
 * die before publishing it: what a producer SIGKILLed at queue.enq.claimed leaves. */
static int die_after_enqueue_claim(struct fork_env *e, int id)
{
    (void)id;
    uint64_t index, gen;
    const struct pyshm_ring *ring = &e->ring->ring;
    if (pyshm_pool_get(e->pool_a, &index, &gen) < 0 ||
        pyshm_block_transition(&e->pool_a->states[index], PYSHM_BLOCK_HELD, gen, PYSHM_BLOCK_IN_RING) < 0)
        return 1;
    uint64_t pos = atomic_load(&ring->counters->enq_pos);
    pyshm_announce(pyshm_ring_announcer(ring), ring->id, PYSHM_ANNOUNCE_ENQ, pos, 1);
    atomic_store(&ring->counters->enq_pos, pos + 1);
    _exit(0);
}

/* Child: claim the head of the ring, announced, and die before taking its block or
 * releasing the slot: what a consumer SIGKILLed at queue.deq.claimed leaves. */
static int die_after_dequeue_claim(struct fork_env *e, int id)
{
    (void)id;
    uint64_t pos, value;
    if (pyshm_ring_claim(&e->ring->ring, 0, &pos, &value, NULL, NULL) < 0)
        return 1;
    _exit(0);
}

static void reap_ok(pid_t pid)
{
    int status;
    REQUIRE(pid > 0);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_fork_repair(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 32, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q), 0);
    struct fork_ctl *ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(ctl != MAP_FAILED);
    struct pyshm_repair_report rep;

    /* A producer dies between its claim and its publish: the ring is stuck behind it. */
    uint64_t a, ga, b, gb;
    struct fork_env e = {.region = &r, .pool_a = &p, .ring = &q, .ctl = ctl};
    reap_ok(spawn(&e, die_after_enqueue_claim, 0));
    CHECK_EQ(pyshm_pool_free_count(&p), 3);
    REQUIRE_EQ(pyshm_pool_get(&p, &b, &gb), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, b, &gb), 0);
    struct pyshm_taken_block t;
    CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), -PYSHM_EEMPTY); /* stuck at the claim */
    REQUIRE_EQ(pyshm_region_repair(&r, 1, &rep), 0);
    CHECK_EQ(rep.entries, 1);
    CHECK_EQ(rep.holes, 1);
    CHECK_EQ(rep.returned, 1); /* the block the child was enqueueing, back in the pool */
    CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0); /* the hole passed over */
    CHECK_EQ(t.index, b);
    CHECK_EQ(pyshm_pool_put(&p, t.index, &t.gen), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    /* Nothing more to do, and a second repair finds nothing. */
    REQUIRE_EQ(pyshm_region_repair(&r, 0, &rep), 0);
    CHECK_EQ(rep.entries + rep.holes + rep.released + rep.returned, 0);

    /* A consumer dies between its claim and its take: producers would find the slot full
     * on the next lap, and the block would be in no queue. */
    REQUIRE_EQ(pyshm_pool_get(&p, &a, &ga), 0);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &ga), 0);
    reap_ok(spawn(&e, die_after_dequeue_claim, 0));
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    CHECK_EQ(pyshm_pool_free_count(&p), 3);
    REQUIRE_EQ(pyshm_region_repair(&r, 1, &rep), 0);
    CHECK_EQ(rep.entries, 1);
    CHECK_EQ(rep.released, 1);
    CHECK_EQ(rep.returned, 1);
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    /* The ring goes round every slot again. */
    for (int lap = 0; lap < 8; lap++) {
        REQUIRE_EQ(pyshm_pool_get(&p, &a, &ga), 0);
        CHECK_EQ(pyshm_block_ring_enqueue(&q, &p, a, &ga), 0);
        CHECK_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
        CHECK_EQ(pyshm_pool_put(&p, t.index, &t.gen), 0);
    }
    CHECK_EQ(pyshm_pool_free_count(&p), 4);
    munmap(ctl, 4096);
    pyshm_region_close(&r);
}

const struct tc_test tc_fork_tests[] = {
    {"fork_repair_dead_producer_and_consumer", test_fork_repair, TC_FORK, NULL},
    {"fork_blocks_2_producers_2_consumers", test_fork_block_path, TC_FORK, NULL},
    {"fork_stale_put", test_fork_stale_put, TC_FORK, NULL},
};
const size_t tc_fork_test_count = sizeof(tc_fork_tests) / sizeof(tc_fork_tests[0]);
