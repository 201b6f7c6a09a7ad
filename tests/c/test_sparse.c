/*
 * test_sparse.c - zero-filled memory is every structure's initial state (layout.h), so
 * creating even huge objects writes their headers and nothing else: a Ring of 2^26
 * entries (1 GiB of slots) and a Mempool of 2^25 blocks of 8 bytes (1.25 GiB of slots,
 * states, holders and data) in a sparse memfd region leave the mapping's resident pages
 * and the file's allocated blocks essentially unchanged, and so do attaching them from
 * another process, looking them up, and using a few blocks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tc.h"

#define RING_CAP (UINT64_C(1) << 26)
#define POOL_COUNT (UINT64_C(1) << 25)

static uint64_t page_size(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

/* Pages of [base, base + len) resident in memory (for a shared file mapping: in the
 * file's page cache), by mincore(). */
static uint64_t resident_pages(const struct pyshm_space *s)
{
    uint64_t ps = page_size(), n = (s->region.map_size + ps - 1) / ps;
    unsigned char *vec = malloc(n);
    if (!vec || mincore(s->region.base, s->region.map_size, vec) != 0) {
        tc_fail(__FILE__, __LINE__, "mincore: %s", strerror(errno));
        free(vec);
        return UINT64_MAX / 2;
    }
    uint64_t resident = 0;
    for (uint64_t i = 0; i < n; i++)
        resident += vec[i] & 1;
    free(vec);
    return resident;
}

/* Bytes the region file has allocated. */
static uint64_t file_bytes(const struct pyshm_space *s)
{
    struct stat st;
    if (fstat(s->region.fd, &st) != 0)
        return UINT64_MAX / 2;
    return (uint64_t)st.st_blocks * 512;
}

/* The Rss of the mapping at base, from /proc/self/smaps, in kB (UINT64_MAX if not found). */
static uint64_t smaps_rss_kb(const void *base)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return UINT64_MAX;
    char line[512];
    int in = 0;
    uint64_t rss = UINT64_MAX;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') == line + strspn(line, "0123456789abcdef")) {
            in = lo == (unsigned long)(uintptr_t)base;
            continue;
        }
        unsigned long kb;
        if (in && sscanf(line, "Rss: %lu kB", &kb) == 1) {
            rss = kb;
            break;
        }
    }
    fclose(f);
    return rss;
}

struct footprint {
    uint64_t pages, bytes, rss_kb;
};

static struct footprint measure(const struct pyshm_space *s)
{
    struct footprint f = {resident_pages(s), file_bytes(s), smaps_rss_kb(s->region.base)};
    return f;
}

/* At most `pages` more pages resident, allocated, and in the mapping's Rss. */
static void expect_growth(const char *what, const struct footprint *before, const struct footprint *after,
                          uint64_t pages)
{
    uint64_t ps = page_size();
    if (getenv("TC_VERBOSE"))
        printf("      %-34s resident %" PRIu64 " pages, file %" PRIu64 " kB, rss %" PRIu64 " kB\n", what,
               after->pages, after->bytes / 1024, after->rss_kb);
    if (after->pages > before->pages + pages)
        tc_fail(__FILE__, __LINE__, "%s: %" PRIu64 " pages resident, %" PRIu64 " before", what, after->pages,
                before->pages);
    if (after->bytes > before->bytes + pages * ps)
        tc_fail(__FILE__, __LINE__, "%s: file has %" PRIu64 " bytes allocated, %" PRIu64 " before", what, after->bytes,
                before->bytes);
    if (before->rss_kb != UINT64_MAX && after->rss_kb != UINT64_MAX && after->rss_kb > before->rss_kb + pages * ps / 1024)
        tc_fail(__FILE__, __LINE__, "%s: Rss %" PRIu64 " kB, %" PRIu64 " kB before", what, after->rss_kb, before->rss_kb);
}

