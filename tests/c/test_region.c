/*
 * test_region.c - validating what is found in shared memory: pool and Ring headers on
 * attach (forged or mangled ones are refused), the pool table (block offsets to blocks,
 * pools that overlap a known one refused, re-walks for pools published later), hostile
 * object lists (cycles, bad links: bounded walks), and concurrent carving by threads that
 * each have their own space.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tc.h"

#define PSH ((uint64_t)sizeof(struct pyshm_pool_shared))
#define RSH ((uint64_t)sizeof(struct pyshm_block_ring_shared))

static int same_pool(const struct pyshm_pool *a, const struct pyshm_pool *b)
{
    return a->offset == b->offset && a->count == b->count && a->elt_size == b->elt_size && a->stride == b->stride &&
           a->flags == b->flags && a->data_offset == b->data_offset && a->data == b->data && a->words == b->words &&
           a->free_queue.shared == b->free_queue.shared &&
           a->free_queue.ring.slots == b->free_queue.ring.slots && a->free_queue.ring.capacity == b->free_queue.ring.capacity &&
           a->free_queue.ring.start_full == 1 && a->free_queue.id == b->free_queue.id;
}

/* Mangle one field, expect attach to refuse, restore. */
#define MANGLE_POOL(field, value)                                                                  \
    do {                                                                                           \
        __typeof__(sh->field) saved_ = sh->field;                                                  \
        sh->field = (value);                                                                       \
        struct pyshm_pool out_;                                                                    \
        int rc_ = pyshm_pool_attach(&s.region, p->offset, &out_);                                  \
        if (rc_ != -PYSHM_ECORRUPT)                                                                \
            tc_fail(__FILE__, __LINE__, "pool attach with %s = %s gave %d", #field, #value, rc_);  \
        sh->field = saved_;                                                                        \
    } while (0)

/* Rewrite a pool header consistently for `count` blocks of `elt` bytes at `off`. */
static void write_pool_geometry(struct pyshm_pool_shared *sh, uint64_t off, uint64_t count, uint64_t elt)
{
    uint64_t stride = elt < 64 ? PYSHM_ALIGN_UP(elt, 8) : PYSHM_ALIGN_UP(elt, 64), bytes = 0;
    pyshm_pool_footprint(count, elt, &bytes);
    sh->object.size = bytes;
    sh->count = count;
    sh->elt_size = elt;
    sh->stride = stride;
    sh->slots_offset = off + PSH;
    sh->states_offset = off + PSH + count * 16;
    sh->holders_offset = sh->states_offset + 8;
    sh->data_offset = PYSHM_ALIGN_UP(sh->states_offset + count * 16, 64);
}

static void test_pool_attach(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    const struct pyshm_pool *p = tc_pool(&s, 10, 100, PYSHM_MEMPOOL_F_SP_PUT, NULL);
    REQUIRE(p != NULL);
    struct pyshm_pool_shared *sh = (struct pyshm_pool_shared *)(s.region.base + p->offset);
    uint64_t bytes;
    REQUIRE_EQ(pyshm_pool_footprint(10, 100, &bytes), 0);
    struct pyshm_pool out;
    CHECK_EQ(pyshm_pool_attach(&s.region, p->offset, &out), 0);
    CHECK(same_pool(&out, p));
    CHECK_EQ(sh->object.size, bytes);

    MANGLE_POOL(object.magic, PYSHM_OBJECT_MAGIC ^ 1);
    MANGLE_POOL(object.magic, 0);
    MANGLE_POOL(object.kind, PYSHM_KIND_RING);
    MANGLE_POOL(object.kind, PYSHM_KIND_RAW);
    MANGLE_POOL(object.kind, 0);
    MANGLE_POOL(object.layout_version, PYSHM_LAYOUT_VERSION + 1);
    MANGLE_POOL(object.layout_version, 2);
    MANGLE_POOL(object.size, bytes + 64);
    MANGLE_POOL(object.size, bytes - 64);
    MANGLE_POOL(object.size, 0);
    MANGLE_POOL(count, 11);
    MANGLE_POOL(count, 9);
    MANGLE_POOL(count, 0);
    MANGLE_POOL(count, PYSHM_MAX_COUNT + 1);
    MANGLE_POOL(count, UINT64_MAX);
    MANGLE_POOL(elt_size, 0);
    MANGLE_POOL(elt_size, 129); /* another stride */
    MANGLE_POOL(elt_size, 64);
    MANGLE_POOL(elt_size, PYSHM_MAX_ELT_SIZE + 1);
    MANGLE_POOL(stride, 64);
    MANGLE_POOL(stride, 192);
    MANGLE_POOL(stride, 0);
    MANGLE_POOL(flags, 8);
    MANGLE_POOL(flags, UINT64_C(1) << 32 | PYSHM_MEMPOOL_F_SP_PUT);
    MANGLE_POOL(flags, UINT64_C(1) << 63);
    MANGLE_POOL(slots_offset, p->offset + PSH + 64);
    MANGLE_POOL(slots_offset, 0);
    MANGLE_POOL(states_offset, sh->states_offset + 8);
    MANGLE_POOL(states_offset, UINT64_MAX);
    MANGLE_POOL(holders_offset, sh->holders_offset - 8);
    MANGLE_POOL(holders_offset, sh->holders_offset + 8);
    MANGLE_POOL(data_offset, sh->data_offset + 64);
    MANGLE_POOL(data_offset, sh->data_offset - 64);
    MANGLE_POOL(data_offset, 0);

    /* Geometry consistent in every field, but larger than the region. */
    struct pyshm_pool_shared saved;
    memcpy(&saved, sh, sizeof(saved));
    write_pool_geometry(sh, p->offset, UINT64_C(1) << 20, 100);
    CHECK_EQ(pyshm_pool_attach(&s.region, p->offset, &out), -PYSHM_ECORRUPT);
    write_pool_geometry(sh, p->offset, PYSHM_MAX_COUNT, PYSHM_MAX_ELT_SIZE);
    CHECK_EQ(pyshm_pool_attach(&s.region, p->offset, &out), -PYSHM_ECORRUPT);
    /* The same, shrunk to fit, is accepted: attach checks the layout, not the history. */
    write_pool_geometry(sh, p->offset, 9, 100);
    CHECK_EQ(pyshm_pool_attach(&s.region, p->offset, &out), 0);
    CHECK_EQ(out.count, 9);
    memcpy(sh, &saved, sizeof(saved));

    /* Offsets that cannot hold a pool. */
    const uint64_t end = PYSHM_OBJECTS_OFFSET + s.region.size;
    const uint64_t bad[] = {p->offset + 1, p->offset + 64, 0, 64, PYSHM_MEMBERS_OFFSET, end, end - 64,
                            UINT64_MAX - 63, UINT64_C(1) << 63};
    for (size_t i = 0; i < TC_COUNT(bad); i++)
        if (pyshm_pool_attach(&s.region, bad[i], &out) != -PYSHM_ECORRUPT)
            tc_fail(__FILE__, __LINE__, "pool attach at %" PRIu64 " not refused", bad[i]);
    /* A handle whose region ends one cache line before the pool does. */
    struct pyshm_region shorter = s.region;
    shorter.size = p->offset + bytes - 64 - PYSHM_OBJECTS_OFFSET;
    CHECK_EQ(pyshm_pool_attach(&shorter, p->offset, &out), -PYSHM_ECORRUPT);
    shorter.size += 64;
    CHECK_EQ(pyshm_pool_attach(&shorter, p->offset, &out), 0);

    /* Intact again after all the restores. */
    CHECK_EQ(pyshm_pool_attach(&s.region, p->offset, &out), 0);
    CHECK(same_pool(&out, p));
    CHECK_EQ(out.flags, PYSHM_MEMPOOL_F_SP_PUT);
    pyshm_space_close(&s);
}

#define MANGLE_RING(field, value)                                                                  \
    do {                                                                                           \
        __typeof__(sh->field) saved_ = sh->field;                                                  \
        sh->field = (value);                                                                       \
        struct pyshm_block_ring out_;                                                              \
        int rc_ = pyshm_block_ring_attach(&s.region, q.offset, &out_);                             \
        if (rc_ != -PYSHM_ECORRUPT)                                                                \
            tc_fail(__FILE__, __LINE__, "ring attach with %s = %s gave %d", #field, #value, rc_);  \
        sh->field = saved_;                                                                        \
    } while (0)

static void test_block_ring_attach(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    const struct pyshm_pool *p = tc_pool(&s, 2, 8, 0, NULL);
    struct pyshm_block_ring q, out;
    REQUIRE(p && tc_ring(&s, 12, PYSHM_BLOCK_RING_F_SC_DEQ, NULL, &q) == 0);
    struct pyshm_block_ring_shared *sh = (struct pyshm_block_ring_shared *)(s.region.base + q.offset);
    uint64_t bytes;
    REQUIRE_EQ(pyshm_block_ring_footprint(12, &bytes), 0);
    CHECK_EQ(pyshm_block_ring_attach(&s.region, q.offset, &out), 0);
    CHECK(out.offset == q.offset && out.flags == q.flags && out.queue.ring.slots == q.queue.ring.slots &&
          out.queue.ring.capacity == 12 && out.queue.ring.start_full == 0 && out.queue.shared == q.queue.shared &&
          out.queue.id == q.offset + offsetof(struct pyshm_block_ring_shared, queue) && out.shutdown == &sh->shutdown);

    MANGLE_RING(object.magic, PYSHM_OBJECT_MAGIC + 1);
    MANGLE_RING(object.kind, PYSHM_KIND_POOL);
    MANGLE_RING(object.kind, PYSHM_KIND_RAW);
    MANGLE_RING(object.layout_version, PYSHM_LAYOUT_VERSION + 1);
    MANGLE_RING(object.size, bytes + 64);
    MANGLE_RING(object.size, bytes - 64);
    MANGLE_RING(capacity, 16); /* 4 more slots: 64 more bytes */
    MANGLE_RING(capacity, 0);
    MANGLE_RING(capacity, PYSHM_MAX_RING_CAPACITY + 1);
    MANGLE_RING(capacity, UINT64_MAX);
    MANGLE_RING(flags, 4);
    MANGLE_RING(flags, UINT64_C(1) << 40);
    MANGLE_RING(slots_offset, q.offset + RSH + 64);
    MANGLE_RING(slots_offset, q.offset);
    MANGLE_RING(slots_offset, 0);
    /* Consistent, but larger than the region. */
    struct pyshm_block_ring_shared saved;
    memcpy(&saved, sh, sizeof(saved));
    sh->capacity = UINT64_C(1) << 20;
    REQUIRE_EQ(pyshm_block_ring_footprint(sh->capacity, &sh->object.size), 0);
    CHECK_EQ(pyshm_block_ring_attach(&s.region, q.offset, &out), -PYSHM_ECORRUPT);
    memcpy(sh, &saved, sizeof(saved));
    /* A shutdown word is no part of the geometry: garbage there attaches. */
    atomic_store(&sh->shutdown, UINT64_MAX);
    CHECK_EQ(pyshm_block_ring_attach(&s.region, q.offset, &out), 0);
    CHECK_EQ(pyshm_block_ring_shutdown_state(&out), PYSHM_BLOCK_RING_SHUTDOWN_NOW);
    atomic_store(&sh->shutdown, 0);

    const uint64_t end = PYSHM_OBJECTS_OFFSET + s.region.size;
    const uint64_t bad[] = {q.offset + 8, q.offset + 64, p->offset, 0, end, end - 64, UINT64_MAX - 63};
    for (size_t i = 0; i < TC_COUNT(bad); i++)
        if (pyshm_block_ring_attach(&s.region, bad[i], &out) != -PYSHM_ECORRUPT)
            tc_fail(__FILE__, __LINE__, "ring attach at %" PRIu64 " not refused", bad[i]);
    struct pyshm_pool po;
    CHECK_EQ(pyshm_pool_attach(&s.region, q.offset, &po), -PYSHM_ECORRUPT); /* a ring is no pool */
    struct pyshm_region shorter = s.region;
    shorter.size = q.offset + bytes - 64 - PYSHM_OBJECTS_OFFSET;
    CHECK_EQ(pyshm_block_ring_attach(&shorter, q.offset, &out), -PYSHM_ECORRUPT);
    shorter.size += 64;
    CHECK_EQ(pyshm_block_ring_attach(&shorter, q.offset, &out), 0);
    CHECK_EQ(pyshm_block_ring_attach(&s.region, q.offset, &out), 0);
    CHECK_EQ(out.flags, PYSHM_BLOCK_RING_F_SC_DEQ);
    pyshm_space_close(&s);
}

/* ------------------------------------------------------------------------------------ */
/* the pool table                                                                         */

static void expect_block(struct pyshm_space *s, const struct pyshm_pool *p, uint64_t index)
{
    const struct pyshm_pool *found = NULL;
    uint64_t got = UINT64_MAX;
    int rc = pyshm_pool_table_find(&s->pools, &s->region, pyshm_pool_block_offset(p, index), &found, &got);
    if (rc != 0 || !found || found->offset != p->offset || got != index ||
        found->data != s->region.base + p->data_offset)
        tc_fail(__FILE__, __LINE__, "find(pool @%" PRIu64 " block %" PRIu64 ") gave %d", p->offset, index, rc);
}

static void expect_no_block(struct pyshm_space *s, uint64_t offset)
{
    const struct pyshm_pool *found = NULL;
    uint64_t index;
    int rc = pyshm_pool_table_find(&s->pools, &s->region, offset, &found, &index);
    if (rc != -PYSHM_ECORRUPT)
        tc_fail(__FILE__, __LINE__, "find(%" PRIu64 ") gave %d, expected ECORRUPT", offset, rc);
}

static void test_table_find(void)
{
    struct pyshm_space s;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    const struct pyshm_pool *p1 = tc_pool(&s, 5, 20, 0, NULL); /* stride 24: blocks not 64-aligned */
    struct pyshm_block_ring q;
    REQUIRE(p1 && tc_ring(&s, 4, 0, NULL, &q) == 0);
    const struct pyshm_pool *p2 = tc_pool(&s, 3, 100, 0, NULL); /* stride 128 */
    REQUIRE(p2 != NULL);
    CHECK_EQ(p1->stride, 24);
    CHECK_EQ(p2->stride, 128);
    for (uint64_t i = 0; i < 5; i++)
        expect_block(&s, p1, i);
    for (uint64_t i = 0; i < 3; i++)
        expect_block(&s, p2, i);
    for (uint64_t i = 0; i < 5; i++)
        for (uint64_t d = 1; d < 24; d += (d < 8 ? 1 : 7))
            expect_no_block(&s, pyshm_pool_block_offset(p1, i) + d);
    for (uint64_t i = 0; i < 3; i++) {
        expect_no_block(&s, pyshm_pool_block_offset(p2, i) + 8);
        expect_no_block(&s, pyshm_pool_block_offset(p2, i) + 64);
        expect_no_block(&s, pyshm_pool_block_offset(p2, i) + 127);
    }
    const uint64_t end = PYSHM_OBJECTS_OFFSET + s.region.size;
    const uint64_t bad[] = {
        0, 8, 63, 64, p1->offset, p1->offset + PSH, p1->data_offset - 24, p1->data_offset - 8, p1->data_offset - 1,
        pyshm_pool_block_offset(p1, 5), pyshm_pool_block_offset(p1, 6), q.offset, q.offset + RSH, p2->offset,
        p2->data_offset - 128, pyshm_pool_block_offset(p2, 3), pyshm_pool_block_offset(p2, 4), end - 1, end,
        s.region.map_size, UINT64_MAX, UINT64_MAX - 23, UINT64_MAX - 127, p1->data_offset + (UINT64_C(1) << 63),
    };
    for (size_t i = 0; i < TC_COUNT(bad); i++)
        expect_no_block(&s, bad[i]);
    CHECK_EQ(s.pools.count, 2);
    CHECK(pyshm_pool_table_at(&s.pools, p1->offset) == p1);
    CHECK(pyshm_pool_table_at(&s.pools, q.offset) == NULL);
    /* Adding a pool known already gives the table's copy, whatever the header says now. */
    const struct pyshm_pool *again = NULL;
    struct pyshm_pool_shared *sh = (struct pyshm_pool_shared *)(s.region.base + p1->offset);
    sh->count = 4;
    CHECK_EQ(pyshm_pool_table_add(&s.pools, &s.region, p1->offset, &again), 0);
    CHECK(again == p1 && again->count == 5);
    sh->count = 5;
    CHECK_EQ(pyshm_pool_table_add(&s.pools, &s.region, q.offset, &again), -PYSHM_ECORRUPT);
    pyshm_space_close(&s);
}

/*
 * A pool header forged inside another pool's blocks (a hostile process wrote it): it may
 * be consistent on its own, so attach accepts it, but the pool table refuses it because it
 * overlaps a pool it knows; so does a walk for new pools.
 */
static void test_table_refuses_overlap(void)
{
    struct pyshm_space s, v;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    const struct pyshm_pool *big = tc_pool(&s, 4, 4096, 0, NULL);
    struct pyshm_member *m = tc_member(&s);
    REQUIRE(big && m);
    struct pyshm_block b;
    REQUIRE(tc_get1(big, m, &b) == 0);
    uint64_t at = pyshm_pool_block_offset(big, b.index);
    struct pyshm_pool_shared *forged = (struct pyshm_pool_shared *)(s.region.base + at);
    memset(forged, 0, sizeof(*forged));
    forged->object.magic = PYSHM_OBJECT_MAGIC;
    forged->object.kind = PYSHM_KIND_POOL;
    forged->object.layout_version = PYSHM_LAYOUT_VERSION;
    write_pool_geometry(forged, at, 8, 8);
    struct pyshm_pool out;
    CHECK_EQ(pyshm_pool_attach(&s.region, at, &out), 0);
    const struct pyshm_pool *got = NULL;
    CHECK_EQ(pyshm_pool_table_add(&s.pools, &s.region, at, &got), -PYSHM_ECORRUPT);
    /* Pushed onto the object list: a fresh process's walk finds the real pool first or
     * the forgery first; either way it keeps exactly one of the two. */
    struct pyshm_region_header *h = (struct pyshm_region_header *)s.region.base;
    forged->object.next = atomic_load(&h->objects_head);
    atomic_store(&h->objects_head, at);
    REQUIRE(tc_space_attach(&v, &s) == 0);
    CHECK_EQ(pyshm_pool_table_add_new(&v.pools, &v.region), 0);
    CHECK_EQ(v.pools.count, 1);
    tc_space_close(&v);
    /* Once the process knows the real pool, the forgery stays out. */
    REQUIRE(tc_space_attach(&v, &s) == 0);
    REQUIRE(tc_pool_at(&v, big->offset) != NULL);
    CHECK_EQ(pyshm_pool_table_add_new(&v.pools, &v.region), 0);
    CHECK_EQ(v.pools.count, 1);
    expect_no_block(&v, pyshm_pool_block_offset(&out, 1));
    expect_block(&v, big, 2);
    tc_space_close(&v);
    atomic_store(&h->objects_head, forged->object.next);
    CHECK_EQ(pyshm_pool_put(big, m, &b, 1, TC_PATIENCE_NS), 0);
    pyshm_space_close(&s);
}

/*
 * Another process (its own space: table, mapping) finds pools by walking the object list,
 * including pools published after it first looked, and blocks travel both ways.
 */
static void test_rewalk_from_other_space(void)
{
    struct pyshm_space s, v;
    REQUIRE(tc_space(&s, 1 << 18) == 0);
    REQUIRE(tc_space_attach(&v, &s) == 0);
    CHECK(v.region.base != s.region.base);
    struct pyshm_member *m = tc_member(&s), *mv = tc_member(&v);
    const struct pyshm_pool *pools[9];
    REQUIRE(m && mv && (pools[0] = tc_pool(&s, 4, 16, 0, NULL)) != NULL);
    struct pyshm_block_ring q, vq;
    REQUIRE(tc_ring(&s, 16, 0, NULL, &q) == 0);
    REQUIRE_EQ(pyshm_block_ring_attach(&v.region, q.offset, &vq), 0);
    CHECK_EQ(v.pools.count, 0);
    expect_block(&v, pools[0], 3);
    CHECK_EQ(v.pools.count, 1);
    expect_no_block(&v, pyshm_pool_block_offset(pools[0], 4));
    for (int i = 1; i < 9; i++) {
        REQUIRE((pools[i] = tc_pool(&s, (uint64_t)i + 1, 8 * (uint64_t)i, 0, NULL)) != NULL);
        expect_block(&v, pools[i], (uint64_t)i);
        CHECK_EQ(v.pools.count, (size_t)i + 1);
    }
    for (int i = 0; i < 9; i++) {
        struct pyshm_block b;
        REQUIRE(tc_get1(pools[i], m, &b) == 0);
        memset(tc_bytes(&b), 0x40 + i, pools[i]->elt_size);
        REQUIRE_EQ(pyshm_block_ring_enqueue(&q, m, &b, 1), 0);
    }
    for (int i = 0; i < 9; i++) {
        struct pyshm_block t;
        REQUIRE_EQ(pyshm_block_ring_dequeue(&vq, mv, &v.pools, &v.region, 0, 1, &t), 1);
        CHECK_EQ(t.pool->offset, pools[i]->offset);
        const uint8_t *bytes = tc_bytes(&t);
        CHECK(bytes >= v.region.base && bytes < v.region.base + v.region.map_size);
        for (uint64_t k = 0; k < t.pool->elt_size; k++)
            if (bytes[k] != 0x40 + i) {
                tc_fail(__FILE__, __LINE__, "pool %d byte %" PRIu64 " is %#x", i, k, bytes[k]);
                break;
            }
        REQUIRE_EQ(pyshm_block_ring_enqueue(&vq, mv, &t, 1), 0);
    }
    for (int i = 0; i < 9; i++) {
        struct pyshm_block t;
        REQUIRE_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), 1);
        CHECK(t.pool == pools[i]);
        CHECK_EQ(pyshm_pool_put(t.pool, m, &t, 1, TC_PATIENCE_NS), 0);
    }
    /* A pool carved but never published is not found. */
    uint64_t off;
    REQUIRE_EQ(pyshm_region_carve(&s.region, 1024, PYSHM_KIND_POOL, NULL, &off), 0);
    expect_no_block(&v, off + 512);
    CHECK_EQ(v.pools.count, 9);
    tc_check_quiet(&s, &q, 1);
    tc_space_close(&v);
    pyshm_space_close(&s);
}

