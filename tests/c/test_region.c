/*
 * test_region.c - validating objects found in shared memory: attach of pools and rings,
 * region_find_block, the re-walk of the object list from another process's handle, and
 * concurrent carving.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc.h"

#define PSH ((uint64_t)sizeof(struct pyshm_pool_shared))
#define RSH ((uint64_t)sizeof(struct pyshm_ring_shared))

static int same_pool(const struct pyshm_pool *a, const struct pyshm_pool *b)
{
    return a->offset == b->offset && a->count == b->count && a->elt_size == b->elt_size &&
           a->stride == b->stride && a->flags == b->flags && a->data_offset == b->data_offset &&
           a->data == b->data && a->states == b->states && a->free_queue.counters == b->free_queue.counters &&
           a->free_queue.slots == b->free_queue.slots && a->free_queue.capacity == b->free_queue.capacity;
}

/* Mangle one 64- or 32-bit field, expect attach to refuse, restore. */
#define MANGLE_POOL(field, value)                                                                  \
    do {                                                                                           \
        __typeof__(sh->field) saved_ = sh->field;                                                  \
        sh->field = (value);                                                                       \
        struct pyshm_pool out_;                                                                    \
        int rc_ = pyshm_pool_attach(&r, p.offset, &out_);                                          \
        if (rc_ != -PYSHM_ECORRUPT)                                                                \
            tc_fail(__FILE__, __LINE__, "pool attach with %s = %s gave %d", #field, #value, rc_);  \
        sh->field = saved_;                                                                        \
    } while (0)

static void test_pool_attach(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p, out;
    REQUIRE_EQ(pyshm_pool_create(&r, 10, 100, PYSHM_MEMPOOL_F_SP_PUT, NULL, &p), 0);
    struct pyshm_pool_shared *sh = (struct pyshm_pool_shared *)(r.base + p.offset);
    uint64_t bytes;
    REQUIRE_EQ(pyshm_pool_footprint(10, 100, &bytes), 0);

    CHECK_EQ(pyshm_pool_attach(&r, p.offset, &out), 0);
    CHECK(same_pool(&out, &p));

    MANGLE_POOL(object.magic, PYSHM_OBJECT_MAGIC ^ 1);
    MANGLE_POOL(object.magic, 0);
    MANGLE_POOL(object.kind, PYSHM_KIND_RING);
    MANGLE_POOL(object.kind, 0);
    MANGLE_POOL(object.layout_version, PYSHM_LAYOUT_VERSION + 1);
    MANGLE_POOL(object.layout_version, 0);
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
    MANGLE_POOL(flags, 4);
    MANGLE_POOL(slots_offset, p.offset + PSH + 64);
    MANGLE_POOL(slots_offset, 0);
    MANGLE_POOL(states_offset, sh->states_offset + 8);
    MANGLE_POOL(states_offset, UINT64_MAX);
    MANGLE_POOL(data_offset, sh->data_offset + 64);
    MANGLE_POOL(data_offset, sh->data_offset - 64);
    MANGLE_POOL(data_offset, 0);

    /* Geometry consistent in every field, but larger than the region. */
    {
        struct pyshm_pool_shared saved = *sh;
        uint64_t count = UINT64_C(1) << 20, big;
        REQUIRE_EQ(pyshm_pool_footprint(count, 100, &big), 0);
        sh->count = count;
        sh->object.size = big;
        sh->slots_offset = p.offset + PSH;
        sh->states_offset = p.offset + PSH + count * 16;
        sh->holders_offset = sh->states_offset + count * 8;
        sh->data_offset = PYSHM_ALIGN_UP(sh->holders_offset + count * 8, 64);
        CHECK_EQ(pyshm_pool_attach(&r, p.offset, &out), -PYSHM_ECORRUPT);
        /* The same, shrunk to fit, is accepted: attach checks layout, not history. */
        count = 9;
        REQUIRE_EQ(pyshm_pool_footprint(count, 100, &big), 0);
        sh->count = count;
        sh->object.size = big;
        sh->states_offset = p.offset + PSH + count * 16;
        sh->holders_offset = sh->states_offset + count * 8;
        sh->data_offset = PYSHM_ALIGN_UP(sh->holders_offset + count * 8, 64);
        CHECK_EQ(pyshm_pool_attach(&r, p.offset, &out), 0);
        CHECK_EQ(out.count, 9);
        *sh = saved;
    }

    /* Offsets that cannot hold a pool. */
    CHECK_EQ(pyshm_pool_attach(&r, p.offset + 1, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_attach(&r, p.offset + 64, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_attach(&r, 0, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_attach(&r, r.size, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_attach(&r, r.size - 64, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_attach(&r, UINT64_MAX - 63, &out), -PYSHM_ECORRUPT);
    /* A handle whose region ends one cache line before the pool does. */
    struct pyshm_region shorter = r;
    shorter.size = p.offset + bytes - 64;
    CHECK_EQ(pyshm_pool_attach(&shorter, p.offset, &out), -PYSHM_ECORRUPT);
    shorter.size = p.offset + bytes;
    CHECK_EQ(pyshm_pool_attach(&shorter, p.offset, &out), 0);

    /* Intact again after all the restores. */
    CHECK_EQ(pyshm_pool_attach(&r, p.offset, &out), 0);
    CHECK(same_pool(&out, &p));
    CHECK_EQ(out.flags, PYSHM_MEMPOOL_F_SP_PUT);
    pyshm_region_close(&r);
}

#define MANGLE_RING(field, value)                                                                  \
    do {                                                                                           \
        __typeof__(sh->field) saved_ = sh->field;                                                  \
        sh->field = (value);                                                                       \
        struct pyshm_block_ring out_;                                                              \
        int rc_ = pyshm_block_ring_attach(&r, q.offset, &out_);                                    \
        if (rc_ != -PYSHM_ECORRUPT)                                                                \
            tc_fail(__FILE__, __LINE__, "ring attach with %s = %s gave %d", #field, #value, rc_);  \
        sh->field = saved_;                                                                        \
    } while (0)

static void test_block_ring_attach(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q, out;
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 8, 0, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 12, PYSHM_RING_F_SC_DEQ, NULL, &q), 0);
    struct pyshm_ring_shared *sh = (struct pyshm_ring_shared *)(r.base + q.offset);
    uint64_t bytes;
    REQUIRE_EQ(pyshm_block_ring_footprint(12, &bytes), 0);

    CHECK_EQ(pyshm_block_ring_attach(&r, q.offset, &out), 0);
    CHECK(out.offset == q.offset && out.flags == q.flags && out.ring.counters == q.ring.counters &&
          out.ring.slots == q.ring.slots && out.ring.capacity == 12);

    MANGLE_RING(object.magic, PYSHM_OBJECT_MAGIC + 1);
    MANGLE_RING(object.kind, PYSHM_KIND_POOL);
    MANGLE_RING(object.kind, 3);
    MANGLE_RING(object.layout_version, PYSHM_LAYOUT_VERSION + 1);
    MANGLE_RING(object.size, bytes + 64);
    MANGLE_RING(object.size, bytes - 64);
    MANGLE_RING(capacity, 16); /* 4 more slots: 64 more bytes */
    MANGLE_RING(capacity, 0);
    MANGLE_RING(capacity, PYSHM_MAX_RING_CAPACITY + 1);
    MANGLE_RING(capacity, UINT64_MAX);
    MANGLE_RING(flags, 4);
    MANGLE_RING(slots_offset, q.offset + RSH + 64);
    MANGLE_RING(slots_offset, q.offset);
    MANGLE_RING(slots_offset, 0);
    {
        struct pyshm_ring_shared saved = *sh;
        uint64_t cap = UINT64_C(1) << 20, big;
        REQUIRE_EQ(pyshm_block_ring_footprint(cap, &big), 0);
        sh->capacity = cap;
        sh->object.size = big;
        CHECK_EQ(pyshm_block_ring_attach(&r, q.offset, &out), -PYSHM_ECORRUPT);
        *sh = saved;
    }
    CHECK_EQ(pyshm_block_ring_attach(&r, q.offset + 8, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_block_ring_attach(&r, q.offset + 64, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_block_ring_attach(&r, p.offset, &out), -PYSHM_ECORRUPT); /* a pool */
    CHECK_EQ(pyshm_block_ring_attach(&r, 0, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_block_ring_attach(&r, r.size, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_block_ring_attach(&r, UINT64_MAX - 63, &out), -PYSHM_ECORRUPT);
    CHECK_EQ(pyshm_pool_attach(&r, q.offset, &(struct pyshm_pool){0}), -PYSHM_ECORRUPT); /* a ring */
    struct pyshm_region shorter = r;
    shorter.size = q.offset + bytes - 64;
    CHECK_EQ(pyshm_block_ring_attach(&shorter, q.offset, &out), -PYSHM_ECORRUPT);
    shorter.size = q.offset + bytes;
    CHECK_EQ(pyshm_block_ring_attach(&shorter, q.offset, &out), 0);

    CHECK_EQ(pyshm_block_ring_attach(&r, q.offset, &out), 0);
    CHECK_EQ(out.flags, PYSHM_RING_F_SC_DEQ);
    pyshm_region_close(&r);
}

/* Flag bits above bit 31 of the shared 64-bit flags word are unknown bits too. */
static void test_attach_high_flag_bits(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 2, 8, PYSHM_MEMPOOL_F_SP_PUT, NULL, &p), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 2, 0, NULL, &q), 0);
    {
        struct pyshm_pool_shared *sh = (struct pyshm_pool_shared *)(r.base + p.offset);
        MANGLE_POOL(flags, UINT64_C(1) << 32 | PYSHM_MEMPOOL_F_SP_PUT);
        MANGLE_POOL(flags, UINT64_C(1) << 63);
    }
    {
        struct pyshm_ring_shared *sh = (struct pyshm_ring_shared *)(r.base + q.offset);
        MANGLE_RING(flags, UINT64_C(1) << 40);
        MANGLE_RING(flags, UINT64_C(1) << 32 | PYSHM_RING_F_SC_DEQ);
    }
    pyshm_region_close(&r);
}

static void expect_block(struct pyshm_region *r, const struct pyshm_pool *p, uint64_t index)
{
    const struct pyshm_pool *found = NULL;
    uint64_t got = UINT64_MAX;
    int rc = pyshm_region_find_block(r, pyshm_pool_block_offset(p, index), &found, &got);
    if (rc != 0 || !found || found->offset != p->offset || got != index)
        tc_fail(__FILE__, __LINE__, "find_block(pool @%" PRIu64 " block %" PRIu64 ") gave %d", p->offset, index, rc);
}

static void expect_no_block(struct pyshm_region *r, uint64_t offset)
{
    const struct pyshm_pool *found = NULL;
    uint64_t index;
    int rc = pyshm_region_find_block(r, offset, &found, &index);
    if (rc != -PYSHM_ECORRUPT)
        tc_fail(__FILE__, __LINE__, "find_block(%" PRIu64 ") gave %d, expected ECORRUPT", offset, rc);
}

static void test_find_block(void)
{
    struct pyshm_region r;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool p1, p2;
    struct pyshm_block_ring q;
    REQUIRE_EQ(pyshm_pool_create(&r, 5, 20, 0, NULL, &p1), 0); /* stride 24: blocks not 64-aligned */
    REQUIRE_EQ(pyshm_block_ring_create(&r, 4, 0, NULL, &q), 0);
    REQUIRE_EQ(pyshm_pool_create(&r, 3, 100, 0, NULL, &p2), 0); /* stride 128 */
    CHECK_EQ(p1.stride, 24);
    CHECK_EQ(p2.stride, 128);
    for (uint64_t i = 0; i < 5; i++)
        expect_block(&r, &p1, i);
    for (uint64_t i = 0; i < 3; i++)
        expect_block(&r, &p2, i);
    for (uint64_t i = 0; i < 5; i++)
        for (uint64_t d = 1; d < 24; d += (d < 8 ? 1 : 7))
            expect_no_block(&r, pyshm_pool_block_offset(&p1, i) + d);
    for (uint64_t i = 0; i < 3; i++) {
        expect_no_block(&r, pyshm_pool_block_offset(&p2, i) + 8);
        expect_no_block(&r, pyshm_pool_block_offset(&p2, i) + 64);
        expect_no_block(&r, pyshm_pool_block_offset(&p2, i) + 127);
    }
    const uint64_t bad[] = {
        0, 8, 63, 64, p1.offset, p1.offset + PSH, p1.data_offset - 24, p1.data_offset - 8, p1.data_offset - 1,
        pyshm_pool_block_offset(&p1, 5), pyshm_pool_block_offset(&p1, 6), q.offset, q.offset + RSH,
        p2.offset, p2.data_offset - 128, pyshm_pool_block_offset(&p2, 3), pyshm_pool_block_offset(&p2, 4),
        r.size - 1, r.size, r.map_size, UINT64_MAX, UINT64_MAX - 23, UINT64_MAX - 127,
        p1.data_offset + (UINT64_C(1) << 63),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_no_block(&r, bad[i]);
    CHECK_EQ(r.pool_count, 2);
    pyshm_region_close(&r);
}

/*
 * Another process's handle onto the same region (its own table, and its own mapping at
 * another address when the region has a memfd) finds pools by re-walking the object
 * list, including pools published after it first looked, and moves blocks both ways.
 */
static void test_other_handle_rewalk(void)
{
    struct pyshm_region r, v;
    REQUIRE(tc_region(&r, 1 << 18) == 0);
    REQUIRE(tc_view_open(&r, &v) == 0);
    CHECK(v.base != r.base || r.fd < 0 || tc_cfg.tsan);
    struct pyshm_pool pools[9];
    struct pyshm_block_ring q, vq;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 16, 0, NULL, &pools[0]), 0);
    REQUIRE_EQ(pyshm_block_ring_create(&r, 16, 0, NULL, &q), 0);
    REQUIRE_EQ(pyshm_block_ring_attach(&v, q.offset, &vq), 0);

    /* The view knows nothing yet: its first lookup walks. */
    CHECK_EQ(v.pool_count, 0);
    expect_block(&v, &pools[0], 3);
    CHECK_EQ(v.pool_count, 1);
    expect_no_block(&v, pyshm_pool_block_offset(&pools[0], 4));
    CHECK_EQ(v.pool_count, 1);

    /* Pools published later, by the creator, are found on the next miss; the table
     * grows past its first allocation. */
    for (int i = 1; i < 9; i++) {
        REQUIRE_EQ(pyshm_pool_create(&r, (uint64_t)i + 1, 8 * (uint64_t)i, 0, NULL, &pools[i]), 0);
        expect_block(&v, &pools[i], (uint64_t)i);
        CHECK_EQ(v.pool_count, (size_t)i + 1);
        const struct pyshm_pool *found = NULL;
        uint64_t index;
        REQUIRE_EQ(pyshm_region_find_block(&v, pyshm_pool_block_offset(&pools[i], 0), &found, &index), 0);
        CHECK(found->data == v.base + pools[i].data_offset);
        CHECK(found->count == pools[i].count && found->stride == pools[i].stride);
    }
    for (int i = 0; i < 9; i++)
        expect_block(&v, &pools[i], 0);
    CHECK_EQ(v.pool_count, 9);

    /* A block travels from the creator's handle to the view and back. */
    for (int i = 0; i < 9; i++) {
        uint64_t index, gen;
        REQUIRE_EQ(pyshm_pool_get(&pools[i], &index, &gen), 0);
        memset(tc_block(&pools[i], index), 0x40 + i, pools[i].elt_size);
        REQUIRE_EQ(pyshm_block_ring_enqueue(&q, &pools[i], index, &gen), 0);
    }
    for (int i = 0; i < 9; i++) {
        struct pyshm_taken_block t;
        REQUIRE_EQ(pyshm_block_ring_dequeue(&vq, &v, 0, &t), 0);
        CHECK_EQ(t.pool->offset, pools[i].offset);
        const uint8_t *b = tc_block(t.pool, t.index);
        CHECK(b >= v.base && b < v.base + v.size);
        for (uint64_t k = 0; k < t.pool->elt_size; k++)
            if (b[k] != 0x40 + i) {
                tc_fail(__FILE__, __LINE__, "pool %d byte %" PRIu64 " is %#x", i, k, b[k]);
                break;
            }
        uint64_t index = t.index, gen = t.gen;
        const struct pyshm_pool *vp = t.pool;
        REQUIRE_EQ(pyshm_block_ring_enqueue(&vq, vp, index, &gen), 0);
    }
    for (int i = 0; i < 9; i++) {
        struct pyshm_taken_block t;
        REQUIRE_EQ(pyshm_block_ring_dequeue(&q, &r, 0, &t), 0);
        CHECK_EQ(t.pool->offset, pools[i].offset);
        CHECK_EQ(pyshm_pool_put(t.pool, t.index, &t.gen), 0);
        CHECK_EQ(pyshm_pool_free_count(&pools[i]), pools[i].count);
    }

    /* A pool carved but never published is not found. */
    uint64_t off;
    REQUIRE_EQ(pyshm_region_carve(&r, 1024, PYSHM_KIND_POOL, NULL, &off), 0);
    expect_no_block(&v, off + 512);
    CHECK_EQ(v.pool_count, 9);
    tc_view_close(&r, &v);
    pyshm_region_close(&r);
}

/* An object list a faulty process wrote: bounded walks, known pools still work. */
static void test_hostile_object_list(void)
{
    struct pyshm_region r, v;
    REQUIRE(tc_region(&r, 1 << 16) == 0);
    struct pyshm_pool a, b;
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 32, 0, NULL, &a), 0);
    REQUIRE_EQ(pyshm_pool_create(&r, 4, 32, 0, NULL, &b), 0);
    struct pyshm_region_header *h = (struct pyshm_region_header *)r.base;
    struct pyshm_object_header *oa = (struct pyshm_object_header *)(r.base + a.offset);
    struct pyshm_object_header *ob = (struct pyshm_object_header *)(r.base + b.offset);
    CHECK(atomic_load(&h->objects_head) == b.offset);
    CHECK(ob->next == a.offset && oa->next == 0);

    /* A cycle through both pools: the walk ends, both pools are found once. */
    oa->next = b.offset;
    REQUIRE(tc_view_open(&r, &v) == 0);
    expect_no_block(&v, 12345);
    CHECK_EQ(v.pool_count, 2);
    expect_block(&v, &a, 1);
    expect_block(&v, &b, 2);
    tc_view_close(&r, &v);
    /* A self-loop. */
    oa->next = 0;
    ob->next = b.offset;
    REQUIRE(tc_view_open(&r, &v) == 0);
    expect_no_block(&v, 12345);
    CHECK_EQ(v.pool_count, 1);
    expect_no_block(&v, pyshm_pool_block_offset(&a, 0)); /* cut off by the loop */
    expect_block(&v, &b, 0);
    tc_view_close(&r, &v);
    ob->next = a.offset;

    /* Heads and links that point nowhere valid. */
    const uint64_t bad_links[] = {1, 63, 65, r.size, r.size - 32, UINT64_MAX, UINT64_MAX - 63};
    for (size_t i = 0; i < sizeof(bad_links) / sizeof(bad_links[0]); i++) {
        atomic_store(&h->objects_head, bad_links[i]);
        REQUIRE(tc_view_open(&r, &v) == 0);
        expect_no_block(&v, pyshm_pool_block_offset(&a, 0));
        CHECK_EQ(v.pool_count, 0);
        tc_view_close(&r, &v);
        atomic_store(&h->objects_head, b.offset);
        ob->next = bad_links[i];
        REQUIRE(tc_view_open(&r, &v) == 0);
        expect_no_block(&v, pyshm_pool_block_offset(&a, 0));
        expect_block(&v, &b, 3);
        tc_view_close(&r, &v);
        ob->next = a.offset;
    }
    /* A mangled pool on the list is skipped; the others are still found. */
    ob->magic ^= 0xff;
    REQUIRE(tc_view_open(&r, &v) == 0);
    expect_no_block(&v, pyshm_pool_block_offset(&b, 0));
    expect_block(&v, &a, 0);
    CHECK_EQ(v.pool_count, 1);
    tc_view_close(&r, &v);
    ob->magic ^= 0xff;
    /* The creator's own table is unaffected throughout. */
    expect_block(&r, &a, 3);
    expect_block(&r, &b, 3);
    pyshm_region_close(&r);
}

/* ---- concurrent carving and publishing ---- */

#define CARVERS 4
#define CARVES_EACH 24

struct carver {
    const struct pyshm_region *shared;
    struct pyshm_region view;
    struct pyshm_pool pools[CARVES_EACH];
    int created;
    int id;
};

static void *carve_thread(void *arg)
{
    struct carver *c = arg;
    for (int i = 0; i < CARVES_EACH; i++) {
        uint64_t count = 1 + (uint64_t)((c->id * 7 + i) % 5), elt = 8 + 8 * (uint64_t)((c->id + i) % 9);
        if (i % 3 == 2) {
            struct pyshm_block_ring q;
            if (pyshm_block_ring_create(&c->view, count + 1, 0, NULL, &q) != 0)
                break;
        }
        if (pyshm_pool_create(&c->view, count, elt, 0, NULL, &c->pools[c->created]) != 0)
            break;
        /* Stamp the pool's blocks: overlapping carves would clobber each other. */
        struct pyshm_pool *p = &c->pools[c->created++];
        for (uint64_t b = 0; b < p->count; b++)
            memset(tc_block(p, b), c->id * CARVES_EACH + i + 1, p->elt_size);
    }
    return NULL;
}

static void test_concurrent_carve(void)
{
    struct pyshm_region r, v;
    REQUIRE(tc_region(&r, 1 << 18) == 0);
    struct carver *cs = calloc(CARVERS, sizeof(*cs));
    REQUIRE(cs != NULL);
    pthread_t th[CARVERS];
    for (int i = 0; i < CARVERS; i++) {
        cs[i].shared = &r;
        cs[i].id = i;
        REQUIRE(tc_view_open(&r, &cs[i].view) == 0);
        REQUIRE(pthread_create(&th[i], NULL, carve_thread, &cs[i]) == 0);
    }
    for (int i = 0; i < CARVERS; i++)
        pthread_join(th[i], NULL);
    REQUIRE(tc_view_open(&r, &v) == 0);
    size_t total = 0;
    for (int i = 0; i < CARVERS; i++) {
        CHECK_EQ(cs[i].created, CARVES_EACH);
        for (int j = 0; j < cs[i].created; j++) {
            struct pyshm_pool *p = &cs[i].pools[j];
            const struct pyshm_pool *found = NULL;
            uint64_t index;
            total++;
            for (uint64_t b = 0; b < p->count; b++) {
                int rc = pyshm_region_find_block(&v, pyshm_pool_block_offset(p, b), &found, &index);
                CHECK(rc == 0 && found->offset == p->offset && index == b);
                const uint8_t *bytes = v.base + pyshm_pool_block_offset(p, b);
                for (uint64_t k = 0; k < p->elt_size; k++)
                    if (bytes[k] != (uint8_t)(i * CARVES_EACH + j + 1)) {
                        tc_fail(__FILE__, __LINE__, "pool %d/%d block %" PRIu64 " overwritten", i, j, b);
                        break;
                    }
            }
            CHECK_EQ(pyshm_pool_free_count(p), p->count);
        }
    }
    CHECK_EQ(v.pool_count, total);
    tc_view_close(&r, &v);
    for (int i = 0; i < CARVERS; i++)
        tc_view_close(&r, &cs[i].view);
    free(cs);
    pyshm_region_close(&r);
}

const struct tc_test tc_region_tests[] = {
    {"pool_attach_rejects_mangled_headers", test_pool_attach, 0, NULL},
    {"block_ring_attach_rejects_mangled_headers", test_block_ring_attach, 0, NULL},
    {"attach_rejects_high_flag_bits", test_attach_high_flag_bits, 0, NULL},
    {"find_block_offsets", test_find_block, 0, NULL},
    {"find_block_rewalk_from_other_handle", test_other_handle_rewalk, 0, NULL},
    {"hostile_object_list", test_hostile_object_list, 0, NULL},
    {"concurrent_carve_and_publish", test_concurrent_carve, 0, NULL},
};
const size_t tc_region_test_count = sizeof(tc_region_tests) / sizeof(tc_region_tests[0]);