static void test_sparse_creation(void)
{
    uint64_t ring_bytes, pool_bytes;
    REQUIRE_EQ(pyshm_block_ring_footprint(RING_CAP, &ring_bytes), 0);
    REQUIRE_EQ(pyshm_pool_footprint(POOL_COUNT, 8, &pool_bytes), 0);
    CHECK(ring_bytes >= RING_CAP * 16);
    CHECK(pool_bytes >= POOL_COUNT * (16 + 8 + 8 + 8));
    struct pyshm_space s, v;
    REQUIRE(tc_space(&s, ring_bytes + pool_bytes + (1 << 16)) == 0);
    struct footprint f0 = measure(&s);
    CHECK(f0.pages <= 2);
    if (f0.rss_kb == UINT64_MAX)
        printf("      (no smaps entry found for the mapping: Rss not checked)\n");

    uint64_t ring_off, pool_off;
    REQUIRE_EQ(pyshm_block_ring_create(&s.region, RING_CAP, 0, "big-ring", &ring_off), 0);
    struct footprint f1 = measure(&s);
    expect_growth("Ring(2^26) created", &f0, &f1, 2);
    REQUIRE_EQ(pyshm_pool_create(&s.region, POOL_COUNT, 8, 0, "big-pool", &pool_off), 0);
    struct footprint f2 = measure(&s);
    expect_growth("Mempool(2^25, 8) created", &f1, &f2, 2);

    /* Attached, looked up, counted: headers and counters only. */
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_block_ring_attach(&s.region, ring_off, &q), 0);
    const struct pyshm_pool *p = tc_pool_at(&s, pool_off);
    REQUIRE(p != NULL);
    CHECK_EQ(pyshm_block_ring_count(&q), 0);
    CHECK_EQ(pyshm_pool_free_count(p), POOL_COUNT);
    CHECK_EQ(pyshm_pool_touched(p), 0);
    struct footprint f3 = measure(&s);
    expect_growth("attached and counted", &f2, &f3, 1);

    /* Another process: its own mapping, finds both by name, walks for pools. */
    REQUIRE(tc_space_attach(&v, &s) == 0);
    uint32_t kind;
    uint64_t off;
    CHECK_EQ(pyshm_region_find_named(&v.region, "big-pool", &kind, &off), 0);
    CHECK_EQ(pyshm_region_find_named(&v.region, "big-ring", &kind, &off), 0);
    CHECK_EQ(pyshm_pool_table_add_new(&v.pools, &v.region), 0);
    CHECK_EQ(v.pools.count, 1);
    struct footprint f4 = measure(&s);
    expect_growth("attached by another space", &f3, &f4, 1);

    /* Joining and moving a few blocks touches a few pages: slots, states, holders and
     * data of those blocks, the member entries, the Ring's first slots. */
    struct pyshm_member *m = tc_member(&s), *mv = tc_member(&v);
    REQUIRE(m && mv);
    struct pyshm_block b[4], t[4];
    CHECK_EQ(pyshm_pool_get(p, m, b, 4), 4);
    CHECK_EQ(pyshm_block_ring_enqueue(&q, m, b, 4), 0);
    struct pyshm_block_ring vq;
    REQUIRE_EQ(pyshm_block_ring_attach(&v.region, ring_off, &vq), 0);
    CHECK_EQ(pyshm_block_ring_dequeue(&vq, mv, &v.pools, &v.region, 0, 4, t), 4);
    CHECK_EQ(pyshm_pool_put(t[0].pool, mv, t, 4, TC_PATIENCE_NS), 0);
    CHECK_EQ(pyshm_pool_touched(p), 4);
    struct footprint f5 = measure(&s);
    expect_growth("4 blocks through the Ring", &f4, &f5, 12);

    /* A member dies holding a block: the repair scans only the blocks ever handed out. */
    struct pyshm_space d;
    REQUIRE(tc_space_attach(&d, &s) == 0);
    struct pyshm_member *md = tc_member(&d);
    const struct pyshm_pool *dp = tc_pool_at(&d, pool_off);
    REQUIRE(md && dp && tc_get1(dp, md, &b[0]) == 0);
    tc_space_die(&d);
    struct pyshm_repair_report rep;
    CHECK_EQ(pyshm_repair(&s, 1, &rep), 0);
    CHECK_EQ(rep.entries, 1);
    CHECK_EQ(rep.returned, 1);
    struct footprint f6 = measure(&s);
    expect_growth("a repair", &f5, &f6, 8);
    tc_space_close(&v);
    pyshm_space_close(&s);
}

/* MEMPOOL_F_RETURN_PAGES: a block put back gives its whole pages back (the file shrinks
 * and the block reads as zeros when handed out again); a put the pool refuses (a block
 * the caller does not hold) leaves the holder's data alone. */
static void test_return_pages(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 64 << 20) == 0);
    struct pyshm_member *m = tc_member(&s);
    const uint64_t elt = 1 << 20;
    const struct pyshm_pool *p = tc_pool(&s, 2, elt, PYSHM_MEMPOOL_F_RETURN_PAGES, NULL);
    REQUIRE(m && p);
    struct pyshm_block b;
    REQUIRE(tc_get1(p, m, &b) == 0);
    uint8_t *data = p->data + b.index * p->stride;
    struct footprint before = measure(&s);
    memset(data, 0xab, elt);
    struct footprint written = measure(&s);
    CHECK(written.bytes >= before.bytes + elt - 2 * page_size());
    /* A put of a stale generation is refused and wipes nothing. */
    struct pyshm_block stale = b;
    stale.gen = b.gen + 1;
    CHECK(pyshm_pool_put(p, m, &stale, 1, 0) < 0);
    CHECK_EQ(data[elt / 2], 0xab);
    REQUIRE(pyshm_pool_put(p, m, &b, 1, 0) == 0);
    struct footprint after = measure(&s);
    expect_growth("a returned block", &before, &after, 2);
    /* The other block first (FIFO), then this one: zeros. */
    struct pyshm_block other, again;
    REQUIRE(tc_get1(p, m, &other) == 0 && tc_get1(p, m, &again) == 0);
    CHECK_EQ(again.index, b.index);
    CHECK_EQ(data[elt / 2], 0);
    pyshm_space_close(&s);
}

const struct tc_test tc_sparse_tests[] = {
    {"sparse_huge_ring_and_pool_touch_no_pages", test_sparse_creation, 0, NULL},
    {"return_pages_on_put", test_return_pages, 0, NULL},
};
const size_t tc_sparse_test_count = TC_COUNT(tc_sparse_tests);