/* An object list a faulty process wrote: bounded walks, known pools still work. */
static int count_visit(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    (void)offset;
    (void)obj;
    ++*(uint64_t *)ctx;
    return 0;
}

static void test_hostile_object_list(void)
{
    struct pyshm_space s, v;
    REQUIRE(tc_space(&s, 1 << 16) == 0);
    const struct pyshm_pool *a = tc_pool(&s, 4, 32, 0, "a"), *b = tc_pool(&s, 4, 32, 0, "b");
    REQUIRE(a && b);
    struct pyshm_region_header *h = (struct pyshm_region_header *)s.region.base;
    struct pyshm_object_header *oa = (struct pyshm_object_header *)(s.region.base + a->offset);
    struct pyshm_object_header *ob = (struct pyshm_object_header *)(s.region.base + b->offset);
    CHECK_EQ(atomic_load(&h->objects_head), b->offset);
    CHECK(ob->next == a->offset && oa->next == 0);
    uint32_t kind;
    uint64_t off, visits;

    /* A cycle through both pools: the walk ends (bounded), both pools are found once. */
    oa->next = b->offset;
    visits = 0;
    CHECK_EQ(pyshm_region_walk(&s.region, count_visit, &visits), 0);
    CHECK(visits >= 2 && visits <= s.region.size / 64);
    CHECK_EQ(pyshm_region_find_named(&s.region, "zzz", &kind, &off), -ENOENT);
    REQUIRE(tc_space_attach(&v, &s) == 0);
    expect_no_block(&v, 12345);
    CHECK_EQ(v.pools.count, 2);
    expect_block(&v, a, 1);
    expect_block(&v, b, 2);
    tc_space_close(&v);
    /* A self-loop. */
    oa->next = 0;
    ob->next = b->offset;
    REQUIRE(tc_space_attach(&v, &s) == 0);
    expect_no_block(&v, 12345);
    CHECK_EQ(v.pools.count, 1);
    expect_no_block(&v, pyshm_pool_block_offset(a, 0)); /* cut off by the loop */
    expect_block(&v, b, 0);
    tc_space_close(&v);
    ob->next = a->offset;

    /* Heads and links that point nowhere valid. */
    const uint64_t end = PYSHM_OBJECTS_OFFSET + s.region.size;
    const uint64_t bad_links[] = {1, 63, 65, 64, PYSHM_OBJECTS_OFFSET - 64, end, end - 64, end - 32,
                                  s.region.map_size, UINT64_MAX, UINT64_MAX - 63, UINT64_C(1) << 40};
    for (size_t i = 0; i < TC_COUNT(bad_links); i++) {
        atomic_store(&h->objects_head, bad_links[i]);
        CHECK_EQ(pyshm_region_find_named(&s.region, "a", &kind, &off), -PYSHM_ECORRUPT);
        REQUIRE(tc_space_attach(&v, &s) == 0);
        expect_no_block(&v, pyshm_pool_block_offset(a, 0));
        CHECK_EQ(v.pools.count, 0);
        tc_space_close(&v);
        atomic_store(&h->objects_head, b->offset);
        ob->next = bad_links[i];
        REQUIRE(tc_space_attach(&v, &s) == 0);
        expect_no_block(&v, pyshm_pool_block_offset(a, 0));
        expect_block(&v, b, 3);
        CHECK_EQ(pyshm_region_find_named(&v.region, "b", &kind, &off), 0);
        tc_space_close(&v);
        ob->next = a->offset;
    }
    /* A head at zero bytes inside the region: an object with no magic, whose link ends
     * the list. Nothing found, nothing refused. */
    atomic_store(&h->objects_head, end - 128);
    CHECK_EQ(pyshm_region_find_named(&s.region, "a", &kind, &off), -ENOENT);
    visits = 0;
    CHECK_EQ(pyshm_region_walk(&s.region, count_visit, &visits), 0);
    CHECK_EQ(visits, 1);
    atomic_store(&h->objects_head, b->offset);
    /* A mangled pool on the list is skipped; the others are still found. */
    ob->magic ^= 0xff;
    REQUIRE(tc_space_attach(&v, &s) == 0);
    expect_no_block(&v, pyshm_pool_block_offset(b, 0));
    expect_block(&v, a, 0);
    CHECK_EQ(v.pools.count, 1);
    CHECK_EQ(pyshm_region_find_named(&v.region, "b", &kind, &off), -ENOENT);
    tc_space_close(&v);
    ob->magic ^= 0xff;
    /* The creator's own table is unaffected throughout. */
    expect_block(&s, a, 3);
    expect_block(&s, b, 3);
    pyshm_space_close(&s);
}

