/*
 * fuzz_core.c - a libFuzzer harness over the C core (src/core), see tests/fuzz/run.sh.
 *
 * Each input is a program: a region size, then a sequence of operations. Operations are
 * the core's API (pools, block rings, lookups, attaches at arbitrary offsets, a second
 * region handle onto the same memory) mixed with raw writes into the shared memory that
 * a faulty or hostile process could make (region header, object headers, pool geometry,
 * ring counters and slots, block states and holders, any byte), and whole forged pool
 * and ring headers, consistent in every cross-checked field, anywhere in the region.
 *
 * Two levels of checking:
 *
 *  - Always, however the memory was corrupted: no crash, no sanitizer report, no hang,
 *    a documented return code, and every block the core hands out (get, get_burst,
 *    dequeue, dequeue_burst, find_block) lies inside the region, inside a validated
 *    pool's data area, on a stride boundary, held at the generation returned. Every pool
 *    in a region handle's table lies wholly inside that region, and no two overlap.
 *
 *  - While the program has made no corrupting write (the "clean" phase), a model of the
 *    whole region is kept: the FIFO order of every pool's free queue and every ring,
 *    every block's state word, the carve end, names, shutdown states. Each call's result
 *    must be exactly what the model predicts. Writing into the data of a block is not
 *    corruption (that is what blocks are for) and keeps the program clean.
 *
 * The region is created per input (memfd, as the binding does), and both handles onto it
 * are moved between guard pages, so an access past the mapping faults.
 *
 * Input format (little-endian; reads past the end give zeros and end the program):
 *   u16 size-1                region size in bytes, 1..65536
 *   then ops: u8 opcode (mod OP_COUNT) followed by its arguments (see run_op).
 *
 * Time. Under corruption some core calls legitimately take long: a claim retries up to
 * PYSHM_RING_MAX_RETRIES (2^20) times before it reports corruption (about 70 ms in this
 * instrumented build), and a put into a free queue that reads full yields the CPU for
 * 200 ms before -EAGAIN. So that a slow input does not stall the
 * fuzzer, a program stops issuing operations once it has run FUZZ_BUDGET_MS milliseconds
 * (environment, default 1000; 0 for no limit, e.g. to replay a crash exactly).
 *
 * FUZZ_TRACE=1 in the environment prints every operation and its result to stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block_ring.h"
#include "mempool.h"
#include "region.h"
#include "repair.h"
#include "ring.h"

/* ------------------------------------------------------------------------------------ */
/* failure reporting                                                                      */

static int trace;

