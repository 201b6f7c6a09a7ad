/*
 * test_core.c - entry point of the C tests of src/core, and the helpers they share.
 *
 * Usage: test_core [-n MESSAGES] [--no-fork] [--strict] [--list] [NAME_SUBSTRING...]
 *
 *   -n MESSAGES   messages per stress run (default 200000, 50000 under ThreadSanitizer)
 *   --no-fork     skip the tests that fork() (run.sh passes it to the TSan build)
 *   --strict      run known-bug tests as ordinary tests
 *
 * Prints one line per test and ends with "N passed, M failed"; exits 1 on any failure.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "tc.h"

#if defined(__SANITIZE_THREAD__)
#define TC_BUILT_WITH_TSAN 1
#else
#define TC_BUILT_WITH_TSAN 0
#endif

/* A test that takes longer than this is hung (a lost wake-up, a livelock): say which one
 * and stop. This bounds a hang; it asserts nothing about speed. */
#define TC_HANG_SECONDS 100

struct tc_config tc_cfg;
atomic_long tc_failures;
static atomic_long printed_failures;
static long print_limit = 50; /* enough to diagnose; a broken stress test could print millions */
static const char *fail_label = "FAIL";
static const char *current_test = "(none)";

void tc_fail(const char *file, int line, const char *fmt, ...)
{
    atomic_fetch_add(&tc_failures, 1);
    if (atomic_fetch_add(&printed_failures, 1) >= print_limit)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "  %s %s:%d: %s\n", fail_label, file, line, msg);
    fflush(stderr);
}

void tc_yield(void) { sched_yield(); }

int tc_region(struct pyshm_region *r, uint64_t size)
{
    int rc = pyshm_region_create(r, size);
    if (rc < 0)
        fprintf(stderr, "  pyshm_region_create(%" PRIu64 ") = %d\n", size, rc);
    return rc;
}

int tc_view_open(const struct pyshm_region *src, struct pyshm_region *view)
{
    memset(view, 0, sizeof(*view));
    view->fd = -1;
    view->size = src->size;
    view->map_size = src->map_size;
    view->base = src->base;
    /* Under ThreadSanitizer keep one address: it tracks memory by address, and a second
     * mapping would hide the synchronization (and any race) from it. */
    if (src->fd >= 0 && !tc_cfg.tsan) {
        void *base = mmap(NULL, src->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, src->fd, 0);
        if (base == MAP_FAILED)
            return -1;
        view->base = base;
    }
    return 0;
}

void tc_view_close(const struct pyshm_region *src, struct pyshm_region *view)
{
    if (view->base && view->base != src->base)
        munmap(view->base, view->map_size);
    for (size_t i = 0; i < view->pool_count; i++)
        free(view->pools[i]);
    free(view->pools);
    memset(view, 0, sizeof(*view));
    view->fd = -1;
}

int tc_raw_ring_alloc(struct pyshm_ring *r, uint64_t capacity)
{
    r->capacity = capacity;
    r->counters = aligned_alloc(PYSHM_CACHE_LINE, sizeof(*r->counters));
    r->slots = calloc(capacity, sizeof(*r->slots));
    if (!r->counters || !r->slots) {
        tc_raw_ring_free(r);
        return -1;
    }
    memset(r->counters, 0, sizeof(*r->counters));
    return 0;
}

void tc_raw_ring_free(struct pyshm_ring *r)
{
    free(r->counters);
    free(r->slots);
    r->counters = NULL;
    r->slots = NULL;
}

int tc_enq(const struct pyshm_ring *r, int sp, uint64_t v)
{
    return sp ? pyshm_ring_enqueue_sp(r, v) : pyshm_ring_enqueue_mp(r, v);
}

int tc_deq(const struct pyshm_ring *r, int sc, uint64_t *v)
{
    return sc ? pyshm_ring_dequeue_sc(r, v, NULL, NULL) : pyshm_ring_dequeue_mc(r, v, NULL, NULL);
}