/* ------------------------------------------------------------------------------------ */
/* nothing reads outside the region                                                      */

/* Move a space's mapping between two PROT_NONE pages: any access past either end faults. */
static uint8_t *guard_space(struct pyshm_space *s)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), total = s->region.map_size + 2 * ps;
    uint8_t *res = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        return NULL;
    if (mmap(res + ps, s->region.map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->region.fd, 0) ==
        MAP_FAILED)
        return NULL;
    munmap(s->region.base, s->region.map_size);
    s->region.base = res + ps;
    s->members.table = pyshm_region_members(&s->region);
    return res;
}

static void unguard_space(struct pyshm_space *s, uint8_t *res)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t map_size = s->region.map_size;
    pyshm_space_close(s);
    munmap(res, ps);
    munmap(res + ps + map_size, ps);
}

/*
 * A region whose file ends exactly at a page boundary, mapped between guard pages, with
 * hostile headers and links placed right at its end: walks, attaches, lookups and
 * dequeues refuse them without reading a byte past the end (a read would fault).
 */
static void test_hostile_offsets_at_the_end(void)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t size = 2 * ps - PYSHM_OBJECTS_OFFSET % ps; /* objects end exactly at a page end */
    struct pyshm_space s;
    REQUIRE(tc_space(&s, size) == 0);
    REQUIRE_EQ(s.region.map_size, PYSHM_OBJECTS_OFFSET + size);
    uint8_t *res = guard_space(&s);
    REQUIRE(res != NULL);
    const uint64_t end = PYSHM_OBJECTS_OFFSET + size;
    struct pyshm_member *m = tc_member(&s);
    const struct pyshm_pool *p = tc_pool(&s, 2, 8, 0, NULL);
    struct pyshm_block_ring q;
    REQUIRE(m && p && tc_ring(&s, 4, 0, NULL, &q) == 0);
    struct pyshm_region_header *h = (struct pyshm_region_header *)s.region.base;
    uint64_t head = atomic_load(&h->objects_head);
    uint32_t kind;
    uint64_t off;

    /* List heads and links at the end. */
    const uint64_t heads[] = {end - 64, end - 128, end, end + 64, UINT64_MAX - 63};
    for (size_t i = 0; i < TC_COUNT(heads); i++) {
        atomic_store(&h->objects_head, heads[i]);
        int rc = pyshm_region_find_named(&s.region, "x", &kind, &off);
        CHECK(rc == -PYSHM_ECORRUPT || rc == -ENOENT);
    }
    atomic_store(&h->objects_head, head);
    /* Forged headers whose geometry would reach past the end. */
    struct pyshm_pool out;
    struct pyshm_block_ring rout;
    struct pyshm_rawbuf raw;
    for (uint64_t back = 64; back <= 512; back += 64) {
        uint64_t at = end - back;
        struct pyshm_object_header *o = (struct pyshm_object_header *)(s.region.base + at);
        if (back >= sizeof(*o)) {
            memset(o, 0, sizeof(*o));
            o->magic = PYSHM_OBJECT_MAGIC;
            o->layout_version = PYSHM_LAYOUT_VERSION;
            o->next = end - 64;
            o->size = back;
        }
        CHECK_EQ(pyshm_pool_attach(&s.region, at, &out), -PYSHM_ECORRUPT);
        CHECK_EQ(pyshm_block_ring_attach(&s.region, at, &rout), -PYSHM_ECORRUPT);
        CHECK_EQ(pyshm_rawbuf_attach(&s.region, at, &raw), -PYSHM_ECORRUPT);
        if (back >= sizeof(*o)) {
            atomic_store(&h->objects_head, at);
            CHECK_EQ(pyshm_region_find_named(&s.region, "x", &kind, &off), -PYSHM_ECORRUPT);
            CHECK_EQ(pyshm_pool_table_add_new(&s.pools, &s.region), -PYSHM_ECORRUPT);
            atomic_store(&h->objects_head, head);
            memset(o, 0, sizeof(*o));
        }
    }
    /* Block offsets at the end, queued in the Ring: dropped. */
    const uint64_t garbage[] = {end - 8, end - 1, end, end + 8, s.region.map_size};
    for (size_t i = 0; i < TC_COUNT(garbage); i++) {
        REQUIRE(tc_inject(&q.queue, garbage[i]) == 0);
        struct pyshm_block t;
        CHECK_EQ(pyshm_block_ring_dequeue(&q, m, &s.pools, &s.region, 0, 1, &t), -PYSHM_ECORRUPT);
        const struct pyshm_pool *fp;
        uint64_t index;
        CHECK_EQ(pyshm_pool_table_find(&s.pools, &s.region, garbage[i], &fp, &index), -PYSHM_ECORRUPT);
    }
    /* A pool forged to end exactly at the end is valid, and its last block is inside. */
    uint64_t fp_bytes;
    REQUIRE_EQ(pyshm_pool_footprint(1, 64, &fp_bytes), 0);
    uint64_t at = end - fp_bytes;
    struct pyshm_pool_shared *forged = (struct pyshm_pool_shared *)(s.region.base + at);
    memset(forged, 0, fp_bytes);
    forged->object.magic = PYSHM_OBJECT_MAGIC;
    forged->object.kind = PYSHM_KIND_POOL;
    forged->object.layout_version = PYSHM_LAYOUT_VERSION;
    forged->object.size = fp_bytes;
    forged->count = 1;
    forged->elt_size = forged->stride = 64;
    forged->slots_offset = at + sizeof(*forged);
    forged->states_offset = forged->slots_offset + 16;
    forged->holders_offset = forged->states_offset + 8;
    forged->data_offset = PYSHM_ALIGN_UP(forged->holders_offset + 8, 64);
    REQUIRE_EQ(forged->data_offset + 64, end);
    CHECK_EQ(pyshm_pool_attach(&s.region, at, &out), 0);
    const struct pyshm_pool *fpool = tc_pool_at(&s, at);
    struct pyshm_block b;
    if (fpool && tc_get1(fpool, m, &b) == 0) {
        memset(tc_bytes(&b), 0x77, 64); /* the last 64 bytes of the region */
        CHECK_EQ(pyshm_pool_put(fpool, m, &b, 1, TC_PATIENCE_NS), 0);
    }
    /* Carving at the end: refused with nothing written. */
    atomic_store(&h->carve_end, end - 64);
    CHECK_EQ(pyshm_pool_create(&s.region, 1, 8, 0, NULL, &off), -ENOSPC);
    CHECK_EQ(pyshm_rawbuf_create(&s.region, 1, NULL, &off), -ENOSPC);
    unguard_space(&s, res);
}