static void trace_op(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace_op(const char *fmt, ...)
{
    if (!trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static unsigned op_number;

__attribute__((noreturn, format(printf, 3, 4))) static void fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\nfuzz_core: invariant violated at %s:%d (op #%u): ", file, line, op_number);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
#define FAIL(...) fail(__FILE__, __LINE__, __VA_ARGS__)
#define ASSERT(cond)                                                                              \
    do {                                                                                          \
        if (!(cond))                                                                              \
            FAIL("%s", #cond);                                                                    \
    } while (0)
#define EXPECT_RC(got, want)                                                                      \
    do {                                                                                          \
        long long got_ = (long long)(got), want_ = (long long)(want);                             \
        if (got_ != want_)                                                                        \
            FAIL("%s returned %lld, the model expected %lld", #got, got_, want_);                 \
    } while (0)

/* ------------------------------------------------------------------------------------ */
/* input reader                                                                           */

struct reader {
    const uint8_t *p;
    size_t n;
};

static uint64_t rd_bytes(struct reader *rd, unsigned k)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < k; i++) {
        uint64_t b = 0;
        if (rd->n > 0) {
            b = *rd->p++;
            rd->n--;
        }
        v |= b << (8 * i);
    }
    return v;
}
static uint8_t rd8(struct reader *rd) { return (uint8_t)rd_bytes(rd, 1); }
static uint16_t rd16(struct reader *rd) { return (uint16_t)rd_bytes(rd, 2); }
static uint32_t rd32(struct reader *rd) { return (uint32_t)rd_bytes(rd, 4); }
static uint64_t rd64(struct reader *rd) { return rd_bytes(rd, 8); }

/* ------------------------------------------------------------------------------------ */
/* the region, two handles, guard pages                                                   */

#define PAGE 4096u

static struct pyshm_region r1, r2;
static int r2_live;
static uint8_t *guard1, *guard2; /* reservations holding each mapping between guard pages */

/* Move a handle's mapping between two PROT_NONE pages so that any access past either
 * end faults instead of landing in a neighbouring mapping. */
static uint8_t *guard_mapping(struct pyshm_region *r)
{
    size_t total = r->map_size + 2 * PAGE;
    uint8_t *res = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        FAIL("mmap reservation: %s", strerror(errno));
    void *m = mmap(res + PAGE, r->map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd, 0);
    if (m == MAP_FAILED)
        FAIL("mmap into reservation: %s", strerror(errno));
    munmap(r->base, r->map_size);
    r->base = res + PAGE;
    return res;
}

static void unguard(uint8_t *res, uint64_t map_size)
{
    if (!res)
        return;
    munmap(res, PAGE);
    munmap(res + PAGE + map_size, PAGE);
}

static void close_region(struct pyshm_region *r, uint8_t **res)
{
    uint64_t map_size = r->map_size;
    pyshm_region_close(r); /* unmaps the middle */
    unguard(*res, map_size);
    *res = NULL;
}

/* ------------------------------------------------------------------------------------ */
/* the model of a clean region                                                            */

struct fifo {
    uint64_t *v;
    uint64_t cap, head, len;
};

static void fifo_init(struct fifo *f, uint64_t cap)
{
    f->v = calloc(cap ? cap : 1, sizeof(uint64_t));
    ASSERT(f->v);
    f->cap = cap;
    f->head = f->len = 0;
}
static void fifo_push(struct fifo *f, uint64_t x)
{
    ASSERT(f->len < f->cap);
    f->v[(f->head + f->len++) % f->cap] = x;
}
static uint64_t fifo_at(const struct fifo *f, uint64_t i) { return f->v[(f->head + i) % f->cap]; }
static uint64_t fifo_pop(struct fifo *f)
{
    ASSERT(f->len > 0);
    uint64_t x = f->v[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return x;
}

#define MAX_MODEL 16

struct mpool {
    struct pyshm_pool h; /* canonical handle through r1 */
    struct fifo free;    /* indices */
    uint8_t *kind;       /* enum pyshm_block_kind of each block */
    uint64_t *gen;       /* generation of each block's state word */
};
struct mring {
    struct pyshm_block_ring h; /* canonical handle through r1 */
    struct fifo entries;       /* model pool id << 32 | block index */
    uint64_t capacity;
    int shutdown;
};
enum { OBJ_POOL, OBJ_RING };
struct mobj {
    int type, id;
    uint64_t offset;
    char name[PYSHM_NAME_MAX + 1];
};

static int corrupt; /* a corrupting write happened: from then on only the safety checks */
static uint64_t model_carve_end;
static struct mpool mpools[MAX_MODEL];
static int n_mpools;
static struct mring mrings[MAX_MODEL];
static int n_mrings;
static struct mobj mobjs[2 * MAX_MODEL]; /* in publication order */
static int n_mobjs;

static struct mpool *mpool_at(uint64_t offset)
{
    for (int i = 0; i < n_mpools; i++)
        if (mpools[i].h.offset == offset)
            return &mpools[i];
    return NULL;
}
static struct mring *mring_at(uint64_t offset)
{
    for (int i = 0; i < n_mrings; i++)
        if (mrings[i].h.offset == offset)
            return &mrings[i];
    return NULL;
}

static void model_free_all(void)
{
    for (int i = 0; i < n_mpools; i++) {
        free(mpools[i].free.v);
        free(mpools[i].kind);
        free(mpools[i].gen);
    }
    for (int i = 0; i < n_mrings; i++)
        free(mrings[i].entries.v);
    n_mpools = n_mrings = n_mobjs = 0;
}

static void set_corrupt(const char *why)
{
    if (!corrupt)
        trace_op("  (corrupting from here: %s)", why);
    corrupt = 1;
}

/* Every block state word and every count the model knows must match memory. */
static void model_check(void)
{
    if (corrupt)
        return;
    for (int m = 0; m < n_mpools; m++) {
        const struct mpool *mp = &mpools[m];
        for (uint64_t i = 0; i < mp->h.count; i++) {
            uint64_t s = atomic_load_explicit(&mp->h.states[i], memory_order_relaxed);
            if (s != pyshm_block_state(mp->gen[i], (enum pyshm_block_kind)mp->kind[i]))
                FAIL("pool @%" PRIu64 " block %" PRIu64 ": state %#" PRIx64 ", model kind %d gen %" PRIu64,
                     mp->h.offset, i, s, mp->kind[i], mp->gen[i]);
        }
        if (pyshm_pool_free_count(&mp->h) != mp->free.len)
            FAIL("pool @%" PRIu64 ": free count %" PRIu64 ", model %" PRIu64, mp->h.offset,
                 pyshm_pool_free_count(&mp->h), mp->free.len);
    }
    for (int q = 0; q < n_mrings; q++) {
        const struct mring *mq = &mrings[q];
        if (pyshm_block_ring_count(&mq->h) != mq->entries.len)
            FAIL("ring @%" PRIu64 ": count %" PRIu64 ", model %" PRIu64, mq->h.offset,
                 pyshm_block_ring_count(&mq->h), mq->entries.len);
        if ((int)pyshm_block_ring_shutdown_state(&mq->h) != mq->shutdown)
            FAIL("ring @%" PRIu64 ": shutdown state %d, model %d", mq->h.offset,
                 (int)pyshm_block_ring_shutdown_state(&mq->h), mq->shutdown);
    }
    uint64_t carve_end = atomic_load_explicit(&((struct pyshm_region_header *)r1.base)->carve_end, memory_order_relaxed);
    if (carve_end != model_carve_end)
        FAIL("carve end %" PRIu64 ", model %" PRIu64, carve_end, model_carve_end);
}

/* ------------------------------------------------------------------------------------ */
/* handles the program holds                                                              */

#define MAX_HANDLES 16
#define MAX_HELD 128
#define MAX_BURST 80

enum { OWNER_NONE, OWNER_R1, OWNER_R2 };

struct hpool {
    int owner;
    struct pyshm_pool h;
};
struct hring {
    int owner;
    struct pyshm_block_ring h;
};
struct held {
    const struct pyshm_pool *p; /* a handle of ours, or a pool in a region's table */
    uint64_t index, gen;
};

static struct hpool hpools[MAX_HANDLES];
static struct hring hrings[MAX_HANDLES];
static struct held held[MAX_HELD];
static int n_held;

static struct pyshm_region *region_of(int owner) { return owner == OWNER_R2 ? &r2 : &r1; }

static int table_has(const struct pyshm_region *r, const struct pyshm_pool *p)
{
    for (size_t i = 0; i < r->pool_count; i++)
        if (r->pools[i] == p)
            return 1;
    return 0;
}

/* Which mapping a pool handle points into. */
static int owner_of(const struct pyshm_pool *p)
{
    if (p >= &hpools[0].h && p <= &hpools[MAX_HANDLES - 1].h)
        return hpools[((const char *)p - (const char *)&hpools[0]) / sizeof(hpools[0])].owner;
    if (table_has(&r1, p))
        return OWNER_R1;
    if (r2_live && table_has(&r2, p))
        return OWNER_R2;
    FAIL("a pool handle of unknown origin");
}

static void add_held(const struct pyshm_pool *p, uint64_t index, uint64_t gen)
{
    struct held h = {p, index, gen};
    if (n_held < MAX_HELD)
        held[n_held++] = h;
    else
        held[index % MAX_HELD] = h; /* forgotten: the block stays held, as a leak would */
}

static void remove_held(int i) { held[i] = held[--n_held]; }

static int still_held(const struct pyshm_pool *p, uint64_t index, uint64_t gen)
{
    return index < p->count &&
           atomic_load_explicit(&p->states[index], memory_order_relaxed) == pyshm_block_state(gen, PYSHM_BLOCK_HELD);
}

/* After a call that handed held[i] back (put) or over (enqueue): forget it if the call
 * succeeded or the block is no longer held at `gen`, else remember it at `gen`. */
static void settle(int i, int rc, const struct pyshm_pool *p, uint64_t index, uint64_t gen, int *drop)
{
    if (rc == 0 || !still_held(p, index, gen))
        drop[i] = 1;
    else
        held[i].gen = gen;
}

static void drop_marked(const int *drop)
{
    for (int i = n_held - 1; i >= 0; i--)
        if (drop[i])
            remove_held(i);
}

static int pick_region(struct reader *rd)
{
    return (rd8(rd) & 1) && r2_live ? OWNER_R2 : OWNER_R1;
}

static struct hpool *pick_pool(struct reader *rd)
{
    uint8_t sel = rd8(rd);
    int live = 0;
    for (int i = 0; i < MAX_HANDLES; i++)
        live += hpools[i].owner != OWNER_NONE;
    if (live == 0)
        return NULL;
    int want = sel % live;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hpools[i].owner != OWNER_NONE && want-- == 0)
            return &hpools[i];
    return NULL;
}

static struct hring *pick_ring(struct reader *rd)
{
    uint8_t sel = rd8(rd);
    int live = 0;
    for (int i = 0; i < MAX_HANDLES; i++)
        live += hrings[i].owner != OWNER_NONE;
    if (live == 0)
        return NULL;
    int want = sel % live;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hrings[i].owner != OWNER_NONE && want-- == 0)
            return &hrings[i];
    return NULL;
}

static struct hpool *new_pool_slot(uint8_t sel)
{
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hpools[i].owner == OWNER_NONE)
            return &hpools[i];
    return &hpools[sel % MAX_HANDLES];
}
static struct hring *new_ring_slot(uint8_t sel)
{
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hrings[i].owner == OWNER_NONE)
            return &hrings[i];
    return &hrings[sel % MAX_HANDLES];
}

/* ------------------------------------------------------------------------------------ */
/* the invariants that hold under any corruption                                          */

static void check_pool_in_region(const struct pyshm_region *r, const struct pyshm_pool *p)
{
    uint64_t fp;
    if (pyshm_pool_footprint(p->count, p->elt_size, &fp) < 0)
        FAIL("a validated pool with an invalid geometry: count %" PRIu64 " elt_size %" PRIu64, p->count,
             p->elt_size);
    if (p->offset % PYSHM_CACHE_LINE != 0 || p->offset < PYSHM_REGION_HEADER_SIZE || p->offset > r->size ||
        fp > r->size - p->offset)
        FAIL("pool @%" PRIu64 " (footprint %" PRIu64 ") is not inside the region of %" PRIu64 " bytes", p->offset,
             fp, r->size);
    ASSERT(r->size <= r->map_size);
    ASSERT(p->stride >= p->elt_size && p->stride % 8 == 0);
    ASSERT(p->data_offset >= p->offset && p->data_offset % PYSHM_CACHE_LINE == 0);
    ASSERT(p->data_offset + p->count * p->stride <= p->offset + fp);
    ASSERT(p->data == r->base + p->data_offset);
    const uint8_t *lo = r->base + p->offset + sizeof(struct pyshm_pool_shared), *hi = r->base + p->offset + fp;
    ASSERT((const uint8_t *)p->states >= lo && (const uint8_t *)(p->states + p->count) <= p->data);
    ASSERT((const uint8_t *)p->holders >= lo && (const uint8_t *)(p->holders + p->count) <= p->data);
    ASSERT((const uint8_t *)p->free_queue.slots >= lo &&
           (const uint8_t *)(p->free_queue.slots + p->count) <= (const uint8_t *)p->states);
    ASSERT((const uint8_t *)p->free_queue.counters == r->base + p->offset + offsetof(struct pyshm_pool_shared, free_queue));
    ASSERT(p->free_queue.capacity == p->count);
    ASSERT(p->data + p->count * p->stride <= hi);
}

static void check_ring_in_region(const struct pyshm_region *r, const struct pyshm_block_ring *q)
{
    uint64_t fp;
    ASSERT(pyshm_block_ring_footprint(q->ring.capacity, &fp) == 0);
    ASSERT(q->offset % PYSHM_CACHE_LINE == 0 && q->offset >= PYSHM_REGION_HEADER_SIZE && q->offset <= r->size &&
           fp <= r->size - q->offset);
    ASSERT((const uint8_t *)q->ring.slots == r->base + q->offset + sizeof(struct pyshm_ring_shared));
    ASSERT((const uint8_t *)(q->ring.slots + q->ring.capacity) <= r->base + q->offset + fp);
}

/* Every pool a region handle has validated lies in the region, and no two overlap
 * (region.h: an overlapping pool is a forgery and is refused). */
static void check_table(const struct pyshm_region *r)
{
    for (size_t i = 0; i < r->pool_count; i++) {
        const struct pyshm_pool *a = r->pools[i];
        check_pool_in_region(r, a);
        uint64_t fa, fb;
        ASSERT(pyshm_pool_footprint(a->count, a->elt_size, &fa) == 0);
        for (size_t j = 0; j < i; j++) {
            const struct pyshm_pool *b = r->pools[j];
            ASSERT(pyshm_pool_footprint(b->count, b->elt_size, &fb) == 0);
            if (a->offset < b->offset + fb && b->offset < a->offset + fa)
                FAIL("the pool table holds overlapping pools [%" PRIu64 ", +%" PRIu64 ") and [%" PRIu64
                     ", +%" PRIu64 ")",
                     a->offset, fa, b->offset, fb);
        }
    }
}

static void check_tables(void)
{
    check_table(&r1);
    if (r2_live)
        check_table(&r2);
}

/* A block just handed out (by get or dequeue) through region r: inside the region, in the
 * data area of a validated pool, on a stride boundary, and held at the generation given. */
static void check_block(const struct pyshm_region *r, const struct pyshm_pool *p, uint64_t index, uint64_t gen,
                        const char *what)
{
    check_pool_in_region(r, p);
    if (index >= p->count)
        FAIL("%s: index %" PRIu64 " of a pool of %" PRIu64, what, index, p->count);
    uint64_t off = pyshm_pool_block_offset(p, index);
    if (off < p->data_offset || (off - p->data_offset) % p->stride != 0 ||
        off + p->stride > p->data_offset + p->count * p->stride)
        FAIL("%s: block offset %" PRIu64 " is not on a stride boundary of the data area", what, off);
    if (off < PYSHM_REGION_HEADER_SIZE || off > r->size || p->elt_size > r->size - off)
        FAIL("%s: block [%" PRIu64 ", +%" PRIu64 ") is not inside the region of %" PRIu64 " bytes", what, off,
             p->elt_size, r->size);
    uint64_t s = atomic_load_explicit(&p->states[index], memory_order_relaxed);
    if (s != pyshm_block_state(gen, PYSHM_BLOCK_HELD))
        FAIL("%s: block %" PRIu64 " handed out at generation %" PRIu64 " but its state is %#" PRIx64, what, index,
             gen, s);
}

static int rc_in(long long rc, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    int ok = 0;
    for (int i = 0; i < n; i++)
        if (rc == va_arg(ap, int))
            ok = 1;
    va_end(ap);
    return ok;
}
#define CHECK_RC(rc, n, ...)                                                                      \
    do {                                                                                          \
        if (!rc_in((long long)(rc), n, __VA_ARGS__))                                              \
            FAIL("%s returned %lld, not a documented code", #rc, (long long)(rc));                \
    } while (0)

/* ------------------------------------------------------------------------------------ */
/* values the program writes and offsets it probes                                        */

static const char *const names[] = {NULL, "", "n0", "n1", "n2", "n3", "n4", "n5",
                                    "this-name-is-sixty-four-bytes-long-so-it-is-one-byte-too-long-x"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

static uint64_t forged[8]; /* offsets of the last objects forged (op_w_forge_*) */
static unsigned n_forged;

/* An offset the program knows: of an object, of a block, of a pool part, or near the end. */
static uint64_t known_offset(struct reader *rd)
{
    uint8_t sel = rd8(rd), k = rd8(rd), i = rd8(rd);
    struct hpool *hp = NULL;
    int live = 0;
    for (int j = 0; j < MAX_HANDLES; j++)
        live += hpools[j].owner != OWNER_NONE;
    if (live) {
        int want = k % live;
        for (int j = 0; j < MAX_HANDLES; j++)
            if (hpools[j].owner != OWNER_NONE && want-- == 0)
                hp = &hpools[j];
    }
    switch (sel % 6) {
    case 0: /* an object the model knows or the program forged, or any pool handle of ours */
        if (n_forged && (i & 1))
            return forged[k % (n_forged < 8 ? n_forged : 8)];
        if (n_mobjs)
            return mobjs[k % n_mobjs].offset;
        return hp ? hp->h.offset : 64;
    case 1: /* a block */
        return hp ? pyshm_pool_block_offset(&hp->h, i % hp->h.count) : 64;
    case 2: /* a ring */
        for (int j = 0; j < MAX_HANDLES; j++)
            if (hrings[(k + j) % MAX_HANDLES].owner != OWNER_NONE)
                return hrings[(k + j) % MAX_HANDLES].h.offset;
        return 64;
    case 3:
        return r1.size - 64 * (uint64_t)(k % 8);
    case 4: /* the states or slots of a pool */
        return hp ? (uint64_t)((k & 1 ? (uint8_t *)hp->h.states : (uint8_t *)hp->h.free_queue.slots) -
                               region_of(hp->owner)->base)
                  : 128;
    default:
        return atomic_load_explicit(&((struct pyshm_region_header *)r1.base)->carve_end, memory_order_relaxed);
    }
}

/* A value to write over `cur`, a field's current value. */
static uint64_t pick_value(struct reader *rd, uint64_t cur)
{
    static const uint64_t special[] = {0,
                                       1,
                                       2,
                                       3,
                                       63,
                                       64,
                                       UINT64_MAX,
                                       UINT64_MAX - 63,
                                       UINT64_C(1) << 63,
                                       (UINT64_C(1) << 63) - 1,
                                       UINT64_C(1) << 40,
                                       (UINT64_C(1) << 40) + 1,
                                       UINT64_C(1) << 46,
                                       (UINT64_C(1) << 46) + 64,
                                       UINT32_MAX,
                                       UINT64_C(1) << 32,
                                       PYSHM_REGION_MAGIC,
                                       PYSHM_OBJECT_MAGIC};
    uint8_t mode = rd8(rd);
    switch (mode % 8) {
    case 0:
        return rd8(rd);
    case 1:
        return rd64(rd);
    case 2:
        return known_offset(rd) + (uint64_t)(int64_t)(int8_t)rd8(rd);
    case 3:
        return cur + (uint64_t)(int64_t)(int16_t)rd16(rd);
    case 4: {
        uint8_t k = rd8(rd);
        if (k % 32 < sizeof(special) / sizeof(special[0]))
            return special[k % 32];
        return k % 2 ? r1.size : r1.map_size;
    }
    case 5: { /* a block state word around the current one */
        uint8_t g = rd8(rd), kind = rd8(rd);
        return pyshm_block_state(pyshm_block_gen_of(cur) + (uint64_t)(int64_t)(int8_t)g, kind % 4);
    }
    case 6: { /* a ring sequence word around the current one: 2 (pos + delta) + full */
        uint8_t d = rd8(rd);
        int64_t delta = (int8_t)d / 2;
        return (cur & ~(uint64_t)1) + 2 * (uint64_t)delta + (d & 1);
    }
    default:
        return rd32(rd);
    }
}

static uint64_t load_field(const void *p, unsigned width)
{
    uint64_t v = 0;
    memcpy(&v, p, width); /* little-endian */
    return v;
}

/* Write `width` bytes at p, which lies inside the mapping of r1 (or r2: the same memory). */
static void store_field(void *p, unsigned width, uint64_t v, const char *what)
{
    trace_op("  write %s (%u bytes) = %#" PRIx64, what, width, v);
    memcpy(p, &v, width);
    set_corrupt(what);
}

static void write_field(struct reader *rd, void *p, unsigned width, const char *what)
{
    store_field(p, width, pick_value(rd, load_field(p, width)), what);
}

/* ------------------------------------------------------------------------------------ */
/* the operations                                                                         */

enum {
    OP_POOL_CREATE,
    OP_RING_CREATE,
    OP_POOL_GET,
    OP_POOL_GET_BURST,
    OP_POOL_PUT,
    OP_POOL_PUT_BURST,
    OP_RING_ENQ,
    OP_RING_ENQ_BURST,
    OP_RING_DEQ,
    OP_RING_DEQ_BURST,
    OP_RING_DRAIN,
    OP_RING_SHUTDOWN,
    OP_FIND_BLOCK,
    OP_FIND_NAMED,
    OP_POOL_ATTACH,
    OP_RING_ATTACH,
    OP_REOPEN_R2,
    OP_RECLAIM,
    OP_BLOCK_WRITE,
    OP_COUNTS,
    /* corrupting writes */
    OP_W_REGION_HDR,
    OP_W_OBJ_HDR,
    OP_W_POOL_GEOM,
    OP_W_COUNTER,
    OP_W_SLOT,
    OP_W_STATE,
    OP_W_RAW,
    OP_W_RING_HDR,
    OP_W_FORGE_POOL,
    OP_W_FORGE_RING,
    OP_COUNT
};

static void model_publish(int type, int id, uint64_t offset, const char *name)
{
    struct mobj *o = &mobjs[n_mobjs++];
    o->type = type;
    o->id = id;
    o->offset = offset;
    memset(o->name, 0, sizeof(o->name));
    if (name)
        strncpy(o->name, name, PYSHM_NAME_MAX);
}

/* What carve would say in a clean region: 0 with the offset, or an error. */
static int model_carve(const struct pyshm_region *r, uint64_t size, const char *name, uint64_t *offset)
{
    size_t len = name ? strlen(name) : 0;
    if (len > PYSHM_NAME_MAX)
        return -EINVAL;
    if (len > 0)
        for (int i = 0; i < n_mobjs; i++)
            if (strcmp(mobjs[i].name, name) == 0)
                return -EEXIST;
    uint64_t start = PYSHM_ALIGN_UP(model_carve_end, PYSHM_CACHE_LINE);
    if (start > r->size || size > r->size - start)
        return -ENOSPC;
    *offset = start;
    return 0;
}

static void op_pool_create(struct reader *rd)
{
    int owner = pick_region(rd);
    struct pyshm_region *r = region_of(owner);
    uint64_t count = 1 + rd16(rd) % 512, elt = 1 + rd16(rd) % 2048;
    uint8_t fl = rd8(rd), nm = rd8(rd);
    uint32_t flags = fl & 0x80 ? fl : fl & PYSHM_MEMPOOL_FLAGS;
    const char *name = names[nm % N_NAMES];
    struct hpool *slot = new_pool_slot(nm);
    struct pyshm_pool out;
    int rc = pyshm_pool_create(r, count, elt, flags, name, &out);
    trace_op("pool_create(r%d, count %" PRIu64 ", elt %" PRIu64 ", flags %#x, %s) = %d @%" PRIu64, owner, count,
             elt, flags, name ? name : "NULL", rc, rc == 0 ? out.offset : 0);
    if (!corrupt) {
        uint64_t fp, want_off = 0;
        int want = (flags & ~PYSHM_MEMPOOL_FLAGS) ? -EINVAL : 0;
        if (want == 0)
            ASSERT(pyshm_pool_footprint(count, elt, &fp) == 0);
        if (want == 0)
            want = model_carve(r, fp, name, &want_off);
        EXPECT_RC(rc, want);
        if (rc == 0) {
            EXPECT_RC(out.offset, want_off);
            model_carve_end = want_off + fp;
        }
    } else {
        CHECK_RC(rc, 6, 0, -EINVAL, -EEXIST, -ENOSPC, -ENOMEM, -PYSHM_ECORRUPT); /* ECORRUPT: overlaps a known pool */
    }
    if (rc < 0)
        return;
    check_pool_in_region(r, &out);
    ASSERT(pyshm_region_pool_slot(r, out.offset) >= 0);
    slot->owner = owner;
    slot->h = out;
    if (!corrupt && n_mpools < MAX_MODEL) {
        struct mpool *mp = &mpools[n_mpools];
        if (owner == OWNER_R1)
            mp->h = out;
        else
            EXPECT_RC(pyshm_pool_attach(&r1, out.offset, &mp->h), 0);
        fifo_init(&mp->free, count);
        for (uint64_t i = 0; i < count; i++)
            fifo_push(&mp->free, i);
        mp->kind = calloc(count, 1);
        mp->gen = calloc(count, sizeof(uint64_t));
        ASSERT(mp->kind && mp->gen);
        model_publish(OBJ_POOL, n_mpools, out.offset, name);
        n_mpools++;
    } else if (!corrupt) {
        set_corrupt("more objects than the model tracks");
    }
}

static void op_ring_create(struct reader *rd)
{
    int owner = pick_region(rd);
    struct pyshm_region *r = region_of(owner);
    uint64_t cap = 1 + rd16(rd) % 256;
    uint8_t fl = rd8(rd), nm = rd8(rd);
    uint32_t flags = fl & 0x80 ? fl : fl & PYSHM_RING_FLAGS;
    const char *name = names[nm % N_NAMES];
    struct hring *slot = new_ring_slot(nm);
    struct pyshm_block_ring out;
    int rc = pyshm_block_ring_create(r, cap, flags, name, &out);
    trace_op("ring_create(r%d, cap %" PRIu64 ", flags %#x, %s) = %d @%" PRIu64, owner, cap, flags,
             name ? name : "NULL", rc, rc == 0 ? out.offset : 0);
    if (!corrupt) {
        uint64_t fp, want_off = 0;
        int want = (flags & ~PYSHM_RING_FLAGS) ? -EINVAL : 0;
        ASSERT(pyshm_block_ring_footprint(cap, &fp) == 0);
        if (want == 0)
            want = model_carve(r, fp, name, &want_off);
        EXPECT_RC(rc, want);
        if (rc == 0) {
            EXPECT_RC(out.offset, want_off);
            model_carve_end = want_off + fp;
        }
    } else {
        CHECK_RC(rc, 5, 0, -EINVAL, -EEXIST, -ENOSPC, -PYSHM_ECORRUPT);
    }
    if (rc < 0)
        return;
    check_ring_in_region(r, &out);
    slot->owner = owner;
    slot->h = out;
    if (!corrupt && n_mrings < MAX_MODEL) {
        struct mring *mq = &mrings[n_mrings];
        if (owner == OWNER_R1)
            mq->h = out;
        else
            EXPECT_RC(pyshm_block_ring_attach(&r1, out.offset, &mq->h), 0);
        fifo_init(&mq->entries, cap);
        mq->capacity = cap;
        mq->shutdown = PYSHM_RING_OPEN;
        model_publish(OBJ_RING, n_mrings, out.offset, name);
        n_mrings++;
    } else if (!corrupt) {
        set_corrupt("more objects than the model tracks");
    }
}

/* Model: a block leaves a queue and is taken (FREE or IN_RING -> HELD). */
static void model_take(struct mpool *mp, uint64_t index, uint64_t gen_returned)
{
    ASSERT(mp->kind[index] != PYSHM_BLOCK_HELD);
    mp->kind[index] = PYSHM_BLOCK_HELD;
    mp->gen[index]++;
    EXPECT_RC(gen_returned, mp->gen[index]);
}

static void op_pool_get(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    if (!hp)
        return;
    uint64_t index = UINT64_MAX, gen = UINT64_MAX;
    int rc = pyshm_pool_get(&hp->h, &index, &gen);
    trace_op("pool_get(@%" PRIu64 ") = %d index %" PRIu64 " gen %" PRIu64, hp->h.offset, rc, index, gen);
    if (!corrupt) {
        struct mpool *mp = mpool_at(hp->h.offset);
        ASSERT(mp);
        if (mp->free.len == 0) {
            EXPECT_RC(rc, -PYSHM_EEMPTY);
        } else {
            EXPECT_RC(rc, 0);
            EXPECT_RC(index, fifo_pop(&mp->free));
            model_take(mp, index, gen);
        }
    } else {
        CHECK_RC(rc, 3, 0, -PYSHM_EEMPTY, -PYSHM_ECORRUPT);
    }
    if (rc == 0) {
        check_block(region_of(hp->owner), &hp->h, index, gen, "pool_get");
        add_held(&hp->h, index, gen);
    }
}

static void op_pool_get_burst(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    uint64_t max = rd8(rd) % MAX_BURST;
    if (!hp)
        return;
    uint64_t indices[MAX_BURST], gens[MAX_BURST];
    int64_t n = pyshm_pool_get_burst(&hp->h, indices, gens, max);
    trace_op("pool_get_burst(@%" PRIu64 ", %" PRIu64 ") = %" PRId64, hp->h.offset, max, n);
    if (!corrupt) {
        struct mpool *mp = mpool_at(hp->h.offset);
        ASSERT(mp);
        if (max == 0)
            EXPECT_RC(n, 0);
        else if (mp->free.len == 0)
            EXPECT_RC(n, -PYSHM_EEMPTY);
        else
            EXPECT_RC(n, max < mp->free.len ? max : mp->free.len);
        for (int64_t i = 0; i < n; i++) {
            EXPECT_RC(indices[i], fifo_pop(&mp->free));
            model_take(mp, indices[i], gens[i]);
        }
    } else {
        if (!(n == -PYSHM_EEMPTY || n == -PYSHM_ECORRUPT || (n >= 0 && (uint64_t)n <= max && (n == 0) == (max == 0))))
            FAIL("pool_get_burst(max %" PRIu64 ") returned %" PRId64, max, n);
    }
    for (int64_t i = 0; i < n; i++) {
        check_block(region_of(hp->owner), &hp->h, indices[i], gens[i], "pool_get_burst");
        for (int64_t j = 0; j < i; j++)
            if (indices[j] == indices[i])
                FAIL("pool_get_burst handed out block %" PRIu64 " twice", indices[i]);
        add_held(&hp->h, indices[i], gens[i]);
    }
}

/* The result the model predicts for moving a block from HELD at gen to another kind. */
static int model_check_held(const struct mpool *mp, uint64_t index, uint64_t gen)
{
    if (index >= mp->h.count)
        return -EINVAL;
    return mp->kind[index] == PYSHM_BLOCK_HELD && mp->gen[index] == gen ? 0 : -PYSHM_ESTALE;
}

static void op_pool_put(struct reader *rd)
{
    uint8_t sel = rd8(rd), variant = rd8(rd);
    struct hpool *hp = pick_pool(rd);
    uint64_t index = rd16(rd), gen = rd8(rd);
    const struct pyshm_pool *p;
    int hi = -1;
    if (variant % 4 == 3 || n_held == 0) {
        /* any index and generation, on any pool of ours */
        if (!hp)
            return;
        p = &hp->h;
    } else {
        hi = sel % n_held;
        p = held[hi].p;
        index = held[hi].index;
        gen = held[hi].gen + (variant % 4 == 1 ? -1 : variant % 4 == 2 ? 1 : 0);
    }
    uint64_t gen_in = gen;
    int rc = pyshm_pool_put(p, index, &gen);
    trace_op("pool_put(@%" PRIu64 ", %" PRIu64 ", gen %" PRIu64 ") = %d gen %" PRIu64, p->offset, index, gen_in, rc,
             gen);
    if (!corrupt) {
        struct mpool *mp = mpool_at(p->offset);
        ASSERT(mp);
        EXPECT_RC(rc, model_check_held(mp, index, gen_in));
        EXPECT_RC(gen, gen_in);
        if (rc == 0) {
            mp->kind[index] = PYSHM_BLOCK_FREE;
            mp->gen[index]++;
            fifo_push(&mp->free, index);
        }
    } else {
        CHECK_RC(rc, 5, 0, -EINVAL, -PYSHM_ESTALE, -PYSHM_ECORRUPT, -EAGAIN);
    }
    if (hi >= 0) {
        int drop[MAX_HELD] = {0};
        /* A call with a made-up generation leaves the program's own one as it was. */
        settle(hi, rc, p, index, variant % 4 == 0 ? gen : held[hi].gen, drop);
        drop_marked(drop);
    }
}

static void op_pool_put_burst(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    uint64_t want_n = rd8(rd) % MAX_BURST;
    uint8_t garbage = rd8(rd), garbage_gen = rd8(rd);
    if (!hp)
        return;
    uint64_t indices[MAX_BURST], gens[MAX_BURST], gens_in[MAX_BURST];
    int from[MAX_BURST];
    uint64_t n = 0;
    /* Distinct blocks of this pool (by offset: any handle onto it) that the program holds. */
    for (int i = 0; i < n_held && n < want_n; i++) {
        if (held[i].p->offset != hp->h.offset)
            continue;
        int dup = 0;
        for (uint64_t j = 0; j < n; j++)
            dup |= indices[j] == held[i].index;
        if (dup)
            continue;
        from[n] = i;
        indices[n] = held[i].index;
        gens[n] = held[i].gen;
        n++;
    }
    if (garbage % 8 == 7 && n < MAX_BURST) { /* a block not held at that generation, or out of range */
        uint64_t k = garbage / 8 % (n + 1);
        memmove(&indices[k + 1], &indices[k], (n - k) * sizeof(uint64_t));
        memmove(&gens[k + 1], &gens[k], (n - k) * sizeof(uint64_t));
        memmove(&from[k + 1], &from[k], (n - k) * sizeof(int));
        indices[k] = garbage & 1 ? hp->h.count + garbage : garbage % hp->h.count;
        gens[k] = garbage_gen;
        from[k] = -1;
        n++;
        /* a duplicate of another entry makes the model's prediction ambiguous: avoid it */
        for (uint64_t j = 0; j < n; j++)
            if (j != k && indices[j] == indices[k])
                indices[k] = hp->h.count + 1;
    }
    memcpy(gens_in, gens, sizeof(gens));
    int rc = pyshm_pool_put_burst(&hp->h, indices, gens, n);
    trace_op("pool_put_burst(@%" PRIu64 ", n %" PRIu64 ") = %d", hp->h.offset, n, rc);
    if (!corrupt) {
        struct mpool *mp = mpool_at(hp->h.offset);
        ASSERT(mp);
        int want = 0;
        uint64_t moved = 0;
        for (; moved < n; moved++) {
            want = model_check_held(mp, indices[moved], gens_in[moved]);
            if (want < 0)
                break;
        }
        EXPECT_RC(rc, want);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t expect_gen = gens_in[i] + (rc < 0 && i < moved ? 2 : 0);
            EXPECT_RC(gens[i], expect_gen);
            if (rc == 0) {
                mp->kind[indices[i]] = PYSHM_BLOCK_FREE;
                mp->gen[indices[i]]++;
                fifo_push(&mp->free, indices[i]);
            } else if (i < moved) {
                mp->gen[indices[i]] += 2;
            }
        }
    } else {
        CHECK_RC(rc, 5, 0, -EINVAL, -PYSHM_ESTALE, -PYSHM_ECORRUPT, -EAGAIN);
    }
    /* Update what the program holds: returned blocks are gone, the others at their new gen. */
    int drop[MAX_HELD] = {0};
    for (uint64_t i = 0; i < n; i++)
        if (from[i] >= 0)
            settle(from[i], rc, &hp->h, indices[i], gens[i], drop);
    drop_marked(drop);
}

/* Model: a ring enqueue of blocks[0..n) with the given generations. */
static int model_enqueue(struct mring *mq, struct pyshm_held_block *blocks, const uint64_t *gens_in, uint64_t n,
                         uint64_t *moved_out)
{
    *moved_out = 0;
    if (mq->shutdown != PYSHM_RING_OPEN)
        return -ESHUTDOWN;
    uint64_t moved = 0;
    int want = 0;
    for (; moved < n; moved++) {
        struct mpool *mp = mpool_at(blocks[moved].pool->offset);
        ASSERT(mp);
        want = model_check_held(mp, blocks[moved].index, gens_in[moved]);
        if (want < 0)
            break;
    }
    *moved_out = moved;
    if (want < 0)
        return want;
    if (n == 0)
        return 0;
    if (n > mq->capacity || mq->entries.len + n > mq->capacity)
        return -PYSHM_EFULL;
    return 0;
}

static void do_enqueue(struct hring *hq, struct pyshm_held_block *blocks, uint64_t n, const int *from, int burst)
{
    uint64_t gens_in[MAX_BURST];
    for (uint64_t i = 0; i < n; i++)
        gens_in[i] = blocks[i].gen;
    int rc;
    if (!burst) {
        ASSERT(n == 1);
        rc = pyshm_block_ring_enqueue(&hq->h, blocks[0].pool, blocks[0].index, &blocks[0].gen);
    } else {
        rc = pyshm_block_ring_enqueue_burst(&hq->h, blocks, n);
    }
    trace_op("ring_enqueue%s(@%" PRIu64 ", n %" PRIu64 ") = %d", burst ? "_burst" : "", hq->h.offset, n, rc);
    if (!corrupt) {
        struct mring *mq = mring_at(hq->h.offset);
        ASSERT(mq);
        uint64_t moved;
        int want = model_enqueue(mq, blocks, gens_in, n, &moved);
        EXPECT_RC(rc, want);
        for (uint64_t i = 0; i < n; i++) {
            struct mpool *mp = mpool_at(blocks[i].pool->offset);
            int undone = rc < 0 && i < moved;
            EXPECT_RC(blocks[i].gen, gens_in[i] + (undone ? 2 : 0));
            if (rc == 0) {
                mp->kind[blocks[i].index] = PYSHM_BLOCK_IN_RING;
                mp->gen[blocks[i].index]++;
                fifo_push(&mq->entries, (uint64_t)(mp - mpools) << 32 | blocks[i].index);
            } else if (undone) {
                mp->gen[blocks[i].index] += 2;
            }
        }
    } else {
        CHECK_RC(rc, 7, 0, -PYSHM_EFULL, -PYSHM_ESTALE, -ESHUTDOWN, -EINVAL, -PYSHM_ECORRUPT, -ENOMEM);
    }
    int drop[MAX_HELD] = {0};
    for (uint64_t i = 0; i < n; i++)
        if (from[i] >= 0)
            settle(from[i], rc, blocks[i].pool, blocks[i].index, blocks[i].gen, drop);
    drop_marked(drop);
}

static void op_ring_enq(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    uint8_t sel = rd8(rd), variant = rd8(rd);
    if (!hq || n_held == 0)
        return;
    int hi = sel % n_held;
    struct pyshm_held_block b = {held[hi].p, held[hi].index, held[hi].gen};
    if (variant % 4 == 1)
        b.gen--;
    else if (variant % 4 == 2)
        b.gen++;
    else if (variant % 4 == 3)
        b.index += b.pool->count; /* out of range */
    int from = variant % 4 == 0 ? hi : -1;
    do_enqueue(hq, &b, 1, &from, 0);
}

static void op_ring_enq_burst(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    uint64_t want_n = rd8(rd) % MAX_BURST;
    uint8_t start = rd8(rd);
    if (!hq)
        return;
    struct pyshm_held_block blocks[MAX_BURST];
    int from[MAX_BURST];
    uint64_t n = 0;
    for (int k = 0; k < n_held && n < want_n; k++) {
        int i = (start + k) % n_held;
        int dup = 0;
        for (uint64_t j = 0; j < n; j++)
            dup |= blocks[j].pool->offset == held[i].p->offset && blocks[j].index == held[i].index;
        if (dup)
            continue;
        blocks[n] = (struct pyshm_held_block){held[i].p, held[i].index, held[i].gen};
        from[n++] = i;
    }
    do_enqueue(hq, blocks, n, from, 1);
}

/* After a dequeue in the clean phase: the model's head entry, which must be what came out. */
static void model_dequeued(struct mring *mq, const struct pyshm_pool *p, uint64_t index, uint64_t gen)
{
    uint64_t e = fifo_pop(&mq->entries);
    struct mpool *mp = &mpools[e >> 32];
    if (p->offset != mp->h.offset || index != (uint32_t)e)
        FAIL("dequeued block %" PRIu64 " of pool @%" PRIu64 ", the model's head is %u of @%" PRIu64, index,
             p->offset, (uint32_t)e, mp->h.offset);
    model_take(mp, index, gen);
}

static void op_ring_deq(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int owner = pick_region(rd);
    uint64_t min_size = rd16(rd) % 4096;
    if (!hq)
        return;
    struct pyshm_region *r = region_of(owner);
    struct pyshm_taken_block out = {0};
    int rc = pyshm_block_ring_dequeue(&hq->h, r, min_size, &out);
    trace_op("ring_dequeue(@%" PRIu64 ", r%d, min %" PRIu64 ") = %d", hq->h.offset, owner, min_size, rc);
    if (!corrupt) {
        struct mring *mq = mring_at(hq->h.offset);
        ASSERT(mq);
        int want;
        if (mq->shutdown == PYSHM_RING_SHUTDOWN_NOW)
            want = -ESHUTDOWN;
        else if (mq->entries.len == 0)
            want = mq->shutdown ? -ESHUTDOWN : -PYSHM_EEMPTY;
        else
            want = mpools[fifo_at(&mq->entries, 0) >> 32].h.elt_size < min_size ? -PYSHM_ETOOBIG : 0;
        EXPECT_RC(rc, want);
        if (rc == 0)
            model_dequeued(mq, out.pool, out.index, out.gen);
    } else {
        CHECK_RC(rc, 6, 0, -PYSHM_EEMPTY, -PYSHM_ETOOBIG, -PYSHM_ECORRUPT, -ESHUTDOWN, -ENOMEM);
    }
    if (rc == 0) {
        if (!table_has(r, out.pool))
            FAIL("ring_dequeue handed out a block of a pool not in the region's table");
        if (out.pool->elt_size < min_size)
            FAIL("ring_dequeue handed out a block of %" PRIu64 " bytes for min_size %" PRIu64, out.pool->elt_size,
                 min_size);
        check_block(r, out.pool, out.index, out.gen, "ring_dequeue");
        add_held(out.pool, out.index, out.gen);
    }
}

static void op_ring_deq_burst(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int owner = pick_region(rd);
    uint64_t max = rd8(rd) % MAX_BURST;
    if (!hq)
        return;
    struct pyshm_region *r = region_of(owner);
    struct pyshm_taken_block out[MAX_BURST];
    int64_t n = pyshm_block_ring_dequeue_burst(&hq->h, r, out, max);
    trace_op("ring_dequeue_burst(@%" PRIu64 ", r%d, max %" PRIu64 ") = %" PRId64, hq->h.offset, owner, max, n);
    if (!corrupt) {
        struct mring *mq = mring_at(hq->h.offset);
        ASSERT(mq);
        int64_t want;
        if (mq->shutdown == PYSHM_RING_SHUTDOWN_NOW)
            want = -ESHUTDOWN;
        else if (max == 0)
            want = 0;
        else if (mq->entries.len == 0)
            want = mq->shutdown ? -ESHUTDOWN : -PYSHM_EEMPTY;
        else
            want = (int64_t)(max < mq->entries.len ? max : mq->entries.len);
        EXPECT_RC(n, want);
        for (int64_t i = 0; i < n; i++)
            model_dequeued(mq, out[i].pool, out[i].index, out[i].gen);
    } else {
        if (!(n == -PYSHM_EEMPTY || n == -PYSHM_ECORRUPT || n == -ESHUTDOWN || n == -ENOMEM ||
              (n >= 0 && (uint64_t)n <= max)))
            FAIL("ring_dequeue_burst(max %" PRIu64 ") returned %" PRId64, max, n);
    }
    for (int64_t i = 0; i < n; i++) {
        if (!table_has(r, out[i].pool))
            FAIL("ring_dequeue_burst handed out a block of a pool not in the region's table");
        check_block(r, out[i].pool, out[i].index, out[i].gen, "ring_dequeue_burst");
        add_held(out[i].pool, out[i].index, out[i].gen);
    }
}


static void op_ring_drain(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int owner = pick_region(rd);
    if (!hq)
        return;
    int64_t n = pyshm_block_ring_drain(&hq->h, region_of(owner));
    trace_op("ring_drain(@%" PRIu64 ", r%d) = %" PRId64, hq->h.offset, owner, n);
    if (!corrupt) {
        struct mring *mq = mring_at(hq->h.offset);
        ASSERT(mq);
        EXPECT_RC(n, mq->entries.len);
        while (mq->entries.len) {
            uint64_t e = fifo_pop(&mq->entries);
            struct mpool *mp = &mpools[e >> 32];
            uint64_t index = (uint32_t)e;
            ASSERT(mp->kind[index] == PYSHM_BLOCK_IN_RING);
            mp->kind[index] = PYSHM_BLOCK_FREE;
            mp->gen[index] += 2; /* IN_RING -> HELD -> FREE */
            fifo_push(&mp->free, index);
        }
    } else if (!(n >= 0 || n == -PYSHM_ECORRUPT || n == -ENOMEM)) {
        FAIL("ring_drain returned %" PRId64, n);
    }
}

static void op_ring_shutdown(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int immediate = rd8(rd) & 1;
    if (!hq)
        return;
    pyshm_block_ring_shutdown(&hq->h, immediate);
    trace_op("ring_shutdown(@%" PRIu64 ", %d)", hq->h.offset, immediate);
    int want = immediate ? PYSHM_RING_SHUTDOWN_NOW : PYSHM_RING_SHUTDOWN;
    if (!corrupt) {
        struct mring *mq = mring_at(hq->h.offset);
        ASSERT(mq);
        if (mq->shutdown < want)
            mq->shutdown = want;
    }
    /* Whatever the word held: never back to open, never weaker than asked. */
    if ((int)pyshm_block_ring_shutdown_state(&hq->h) < want)
        FAIL("shutdown(%d) left the state at %d", immediate, (int)pyshm_block_ring_shutdown_state(&hq->h));
}

static void op_find_block(struct reader *rd)
{
    int owner = pick_region(rd);
    struct pyshm_region *r = region_of(owner);
    uint64_t offset = pick_value(rd, known_offset(rd));
    const struct pyshm_pool *p = NULL;
    uint64_t index = 0;
    int rc = pyshm_region_find_block(r, offset, &p, &index);
    trace_op("find_block(r%d, %" PRIu64 ") = %d", owner, offset, rc);
    if (!corrupt) {
        int want = -PYSHM_ECORRUPT;
        for (int m = 0; m < n_mpools; m++) {
            const struct pyshm_pool *mp = &mpools[m].h;
            if (offset >= mp->data_offset && offset < mp->data_offset + mp->count * mp->stride &&
                (offset - mp->data_offset) % mp->stride == 0)
                want = 0;
        }
        EXPECT_RC(rc, want);
    } else {
        CHECK_RC(rc, 3, 0, -PYSHM_ECORRUPT, -ENOMEM);
    }
    if (rc == 0) {
        if (!table_has(r, p))
            FAIL("find_block gave a pool not in the region's table");
        check_pool_in_region(r, p);
        if (index >= p->count || pyshm_pool_block_offset(p, index) != offset)
            FAIL("find_block(%" PRIu64 ") gave block %" PRIu64 " of pool @%" PRIu64 " at %" PRIu64, offset, index,
                 p->offset, pyshm_pool_block_offset(p, index));
        if (offset > r->size || p->elt_size > r->size - offset)
            FAIL("find_block(%" PRIu64 "): the block is not inside the region", offset);
    }
}

static void op_find_named(struct reader *rd)
{
    int owner = pick_region(rd);
    const char *name = names[rd8(rd) % N_NAMES];
    if (!name)
        name = "";
    uint32_t kind = 0;
    uint64_t offset = 0;
    int rc = pyshm_region_find_named(region_of(owner), name, &kind, &offset);
    trace_op("find_named(r%d, \"%s\") = %d kind %u @%" PRIu64, owner, name, rc, kind, offset);
    if (!corrupt) {
        int want = -ENOENT;
        const struct mobj *o = NULL;
        for (int i = n_mobjs - 1; i >= 0 && want != 0; i--)
            if (strcmp(mobjs[i].name, name) == 0) {
                want = 0;
                o = &mobjs[i];
            }
        EXPECT_RC(rc, want);
        if (o) {
            EXPECT_RC(offset, o->offset);
            EXPECT_RC(kind, o->type == OBJ_POOL ? PYSHM_KIND_POOL : PYSHM_KIND_RING);
        }
    } else {
        CHECK_RC(rc, 3, 0, -ENOENT, -PYSHM_ECORRUPT);
    }
    if (rc == 0) {
        const struct pyshm_region *r = region_of(owner);
        if (offset % PYSHM_CACHE_LINE != 0 || offset < PYSHM_REGION_HEADER_SIZE || offset > r->size ||
            r->size - offset < sizeof(struct pyshm_object_header))
            FAIL("find_named gave offset %" PRIu64 ", not an object inside the region", offset);
    }
}

static void op_pool_attach(struct reader *rd)
{
    int owner = pick_region(rd);
    struct pyshm_region *r = region_of(owner);
    uint64_t offset = pick_value(rd, known_offset(rd));
    uint8_t add = rd8(rd);
    struct pyshm_pool out;
    int rc = pyshm_pool_attach(r, offset, &out);
    trace_op("pool_attach(r%d, %" PRIu64 ") = %d", owner, offset, rc);
    CHECK_RC(rc, 2, 0, -PYSHM_ECORRUPT);
    if (!corrupt) {
        struct mpool *mp = mpool_at(offset);
        EXPECT_RC(rc, mp ? 0 : -PYSHM_ECORRUPT);
        if (mp)
            ASSERT(out.count == mp->h.count && out.elt_size == mp->h.elt_size && out.stride == mp->h.stride &&
                   out.flags == mp->h.flags && out.data_offset == mp->h.data_offset);
    }
    if (rc < 0)
        return;
    check_pool_in_region(r, &out);
    struct hpool *slot = new_pool_slot(add);
    slot->owner = owner;
    slot->h = out;
    if (add & 1) { /* as the binding does with a pool it opens */
        int arc = pyshm_region_add_pool(r, &out);
        if (!corrupt)
            EXPECT_RC(arc, 0);
        else
            CHECK_RC(arc, 3, 0, -ENOMEM, -PYSHM_ECORRUPT); /* ECORRUPT: overlaps a known pool */
    }
}

static void op_ring_attach(struct reader *rd)
{
    int owner = pick_region(rd);
    struct pyshm_region *r = region_of(owner);
    uint64_t offset = pick_value(rd, known_offset(rd));
    struct pyshm_block_ring out;
    int rc = pyshm_block_ring_attach(r, offset, &out);
    trace_op("ring_attach(r%d, %" PRIu64 ") = %d", owner, offset, rc);
    CHECK_RC(rc, 2, 0, -PYSHM_ECORRUPT);
    if (!corrupt) {
        struct mring *mq = mring_at(offset);
        EXPECT_RC(rc, mq ? 0 : -PYSHM_ECORRUPT);
        if (mq)
            ASSERT(out.ring.capacity == mq->capacity && out.flags == mq->h.flags);
    }
    if (rc < 0)
        return;
    check_ring_in_region(r, &out);
    struct hring *slot = new_ring_slot((uint8_t)offset);
    slot->owner = owner;
    slot->h = out;
}

/* Close the second handle (if open) and attach it again: a fresh process's view. */
static void op_reopen_r2(void)
{
    if (r2_live) {
        /* Handles into r2's mapping die with it; held blocks move to an r1 handle. */
        for (int i = n_held - 1; i >= 0; i--) {
            if (owner_of(held[i].p) != OWNER_R2)
                continue;
            long slot = pyshm_region_pool_slot(&r1, held[i].p->offset);
            if (slot >= 0)
                held[i].p = r1.pools[slot];
            else
                remove_held(i);
        }
        for (int i = 0; i < MAX_HANDLES; i++) {
            if (hpools[i].owner == OWNER_R2)
                hpools[i].owner = OWNER_NONE;
            if (hrings[i].owner == OWNER_R2)
                hrings[i].owner = OWNER_NONE;
        }
        close_region(&r2, &guard2);
        r2_live = 0;
    }
    int fd = dup(r1.fd);
    ASSERT(fd >= 0);
    int rc = pyshm_region_attach_fd(&r2, fd);
    trace_op("attach_fd(r2) = %d", rc);
    if (!corrupt)
        EXPECT_RC(rc, 0);
    else
        CHECK_RC(rc, 4, 0, -PYSHM_ENOTREGION, -PYSHM_EVERSION, -PYSHM_ECORRUPT);
    if (rc < 0)
        return;
    if (r2.size > r2.map_size)
        FAIL("attach_fd: region size %" PRIu64 " beyond the mapping of %" PRIu64, r2.size, r2.map_size);
    guard2 = guard_mapping(&r2);
    r2_live = 1;
}

static void op_reclaim(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    if (!hp)
        return;
    int64_t n = pyshm_pool_reclaim(&hp->h);
    trace_op("pool_reclaim(@%" PRIu64 ") = %" PRId64, hp->h.offset, n);
    if (!corrupt)
        EXPECT_RC(n, 0); /* every holder is this process, alive */
    else if (!(n >= 0 || n == -PYSHM_ECORRUPT))
        FAIL("pool_reclaim returned %" PRId64, n);
    /* The whole repair (repair.h): with every announcer alive it finds nothing to do;
     * over garbage (announcements included) it may act, but must not crash or fail
     * otherwise than as documented. */
    struct pyshm_repair_report rep;
    int rc = pyshm_region_repair(&r1, 0, &rep);
    trace_op("region_repair = %d (entries %" PRIu64 ", holes %" PRIu64 ", released %" PRIu64 ", returned %" PRIu64 ")",
             rc, rep.entries, rep.holes, rep.released, rep.returned);
    if (!corrupt) {
        EXPECT_RC(rc, 0);
        if (rep.entries + rep.holes + rep.released + rep.returned != 0)
            FAIL("region_repair acted with every process alive");
    } else if (!(rc == 0 || rc == -PYSHM_ECORRUPT || rc == -ENOMEM || rc == -EBUSY)) {
        FAIL("region_repair returned %d", rc);
    }
}

/* Writing into a block's data is what blocks are for: not corruption. */
static void op_block_write(struct reader *rd)
{
    uint8_t sel = rd8(rd);
    uint16_t at = rd16(rd);
    uint8_t len = rd8(rd), byte = rd8(rd);
    if (n_held == 0)
        return;
    const struct held *h = &held[sel % n_held];
    const struct pyshm_pool *p = h->p;
    if (h->index >= p->count)
        return;
    uint64_t start = at % p->elt_size, n = len % 64 + 1;
    if (n > p->elt_size - start)
        n = p->elt_size - start;
    memset(p->data + h->index * p->stride + start, byte, n);
}

static void op_counts(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    struct hring *hq = pick_ring(rd);
    if (hp && pyshm_pool_free_count(&hp->h) > hp->h.count)
        FAIL("free count above the pool's count");
    if (hq && pyshm_block_ring_count(&hq->h) > hq->h.ring.capacity)
        FAIL("ring count above its capacity");
}

/* ---- corrupting writes ---- */

static void op_w_region_hdr(struct reader *rd)
{
    static const struct {
        size_t off;
        unsigned width;
        const char *name;
    } f[] = {
        {offsetof(struct pyshm_region_header, magic), 8, "region.magic"},
        {offsetof(struct pyshm_region_header, layout_version), 4, "region.layout_version"},
        {offsetof(struct pyshm_region_header, header_size), 4, "region.header_size"},
        {offsetof(struct pyshm_region_header, size), 8, "region.size"},
        {offsetof(struct pyshm_region_header, carve_end), 8, "region.carve_end"},
        {offsetof(struct pyshm_region_header, objects_head), 8, "region.objects_head"},
        {offsetof(struct pyshm_region_header, reserved), 8, "region.reserved"},
    };
    uint8_t k = rd8(rd) % (sizeof(f) / sizeof(f[0]));
    write_field(rd, r1.base + f[k].off, f[k].width, f[k].name);
}

static void op_w_obj_hdr(struct reader *rd)
{
    uint8_t sel = rd8(rd), k = rd8(rd);
    uint64_t offset;
    if (n_mobjs)
        offset = mobjs[sel % n_mobjs].offset;
    else {
        struct hpool *hp = NULL;
        for (int i = 0; i < MAX_HANDLES && !hp; i++)
            if (hpools[(sel + i) % MAX_HANDLES].owner != OWNER_NONE)
                hp = &hpools[(sel + i) % MAX_HANDLES];
        if (!hp)
            return;
        offset = hp->h.offset;
    }
    if (offset > r1.map_size || r1.map_size - offset < sizeof(struct pyshm_object_header))
        return;
    uint8_t *o = r1.base + offset;
    switch (k % 6) {
    case 0: write_field(rd, o + offsetof(struct pyshm_object_header, magic), 8, "object.magic"); break;
    case 1: write_field(rd, o + offsetof(struct pyshm_object_header, kind), 4, "object.kind"); break;
    case 2: write_field(rd, o + offsetof(struct pyshm_object_header, layout_version), 4, "object.layout_version"); break;
    case 3: write_field(rd, o + offsetof(struct pyshm_object_header, size), 8, "object.size"); break;
    case 4: write_field(rd, o + offsetof(struct pyshm_object_header, next), 8, "object.next"); break;
    default: {
        uint8_t i = rd8(rd) % (PYSHM_NAME_MAX + 1), c = rd8(rd);
        store_field(o + offsetof(struct pyshm_object_header, name) + i, 1, c % 4 == 0 ? 0 : "n0123xyz"[c % 8],
                    "object.name");
    }
    }
}

static void op_w_pool_geom(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    uint8_t k = rd8(rd);
    if (!hp)
        return;
    uint8_t *s = r1.base + hp->h.offset;
    static const struct {
        size_t off;
        const char *name;
    } f[] = {
        {offsetof(struct pyshm_pool_shared, count), "pool.count"},
        {offsetof(struct pyshm_pool_shared, elt_size), "pool.elt_size"},
        {offsetof(struct pyshm_pool_shared, stride), "pool.stride"},
        {offsetof(struct pyshm_pool_shared, flags), "pool.flags"},
        {offsetof(struct pyshm_pool_shared, slots_offset), "pool.slots_offset"},
        {offsetof(struct pyshm_pool_shared, states_offset), "pool.states_offset"},
        {offsetof(struct pyshm_pool_shared, data_offset), "pool.data_offset"},
        {offsetof(struct pyshm_pool_shared, holders_offset), "pool.holders_offset"},
    };
    k %= sizeof(f) / sizeof(f[0]);
    write_field(rd, s + f[k].off, 8, f[k].name);
}

static void op_w_ring_hdr(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    uint8_t k = rd8(rd);
    if (!hq)
        return;
    uint8_t *s = r1.base + hq->h.offset;
    static const struct {
        size_t off;
        const char *name;
    } f[] = {
        {offsetof(struct pyshm_ring_shared, capacity), "ring.capacity"},
        {offsetof(struct pyshm_ring_shared, flags), "ring.flags"},
        {offsetof(struct pyshm_ring_shared, slots_offset), "ring.slots_offset"},
        {offsetof(struct pyshm_ring_shared, shutdown), "ring.shutdown"},
    };
    k %= sizeof(f) / sizeof(f[0]);
    write_field(rd, s + f[k].off, 8, f[k].name);
}

/* The counters of a pool's free queue or of a block ring. */
static struct pyshm_ring *pick_queue(struct reader *rd)
{
    uint8_t which = rd8(rd);
    if (which & 1) {
        struct hring *hq = pick_ring(rd);
        return hq ? &hq->h.ring : NULL;
    }
    struct hpool *hp = pick_pool(rd);
    return hp ? &hp->h.free_queue : NULL;
}

static void op_w_counter(struct reader *rd)
{
    struct pyshm_ring *q = pick_queue(rd);
    uint8_t k = rd8(rd);
    if (!q)
        return;
    struct pyshm_ring_counters *c = q->counters;
    switch (k % 6) {
    case 0: write_field(rd, (void *)&c->enq_pos, 8, "enq_pos"); break;
    case 1: write_field(rd, (void *)&c->deq_pos, 8, "deq_pos"); break;
    case 2: write_field(rd, (void *)&c->not_empty.epoch, 4, "not_empty.epoch"); break;
    case 3: write_field(rd, (void *)&c->not_empty.waiters, 4, "not_empty.waiters"); break;
    case 4: write_field(rd, (void *)&c->not_full.epoch, 4, "not_full.epoch"); break;
    default: write_field(rd, (void *)&c->not_full.waiters, 4, "not_full.waiters"); break;
    }
}

static void op_w_slot(struct reader *rd)
{
    struct pyshm_ring *q = pick_queue(rd);
    uint16_t i = rd16(rd);
    uint8_t k = rd8(rd);
    if (!q)
        return;
    struct pyshm_ring_slot *s = &q->slots[i % q->capacity];
    if (k & 1)
        write_field(rd, (void *)&s->value, 8, "slot.value");
    else
        write_field(rd, (void *)&s->seq, 8, "slot.seq");
}

static void op_w_state(struct reader *rd)
{
    struct hpool *hp = pick_pool(rd);
    uint16_t i = rd16(rd);
    uint8_t k = rd8(rd);
    if (!hp)
        return;
    if (k & 1)
        write_field(rd, (void *)&hp->h.holders[i % hp->h.count], 8, "block.holder");
    else
        write_field(rd, (void *)&hp->h.states[i % hp->h.count], 8, "block.state");
}

static void op_w_raw(struct reader *rd)
{
    uint32_t at = rd32(rd);
    uint8_t len = rd8(rd) % 16 + 1;
    uint64_t limit = r1.size > r1.map_size ? r1.map_size : r1.size;
    uint64_t start = at % limit;
    if (len > limit - start)
        len = (uint8_t)(limit - start);
    uint8_t bytes[16];
    for (uint8_t i = 0; i < len; i++)
        bytes[i] = rd8(rd);
    trace_op("  write raw [%" PRIu64 ", +%u)", start, len);
    memcpy(r1.base + start, bytes, len);
    set_corrupt("raw write");
}

/*
 * Forging a whole object, as a hostile process would: a header consistent in every field
 * the core cross-checks (the pool layout below mirrors mempool.c's), at any 64-aligned
 * offset, of any geometry (so it may overlap live objects or run past the region's end),
 * optionally initialised (free queue full, states FREE) and pushed on the object list.
 * Writes are clipped to the region; fields past its end are simply not written.
 */
static void forge_bytes(uint64_t at, const void *src, uint64_t n)
{
    if (at >= r1.size)
        return;
    if (n > r1.size - at)
        n = r1.size - at;
    memcpy(r1.base + at, src, n);
}
static void forge_u64(uint64_t at, uint64_t v) { forge_bytes(at, &v, 8); }

/* opts & 8: the header lies about its size, claiming just what is left of the region. */
static void forge_object(uint64_t at, uint32_t kind, uint64_t size, uint8_t name, int link, uint8_t opts)
{
    forged[n_forged++ % 8] = at;
    if ((opts & 8) && at < r1.size)
        size = (r1.size - at) & ~(uint64_t)(PYSHM_CACHE_LINE - 1);
    struct pyshm_object_header o;
    memset(&o, 0, sizeof(o));
    o.magic = PYSHM_OBJECT_MAGIC;
    o.kind = kind;
    o.layout_version = PYSHM_LAYOUT_VERSION;
    o.size = size;
    const char *nm = names[name % N_NAMES];
    if (nm && strlen(nm) <= PYSHM_NAME_MAX)
        memcpy(o.name, nm, strlen(nm));
    struct pyshm_region_header *h = (struct pyshm_region_header *)r1.base;
    if (link) {
        o.next = atomic_load_explicit(&h->objects_head, memory_order_relaxed);
        forge_bytes(at, &o, sizeof(o));
        atomic_store_explicit(&h->objects_head, at, memory_order_relaxed);
    } else {
        /* keep the next link that is there */
        o.next = at + sizeof(o) <= r1.size ? ((struct pyshm_object_header *)(r1.base + at))->next : 0;
        forge_bytes(at, &o, sizeof(o));
    }
}

/* A geometry from two bytes and a scale: mostly small, sometimes past any region. */
static uint64_t forged_number(uint16_t v, uint8_t scale) { return (uint64_t)(v ? v : 1) << (scale % 4 == 3 ? scale / 4 % 30 : 0); }

static void op_w_forge_pool(struct reader *rd)
{
    uint64_t at = pick_value(rd, known_offset(rd)) & ~(uint64_t)(PYSHM_CACHE_LINE - 1);
    uint64_t count = forged_number(rd16(rd), rd8(rd)), elt = forged_number(rd16(rd), rd8(rd));
    uint8_t flags = rd8(rd), opts = rd8(rd), name = rd8(rd);
    if (at < PYSHM_REGION_HEADER_SIZE || at >= r1.size)
        return;
    uint64_t stride = elt < PYSHM_CACHE_LINE ? PYSHM_ALIGN_UP(elt, 8) : PYSHM_ALIGN_UP(elt, PYSHM_CACHE_LINE);
    uint64_t slots = sizeof(struct pyshm_pool_shared), states = slots + count * sizeof(struct pyshm_ring_slot);
    uint64_t holders = states + count * 8, data = PYSHM_ALIGN_UP(holders + count * 8, PYSHM_CACHE_LINE);
    uint64_t size = PYSHM_ALIGN_UP(data + count * stride, PYSHM_CACHE_LINE);
    trace_op("  forge pool @%" PRIu64 ": count %" PRIu64 " elt %" PRIu64 " size %" PRIu64 " opts %#x", at, count, elt,
             size, opts);
    set_corrupt("forged pool");
    forge_object(at, PYSHM_KIND_POOL, size, name, opts & 1, opts);
    forge_u64(at + offsetof(struct pyshm_pool_shared, count), count);
    forge_u64(at + offsetof(struct pyshm_pool_shared, elt_size), elt);
    forge_u64(at + offsetof(struct pyshm_pool_shared, stride), stride);
    forge_u64(at + offsetof(struct pyshm_pool_shared, flags), flags & PYSHM_MEMPOOL_FLAGS);
    forge_u64(at + offsetof(struct pyshm_pool_shared, slots_offset), at + slots);
    forge_u64(at + offsetof(struct pyshm_pool_shared, states_offset), at + states);
    forge_u64(at + offsetof(struct pyshm_pool_shared, data_offset), at + data);
    forge_u64(at + offsetof(struct pyshm_pool_shared, holders_offset), at + holders);
    if (opts & 2) { /* a full free queue of every block, all FREE at generation 0 */
        uint64_t c = offsetof(struct pyshm_pool_shared, free_queue);
        forge_u64(at + c + offsetof(struct pyshm_ring_counters, enq_pos), count);
        forge_u64(at + c + offsetof(struct pyshm_ring_counters, deq_pos), 0);
        for (uint64_t i = 0; i < count && at + slots + 16 * i < r1.size; i++) {
            forge_u64(at + slots + 16 * i, pyshm_ring_seq_full(i));
            forge_u64(at + slots + 16 * i + 8, i);
        }
        for (uint64_t i = 0; i < count && at + states + 8 * i < r1.size; i++)
            forge_u64(at + states + 8 * i, pyshm_block_state(0, PYSHM_BLOCK_FREE));
    }
}

static void op_w_forge_ring(struct reader *rd)
{
    uint64_t at = pick_value(rd, known_offset(rd)) & ~(uint64_t)(PYSHM_CACHE_LINE - 1);
    uint64_t cap = forged_number(rd16(rd), rd8(rd));
    uint8_t flags = rd8(rd), opts = rd8(rd), name = rd8(rd);
    if (at < PYSHM_REGION_HEADER_SIZE || at >= r1.size)
        return;
    uint64_t size = PYSHM_ALIGN_UP(sizeof(struct pyshm_ring_shared) + cap * sizeof(struct pyshm_ring_slot), PYSHM_CACHE_LINE);
    trace_op("  forge ring @%" PRIu64 ": capacity %" PRIu64 " size %" PRIu64 " opts %#x", at, cap, size, opts);
    set_corrupt("forged ring");
    forge_object(at, PYSHM_KIND_RING, size, name, opts & 1, opts);
    forge_u64(at + offsetof(struct pyshm_ring_shared, capacity), cap);
    forge_u64(at + offsetof(struct pyshm_ring_shared, flags), flags & PYSHM_RING_FLAGS);
    forge_u64(at + offsetof(struct pyshm_ring_shared, slots_offset), at + sizeof(struct pyshm_ring_shared));
    forge_u64(at + offsetof(struct pyshm_ring_shared, shutdown), opts & 4 ? 1 : 0);
    if (opts & 2) { /* empty, first position 0 */
        uint64_t c = offsetof(struct pyshm_ring_shared, counters);
        forge_u64(at + c + offsetof(struct pyshm_ring_counters, enq_pos), 0);
        forge_u64(at + c + offsetof(struct pyshm_ring_counters, deq_pos), 0);
        for (uint64_t i = 0; i < cap && at + sizeof(struct pyshm_ring_shared) + 16 * i < r1.size; i++)
            forge_u64(at + sizeof(struct pyshm_ring_shared) + 16 * i, pyshm_ring_seq_free(i));
    }
}

static void run_op(struct reader *rd)
{
    uint8_t op = rd8(rd) % OP_COUNT;
    switch (op) {
    case OP_POOL_CREATE: op_pool_create(rd); break;
    case OP_RING_CREATE: op_ring_create(rd); break;
    case OP_POOL_GET: op_pool_get(rd); break;
    case OP_POOL_GET_BURST: op_pool_get_burst(rd); break;
    case OP_POOL_PUT: op_pool_put(rd); break;
    case OP_POOL_PUT_BURST: op_pool_put_burst(rd); break;
    case OP_RING_ENQ: op_ring_enq(rd); break;
    case OP_RING_ENQ_BURST: op_ring_enq_burst(rd); break;
    case OP_RING_DEQ: op_ring_deq(rd); break;
    case OP_RING_DEQ_BURST: op_ring_deq_burst(rd); break;
    case OP_RING_DRAIN: op_ring_drain(rd); break;
    case OP_RING_SHUTDOWN: op_ring_shutdown(rd); break;
    case OP_FIND_BLOCK: op_find_block(rd); break;
    case OP_FIND_NAMED: op_find_named(rd); break;
    case OP_POOL_ATTACH: op_pool_attach(rd); break;
    case OP_RING_ATTACH: op_ring_attach(rd); break;
    case OP_REOPEN_R2: op_reopen_r2(); break;
    case OP_RECLAIM: op_reclaim(rd); break;
    case OP_BLOCK_WRITE: op_block_write(rd); break;
    case OP_COUNTS: op_counts(rd); break;
    case OP_W_REGION_HDR: op_w_region_hdr(rd); break;
    case OP_W_OBJ_HDR: op_w_obj_hdr(rd); break;
    case OP_W_POOL_GEOM: op_w_pool_geom(rd); break;
    case OP_W_COUNTER: op_w_counter(rd); break;
    case OP_W_SLOT: op_w_slot(rd); break;
    case OP_W_STATE: op_w_state(rd); break;
    case OP_W_RAW: op_w_raw(rd); break;
    case OP_W_RING_HDR: op_w_ring_hdr(rd); break;
    case OP_W_FORGE_POOL: op_w_forge_pool(rd); break;
    case OP_W_FORGE_RING: op_w_forge_ring(rd); break;
    }
    check_tables();
    model_check();
}

/* A bound on the work one input can ask for: each op is bounded, so is the program. */
#define MAX_OPS 400

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    static uint64_t budget_ns = 1000 * UINT64_C(1000000);
    if (!initialized) {
        const char *t = getenv("FUZZ_TRACE");
        trace = t && *t && *t != '0';
        const char *b = getenv("FUZZ_BUDGET_MS");
        if (b && *b)
            budget_ns = strtoull(b, NULL, 10) * UINT64_C(1000000);
        initialized = 1;
    }
    uint64_t started = pyshm_now_ns();
    struct reader rd = {data, size};
    uint64_t region_size = (uint64_t)rd16(&rd) + 1;

    int rc = pyshm_region_create(&r1, region_size);
    if (rc < 0)
        FAIL("region_create(%" PRIu64 ") = %d", region_size, rc);
    ASSERT(r1.fd >= 0);
    guard1 = guard_mapping(&r1);
    trace_op("region_create(%" PRIu64 ")", region_size);
    corrupt = 0;
    /* The announcement table is carved by the first queue operation; carve it now (when
     * it fits) so that the carve model starts after it. */
    pyshm_announcer_take(&r1.announcer);
    model_carve_end = atomic_load_explicit(&((struct pyshm_region_header *)r1.base)->carve_end, memory_order_relaxed);
    r2_live = 0;
    n_held = 0;
    n_forged = 0;
    memset(hpools, 0, sizeof(hpools));
    memset(hrings, 0, sizeof(hrings));
    op_reopen_r2();

    for (op_number = 0; rd.n > 0 && op_number < MAX_OPS; op_number++) {
        if (budget_ns && pyshm_now_ns() - started > budget_ns) {
            trace_op("(time budget spent: the rest of the program is not run)");
            break;
        }
        run_op(&rd);
    }

    if (r2_live)
        close_region(&r2, &guard2);
    r2_live = 0;
    close_region(&r1, &guard1);
    model_free_all();
    n_held = 0;
    return 0;
}