int tc_inject(const struct pyshm_ring *r, uint64_t value)
{
    uint64_t pos = atomic_load(&r->counters->enq_pos);
    struct pyshm_ring_slot *slot = &r->slots[pos % r->capacity];
    if (atomic_load(&slot->seq) != pyshm_ring_seq_free(pos))
        return -1;
    atomic_store(&slot->value, value);
    atomic_store(&slot->seq, pyshm_ring_seq_full(pos));
    atomic_store(&r->counters->enq_pos, pos + 1);
    return 0;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char a[] = "\nTIMEOUT: test hung: ";
    ssize_t ignored = write(2, a, sizeof(a) - 1);
    ignored = write(2, current_test, strlen(current_test));
    ignored = write(2, "\n", 1);
    (void)ignored;
    _exit(3);
}

static int selected(const char *name, int argc, char **argv, int first)
{
    if (first >= argc)
        return 1;
    for (int i = first; i < argc; i++)
        if (strstr(name, argv[i]))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    tc_cfg.tsan = TC_BUILT_WITH_TSAN;
    tc_cfg.messages = tc_cfg.tsan ? 50000 : 200000;
    tc_cfg.fork_tests = 1;
    int list = 0, first = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            tc_cfg.messages = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--no-fork") == 0) {
            tc_cfg.fork_tests = 0;
        } else if (strcmp(argv[i], "--strict") == 0) {
            tc_cfg.strict = 1;
        } else if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [-n MESSAGES] [--no-fork] [--strict] [--list] [NAME...]\n", argv[0]);
            return 2;
        } else {
            first = i;
            break;
        }
    }
    if (tc_cfg.messages < 100)
        tc_cfg.messages = 100;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);

    const struct {
        const struct tc_test *tests;
        size_t count;
    } groups[] = {
        {tc_edge_tests, tc_edge_test_count},
        {tc_region_tests, tc_region_test_count},
        {tc_burst_tests, tc_burst_test_count},
        {tc_stress_tests, tc_stress_test_count},
        {tc_fork_tests, tc_fork_test_count},
    };
    printf("pyshm core tests: %" PRIu64 " messages per stress run%s%s\n", tc_cfg.messages,
           tc_cfg.tsan ? ", ThreadSanitizer build" : "", tc_cfg.fork_tests ? "" : ", fork tests skipped");
    int passed = 0, failed = 0, xfailed = 0, skipped = 0;
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        for (size_t i = 0; i < groups[g].count; i++) {
            const struct tc_test *t = &groups[g].tests[i];
            if (!selected(t->name, argc, argv, first))
                continue;
            if (list) {
                printf("%s\n", t->name);
                continue;
            }
            if ((t->flags & TC_FORK) && !tc_cfg.fork_tests) {
                printf("SKIP  %s (fork tests disabled)\n", t->name);
                skipped++;
                continue;
            }
            int xfail = (t->flags & TC_XFAIL) && !tc_cfg.strict;
            current_test = t->name;
            atomic_store(&tc_failures, 0);
            atomic_store(&printed_failures, 0);
            print_limit = xfail ? 2 : 50; /* a known bug: show what it looks like, briefly */
            fail_label = xfail ? "known bug:" : "FAIL";
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            alarm(TC_HANG_SECONDS);
            t->fn();
            alarm(0);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
            long f = atomic_load(&tc_failures);
            if (xfail && f > 0) {
                printf("XFAIL %s (%ld checks failed; known core bug: %s)\n", t->name, f, t->note);
                xfailed++;
            } else if (xfail) {
                printf("FAIL  %s (XPASS: marked as a known core bug but passes now; drop TC_XFAIL)\n", t->name);
                failed++;
            } else if (f > 0) {
                printf("FAIL  %s (%ld checks failed)\n", t->name, f);
                failed++;
            } else {
                printf("ok    %s (%.2f s)\n", t->name, secs);
                passed++;
            }
        }
    }
    if (list)
        return 0;
    if (xfailed || skipped)
        printf("%d known core bugs (XFAIL), %d skipped\n", xfailed, skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