/* ------------------------------------------------------------------------------------ */
/* concurrent carving and publishing, each thread with its own space                      */

#define CARVERS 4
#define CARVES_EACH 24

struct carver {
    const struct pyshm_space *shared;
    struct pyshm_space own;
    uint64_t pools[CARVES_EACH];
    int created, id, failed;
};

static void *carve_thread(void *arg)
{
    struct carver *c = arg;
    for (int i = 0; i < CARVES_EACH; i++) {
        uint64_t count = 1 + (uint64_t)((c->id * 7 + i) % 5), elt = 8 + 8 * (uint64_t)((c->id + i) % 9), off;
        char name[32];
        snprintf(name, sizeof(name), "c%d-%d", c->id, i);
        if (i % 3 == 2 && pyshm_block_ring_create(&c->own.region, count + 1, 0, NULL, &off) != 0)
            break;
        if (i % 4 == 1 && pyshm_rawbuf_create(&c->own.region, 100, NULL, &off) != 0)
            break;
        if (pyshm_pool_create(&c->own.region, count, elt, 0, name, &c->pools[c->created]) != 0)
            break;
        /* Stamp the pool's blocks: overlapping carves would clobber each other. */
        struct pyshm_pool p;
        if (pyshm_pool_attach(&c->own.region, c->pools[c->created++], &p) != 0) {
            c->failed = 1;
            break;
        }
        memset(p.data, c->id * CARVES_EACH + i + 1, p.count * p.stride);
    }
    return NULL;
}

