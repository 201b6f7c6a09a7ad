/*
 * test_fork.c - the block path across fork()ed processes: producers and consumers are
 * child processes, each with its own space attached through a dup of the region's fd (one
 * of them using the handle it inherited instead), with
 * the seen table in MAP_SHARED memory. In some runs one consumer or one producer is
 * SIGKILLed mid-run, at whatever step it happens to be; the parent reaps it and repairs
 * while the others keep going (and they themselves try repairs when they are stuck), and
 * at the end nothing is delivered twice, nothing sent is lost but what a killed consumer
 * held, and every block is back in its pool exactly once. See stress.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

enum { KILL_NONE, KILL_CONSUMER, KILL_PRODUCER };

/* Fork one actor; it ends with _exit: 0 if it recorded no failure. */
static pid_t spawn_actor(const struct stress_env *e, struct pyshm_space *creator, int consumer, int id, int inherited)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    alarm(100);
    atomic_store(&tc_failures, 0);
    struct pyshm_space own, *space = creator; /* the child's copy of the handle */
    if (!inherited) {
        if (tc_space_attach(&own, creator) < 0)
            _exit(70);
        space = &own;
    }
    int rc = consumer ? stress_consumer(e, space, id) : stress_producer(e, space, id);
    pyshm_space_close(space);
    _exit(rc != 0 || atomic_load(&tc_failures) != 0 ? 1 : 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Repair until nobody dead is left (others may be repairing too: EBUSY, or a live
 * actor's claim in the way: pending). */
static void repair_all(struct pyshm_space *s)
{
    for (int attempt = 0; attempt < 5000; attempt++) {
        struct pyshm_repair_report rep;
        int rc = pyshm_repair(s, 1, &rep);
        if (rc != 0 && rc != -EBUSY) {
            tc_fail(__FILE__, __LINE__, "pyshm_repair = %d", rc);
            return;
        }
        if (rc == 0 && rep.pending == 0 && !pyshm_repair_needed(s))
            return;
        sleep_ms(1);
    }
    tc_fail(__FILE__, __LINE__, "a dead member could not be repaired");
}

static void reap_actor(pid_t pid, int victim)
{
    int status;
    if (tc_reap(pid, &status) < 0)
        return;
    if (victim && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        tc_fail(__FILE__, __LINE__, "%s %d ended with %s %d", victim ? "victim" : "actor", (int)pid,
                WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* kill_at: the victim dies once this fraction (1/kill_at) of the messages went by. */
static void fork_stress_at(struct stress_cfg cfg, int kill_what, int kill_at)
{
    cfg.per = tc_cfg.messages / 2 / (uint64_t)cfg.producers;
    struct pyshm_space creator;
    REQUIRE(tc_space(&creator, 1 << 20) == 0);
    size_t ctl_size = stress_ctl_size(&cfg);
    void *mem = mmap(NULL, ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
    struct stress_ctl *ctl = stress_ctl_init(mem, &cfg);
    struct stress_env e;
    REQUIRE(stress_setup(&e, &creator, &cfg, ctl) == 0);
    pid_t prod[STRESS_MAX_ACTORS], cons[STRESS_MAX_ACTORS];
    for (int i = 0; i < cfg.consumers; i++)
        cons[i] = spawn_actor(&e, &creator, 1, i, i == 1);
    for (int i = 0; i < cfg.producers; i++)
        prod[i] = spawn_actor(&e, &creator, 0, i, i == 1);
    for (int i = 0; i < cfg.consumers; i++)
        REQUIRE(cons[i] > 0);
    for (int i = 0; i < cfg.producers; i++)
        REQUIRE(prod[i] > 0);

    /* The victim (consumer 0 or producer 0) dies once a share of the messages went by: a
     * moment that lands at a different step every run. */
    pid_t victim = kill_what == KILL_CONSUMER ? cons[0] : kill_what == KILL_PRODUCER ? prod[0] : 0;
    if (victim) {
        uint64_t total = (uint64_t)cfg.producers * cfg.per;
        for (int waited = 0; waited < 30000 && !atomic_load(&ctl->abort); waited++) {
            uint64_t handled = 0;
            for (int i = 0; i < cfg.consumers; i++)
                handled += atomic_load(&ctl->handled[i]);
            if (handled >= total / (uint64_t)kill_at)
                break;
            sleep_ms(1);
        }
        kill(victim, SIGKILL);
        reap_actor(victim, 1);
        repair_all(&creator);
    }
    for (int i = 0; i < cfg.producers; i++)
        if (prod[i] != victim)
            reap_actor(prod[i], 0);
    if (kill_what == KILL_PRODUCER)
        repair_all(&creator); /* anything the dead producer claimed is published or a hole by now */
    atomic_store_explicit(&ctl->producers_done, 1, memory_order_release);
    for (int i = 0; i < cfg.consumers; i++)
        if (cons[i] != victim)
            reap_actor(cons[i], 0);
    repair_all(&creator);
    stress_check(&e, &creator, kill_what == KILL_CONSUMER ? 8 : 0, kill_what == KILL_PRODUCER);
    if (cfg.late_pool)
        CHECK(atomic_load(&ctl->late_pool_off) != 0); /* found by the parent's walk too */
    munmap(mem, ctl_size);
    pyshm_space_close(&creator);
}

static void fork_stress(struct stress_cfg cfg, int kill_what)
{
    if (kill_what == KILL_NONE) {
        fork_stress_at(cfg, kill_what, 1);
        return;
    }
    /* Several runs, the victim killed at several moments (each a different, unknowable
     * step of whatever it was doing). */
    static const int at[] = {16, 7, 4, 3, 2};
    for (size_t i = 0; i < TC_COUNT(at) && atomic_load(&tc_failures) == 0; i++)
        fork_stress_at(cfg, kill_what, at[i]);
}

/* Producer 1 creates the second pool after the others started: consumers and the parent
 * find it by walking the object list. */
static void test_fork_2x2(void)
{
    fork_stress((struct stress_cfg){.producers = 2, .consumers = 2, .npools = 2, .count = {16, 8}, .elt = {64, 120},
                                    .capacity = 8, .ring_start = UINT64_MAX - 1000, .late_pool = 1},
                KILL_NONE);
}

static void test_fork_bursts(void)
{
    fork_stress((struct stress_cfg){.producers = 2, .consumers = 2, .npools = 2, .count = {16, 16}, .elt = {40, 200},
                                    .capacity = 16, .free_queue_near_wrap = 1, .burst = 1},
                KILL_NONE);
}

static void test_fork_consumer_killed(void)
{
    fork_stress((struct stress_cfg){.producers = 2, .consumers = 3, .npools = 2, .count = {16, 16}, .elt = {40, 200},
                                    .capacity = 8, .burst = 1},
                KILL_CONSUMER);
}

static void test_fork_producer_killed(void)
{
    fork_stress((struct stress_cfg){.producers = 3, .consumers = 2, .npools = 1, .count = {16}, .elt = {64},
                                    .capacity = 8, .burst = 1, .free_queue_near_wrap = 1},
                KILL_PRODUCER);
}

/* A fork child's copy of its parent's block: the child is another member, so it can
 * neither put it nor pass it on; the parent still can. */
static void test_fork_parent_block(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 4, 32, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct pyshm_block b;
    REQUIRE(tc_get1(p, m, &b) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int rc = 0;
        struct pyshm_member *cm = pyshm_space_member(&s, &rc);
        int bad = !cm || pyshm_pool_put(p, cm, &b, 1, TC_PATIENCE_NS) != -PYSHM_ENOTYOURS ||
                  pyshm_block_ring_enqueue(&q, cm, &b, 1) != -PYSHM_ENOTYOURS;
        pyshm_space_close(&s);
        _exit(bad);
    }
    CHECK(tc_reap_ok(pid) == 0);
    CHECK_EQ(pyshm_pool_put(p, m, &b, 1, TC_PATIENCE_NS), 0);
    tc_check_quiet(&s, &q, 1);
    CHECK_EQ(tc_other_members(&s), 0);
    pyshm_space_close(&s);
}

const struct tc_test tc_fork_tests[] = {
    {"fork_parent_block_not_the_childs", test_fork_parent_block, TC_FORK, NULL},
    {"fork_stress_2x2_late_pool", test_fork_2x2, TC_FORK, NULL},
    {"fork_stress_bursts_2x2", test_fork_bursts, TC_FORK, NULL},
    {"fork_stress_consumer_killed_midway", test_fork_consumer_killed, TC_FORK, NULL},
    {"fork_stress_producer_killed_midway", test_fork_producer_killed, TC_FORK, NULL},
};
const size_t tc_fork_test_count = TC_COUNT(tc_fork_tests);