static void test_concurrent_carve(void)
{
    struct pyshm_space s, v;
    REQUIRE(tc_space(&s, 1 << 18) == 0);
    struct carver *cs = calloc(CARVERS, sizeof(*cs));
    REQUIRE(cs != NULL);
    pthread_t th[CARVERS];
    for (int i = 0; i < CARVERS; i++) {
        cs[i].shared = &s;
        cs[i].id = i;
        REQUIRE(tc_space_attach_view(&cs[i].own, &s) == 0);
    }
    for (int i = 0; i < CARVERS; i++)
        REQUIRE(pthread_create(&th[i], NULL, carve_thread, &cs[i]) == 0);
    for (int i = 0; i < CARVERS; i++)
        pthread_join(th[i], NULL);
    REQUIRE(tc_space_attach(&v, &s) == 0);
    size_t total = 0;
    for (int i = 0; i < CARVERS; i++) {
        CHECK_EQ(cs[i].created, CARVES_EACH);
        CHECK_EQ(cs[i].failed, 0);
        for (int j = 0; j < cs[i].created; j++) {
            const struct pyshm_pool *p = tc_pool_at(&v, cs[i].pools[j]);
            if (!p)
                continue;
            total++;
            char name[32];
            uint32_t kind;
            uint64_t off;
            snprintf(name, sizeof(name), "c%d-%d", i, j);
            CHECK_EQ(pyshm_region_find_named(&v.region, name, &kind, &off), 0);
            for (uint64_t k = 0; k < p->count; k++) {
                expect_block(&v, p, k);
                const uint8_t *bytes = p->data + k * p->stride;
                for (uint64_t x = 0; x < p->stride; x++)
                    if (bytes[x] != (uint8_t)(i * CARVES_EACH + j + 1)) {
                        tc_fail(__FILE__, __LINE__, "pool %d/%d block %" PRIu64 " overwritten", i, j, k);
                        break;
                    }
            }
            CHECK_EQ(pyshm_pool_free_count(p), p->count);
        }
    }
    struct pyshm_pool_table fresh = {0};
    CHECK_EQ(pyshm_pool_table_add_new(&fresh, &v.region), 0);
    CHECK_EQ(fresh.count, total);
    pyshm_pool_table_free(&fresh);
    tc_space_close(&v);
    for (int i = 0; i < CARVERS; i++)
        tc_space_close(&cs[i].own);
    free(cs);
    pyshm_space_close(&s);
}

const struct tc_test tc_region_tests[] = {
    {"pool_attach_refuses_mangled_headers", test_pool_attach, 0, NULL},
    {"block_ring_attach_refuses_mangled_headers", test_block_ring_attach, 0, NULL},
    {"pool_table_find_offsets", test_table_find, 0, NULL},
    {"pool_table_refuses_overlapping_forgery", test_table_refuses_overlap, 0, NULL},
    {"pool_table_rewalk_from_other_space", test_rewalk_from_other_space, 0, NULL},
    {"hostile_object_list", test_hostile_object_list, 0, NULL},
    {"hostile_offsets_at_the_guarded_end", test_hostile_offsets_at_the_end, 0, NULL},
    {"concurrent_carve_own_spaces", test_concurrent_carve, 0, NULL},
};
const size_t tc_region_test_count = TC_COUNT(tc_region_tests);
