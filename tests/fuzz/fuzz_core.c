/*
 * fuzz_core.c - a libFuzzer harness over the C core (src/core), see tests/fuzz/run.sh.
 *
 * Each input is a program: a region size, then a sequence of operations. Operations are
 * the core's API, each run through a struct pyshm_space as the binding does:
 *
 *   - objects: pools, Rings and raw buffers, created by either of two spaces on the same
 *     region (s1, the creator, and s2, a second handle through a dup of the fd, as another
 *     process would have; s2 can be closed and attached again at any time);
 *   - pool gets and puts, Ring enqueues, dequeues (with a minimum size), drains and
 *     shutdowns, singles and bursts, through the membership of s1 or s2, with variants
 *     that must be refused (stale generations, blocks of another pool or member, out of
 *     range, the same block twice);
 *   - attaches of pools, Rings and raw buffers and pool-table lookups at arbitrary
 *     offsets, lookups by name;
 *   - "ghosts": further spaces that join, get blocks, and stop at any step of a get, put,
 *     enqueue or dequeue (calling the steps of mempool.c themselves: claim, take, release /
 *     claim, stage, move the state, publish), or announce a claim and never make it; then
 *     stay stalled (alive, in the way) or die (their lock description goes, their entry
 *     stays, as after SIGKILL) or leave cleanly;
 *   - repairs (pyshm_repair) by s1 or s2;
 *   - fast-forwarding a queue still in its first state to just below 2^64 (power-of-two
 *     capacities), with what a long history would also leave (a pool marked lapped);
 *
 * mixed with writes into the shared memory that a faulty or hostile process could make:
 * the region header, member table entries (owner words, announcements, held counts,
 * identities), object headers, pool geometry, Ring and raw buffer headers, queue counters
 * and waitpoints, slots (sequence words and values), block states and holder words, any
 * byte, and whole forged pool and Ring headers, consistent in every cross-checked field,
 * anywhere in the region.
 *
 * Two levels of checking:
 *
 *  - Always, however the memory was corrupted: no crash, no sanitizer report, no hang, only
 *    documented return codes, and every block the core hands out (get, dequeue, ghost
 *    takes, pool-table lookups) lies inside the region, inside a validated pool's data
 *    area, on a stride boundary. Every pool in a space's table lies wholly inside that
 *    region and no two overlap; every Ring and raw buffer handle lies inside the region.
 *
 *  - While the program has made no corrupting write (the "clean" phase), a model of the
 *    whole region predicts every result exactly: every queue is mirrored slot by slot (the
 *    position each slot serves and its phase, ring.h), so FIFO order, full and empty,
 *    partial claims left by ghosts and what they block are all predicted; every block's
 *    state, generation and holder word; every member entry (owner word, held count,
 *    announcement); carve end, names, shutdown states; each repair's report. The one
 *    freedom the model allows: the order in which one repair puts a dead member's blocks
 *    back into a free queue (repair.h does not specify it) - those positions hold "one of
 *    this set", and each block of the set must come out exactly once. Writing into a
 *    block's data or a raw buffer is not corruption and keeps the program clean. A few
 *    outcomes the model does not predict (a repair whose puts would meet a queue blocked
 *    by a stalled ghost; the same block twice in one call, a caller error the binding
 *    refuses) end the clean phase before the call, like a corrupting write.
 *
 * The region is created per input (memfd, as the binding does), and every space's mapping
 * is moved between guard pages, so an access past the mapping faults.
 *
 * Input format (little-endian; reads past the end give zeros and end the program):
 *   u16 size code             region size: 4096 + v for v < 32768, else 4096 + 64 (v - 32768)
 *   then ops: u8 opcode (mod OP_COUNT) followed by its arguments (see run_op).
 *
 * Time. Under corruption some core calls legitimately take long: a claim retries up to
 * PYSHM_RING_MAX_RETRIES (2^20) times before it reports corruption (about 10 ms in this
 * instrumented build), and a drain does that capacity + 1 times (Ring capacities here stay
 * at most 128); a repair's put that meets a blocked free queue waits 200 ms. Each queue is
 * let spin once per input (spin_guard); and so that a slow input does not stall the
 * fuzzer, a program stops issuing operations once it has run FUZZ_BUDGET_MS milliseconds
 * (environment, default 500; 0 for no limit, e.g. to replay a crash exactly).
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
#include "errors.h"
#include "member.h"
#include "mempool.h"
#include "pool_table.h"
#include "queue.h"
#include "rawbuf.h"
#include "region.h"
#include "repair.h"
#include "ring.h"
#include "space.h"
#include "wait.h"

/* The harness's own bookkeeping and checks: no coverage feedback needed there (comparison
 * tracing of its loops over every member entry and block would cost most of the time). */
#if defined(__clang__)
#define HARNESS __attribute__((no_sanitize("coverage")))
#else
#define HARNESS
#endif

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
#define EXPECT_EQ(got, want)                                                                      \
    do {                                                                                          \
        long long got_ = (long long)(got), want_ = (long long)(want);                             \
        if (got_ != want_)                                                                        \
            FAIL("%s is %lld, the model expected %lld", #got, got_, want_);                       \
    } while (0)

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
/* spaces: s1, s2 and ghosts, each between guard pages                                    */

#define PAGE 4096u
#define MAX_GHOSTS 4
#define NSPACES (2 + MAX_GHOSTS)
enum { S1 = 0, S2 = 1, G0 = 2 };
enum { GHOST_NONE, GHOST_LIVE, GHOST_STALLED };

struct fspace {
    struct pyshm_space s;
    int open;
    int ghost; /* for ghosts: GHOST_* */
    uint8_t *guard;
};
static struct fspace sp[NSPACES];

/* Move a space's mapping between two PROT_NONE pages so that any access past either end
 * faults. Done right after create / attach, before anything points into the mapping. */
static void guard_mapping(struct fspace *f)
{
    struct pyshm_region *r = &f->s.region;
    size_t total = r->map_size + 2 * PAGE;
    uint8_t *res = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        FAIL("mmap reservation: %s", strerror(errno));
    if (mmap(res + PAGE, r->map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd, 0) == MAP_FAILED)
        FAIL("mmap into reservation: %s", strerror(errno));
    munmap(r->base, r->map_size);
    r->base = res + PAGE;
    f->s.members.table = pyshm_region_members(r);
    f->guard = res;
}

static void close_space(struct fspace *f)
{
    uint64_t map_size = f->s.region.map_size;
    pyshm_space_close(&f->s); /* unmaps the middle */
    if (f->guard) {
        munmap(f->guard, PAGE);
        munmap(f->guard + PAGE + map_size, PAGE);
    }
    f->guard = NULL;
    f->open = 0;
    f->ghost = GHOST_NONE;
}

static uint8_t *base1(void) { return sp[S1].s.region.base; }
static uint64_t region_end(void) { return PYSHM_OBJECTS_OFFSET + sp[S1].s.region.size; }

/* ------------------------------------------------------------------------------------ */
/* the model of a clean region                                                            */

static int corrupt; /* a corrupting write happened: from then on only the safety checks */

static void set_corrupt(const char *why)
{
    if (!corrupt)
        trace_op("  (model off from here: %s)", why);
    corrupt = 1;
}

#define MAX_MODEL 16
#define MAX_BATCHES 32
#define MAX_BATCH 512
#define VHOLE PYSHM_QUEUE_HOLE

/* A set of values, one of which each of some positions holds (a repair's returns). */
struct batch {
    uint64_t v[MAX_BATCH];
    int n;
};
static struct batch batches[MAX_BATCHES];
static int n_batches;

/* One slot of a queue, as ring.h defines it: the position it serves and its phase. */
struct mslot {
    uint64_t pos;
    uint8_t phase;
    uint64_t value;
    int batch; /* > 0: the value is "one of batches[batch - 1]" */
};

struct mqueue {
    uint64_t id, cap, enq, deq;
    struct mslot *slot;
    int pool; /* the model pool of a free queue, -1 for a Ring */
};

struct mpool {
    uint64_t offset, count, elt, stride, data_offset;
    uint32_t flags;
    struct mqueue q;
    uint8_t *kind;
    uint64_t *gen, *holder;
};
struct mring {
    uint64_t offset, cap;
    uint32_t flags;
    int shutdown;
    struct mqueue q;
};
enum { OBJ_POOL, OBJ_RING, OBJ_RAW };
struct mobj {
    int type, id;
    uint64_t offset, size;
    char name[PYSHM_NAME_MAX + 1];
};
/* A member entry. */
struct mentry {
    int owned;
    uint64_t inc;
    int space;            /* whose entry (index into sp[]) while its owner is open, else -1 */
    uint64_t held;        /* the entry's held counter, exactly as the core keeps it */
    uint64_t what, pos, n; /* announcement */
    int midwrite;          /* its owner died between the two stores of its seqlock */
};

static uint64_t model_carve_end;
static struct mpool mpools[MAX_MODEL];
static int n_mpools;
static struct mring mrings[MAX_MODEL];
static int n_mrings;
static struct mobj mobjs[3 * MAX_MODEL]; /* in publication order */
static int n_mobjs;
#define NENT ((int)PYSHM_MEMBER_ENTRIES)
static struct mentry ment[PYSHM_MEMBER_ENTRIES];

static struct mslot *mq_slot(struct mqueue *q, uint64_t pos) { return &q->slot[pos % q->cap]; }

static void mq_init(struct mqueue *q, uint64_t id, uint64_t cap, int start_full, int pool)
{
    q->id = id;
    q->cap = cap;
    q->pool = pool;
    q->slot = calloc(cap, sizeof(*q->slot));
    ASSERT(q->slot);
    q->deq = 0;
    q->enq = start_full ? cap : 0;
    for (uint64_t i = 0; i < cap; i++) {
        q->slot[i].pos = i;
        q->slot[i].phase = start_full ? PYSHM_RING_FULL : PYSHM_RING_EMPTY;
        q->slot[i].value = start_full ? i : 0;
    }
}

/* Slots ready for producers at enq: n in a row? */
HARNESS static int mq_enq_ready(struct mqueue *q, uint64_t n)
{
    for (uint64_t j = 0; j < n; j++) {
        struct mslot *s = mq_slot(q, q->enq + j);
        if (s->pos != q->enq + j || s->phase != PYSHM_RING_EMPTY)
            return 0;
    }
    return 1;
}

/* Slots ready for consumers at deq, up to max. */
HARNESS static uint64_t mq_deq_run(struct mqueue *q, uint64_t max)
{
    uint64_t j = 0;
    for (; j < max; j++) {
        struct mslot *s = mq_slot(q, q->deq + j);
        if (s->pos != q->deq + j || s->phase != PYSHM_RING_FULL)
            break;
    }
    return j;
}

static uint64_t mq_count(const struct mqueue *q)
{
    int64_t used = (int64_t)(q->enq - q->deq);
    return used < 0 ? 0 : (uint64_t)used > q->cap ? q->cap : (uint64_t)used;
}

static void mq_release(struct mqueue *q, uint64_t pos)
{
    struct mslot *s = mq_slot(q, pos);
    s->pos = pos + q->cap;
    s->phase = PYSHM_RING_EMPTY;
    s->value = 0;
    s->batch = 0;
}

static struct mpool *mpool_at(uint64_t offset)
{
    for (int i = 0; i < n_mpools; i++)
        if (mpools[i].offset == offset)
            return &mpools[i];
    return NULL;
}
static struct mring *mring_at(uint64_t offset)
{
    for (int i = 0; i < n_mrings; i++)
        if (mrings[i].offset == offset)
            return &mrings[i];
    return NULL;
}
static struct mqueue *mqueue_by_id(uint64_t id)
{
    for (int i = 0; i < n_mpools; i++)
        if (mpools[i].q.id == id)
            return &mpools[i].q;
    for (int i = 0; i < n_mrings; i++)
        if (mrings[i].q.id == id)
            return &mrings[i].q;
    return NULL;
}
/* The model block a Ring value (a block offset) names: 0 with pool and index, or -1. */
static int mblock_of_offset(uint64_t off, struct mpool **mp, uint64_t *index)
{
    for (int i = 0; i < n_mpools; i++) {
        struct mpool *p = &mpools[i];
        if (off >= p->data_offset && off < p->data_offset + p->count * p->stride &&
            (off - p->data_offset) % p->stride == 0) {
            *mp = p;
            *index = (off - p->data_offset) / p->stride;
            return 0;
        }
    }
    return -1;
}

static void model_free_all(void)
{
    for (int i = 0; i < n_mpools; i++) {
        free(mpools[i].q.slot);
        free(mpools[i].kind);
        free(mpools[i].gen);
        free(mpools[i].holder);
    }
    for (int i = 0; i < n_mrings; i++)
        free(mrings[i].q.slot);
    n_mpools = n_mrings = n_mobjs = n_batches = 0;
    memset(ment, 0, sizeof(ment));
    for (int i = 0; i < NENT; i++)
        ment[i].space = -1;
}

/* A value just taken from position pos of q: the model's, or (batch) one of its set. */
static void model_check_taken(struct mqueue *q, uint64_t pos, uint64_t got)
{
    struct mslot *s = mq_slot(q, pos);
    if (!s->batch) {
        if (s->value != got)
            FAIL("queue %#" PRIx64 " position %" PRIu64 ": value %#" PRIx64 ", the model's is %#" PRIx64, q->id, pos, got,
                 s->value);
        return;
    }
    struct batch *b = &batches[s->batch - 1];
    for (int i = 0; i < b->n; i++)
        if (b->v[i] == got) {
            b->v[i] = b->v[--b->n];
            return;
        }
    FAIL("queue %#" PRIx64 " position %" PRIu64 ": value %#" PRIx64 " is none of the blocks a repair put back", q->id,
         pos, got);
}

/* The member entry of a space, in the model, or -1. */
HARNESS static int ment_of_space(int spid)
{
    for (int i = 0; i < NENT; i++)
        if (ment[i].owned && ment[i].space == spid)
            return i;
    return -1;
}
static uint64_t mholder(int i) { return pyshm_holder_word(ment[i].inc, (uint32_t)i); }

/* Every block state word and every count the model knows must match memory. */
HARNESS static uint64_t owner_word_of(int i)
{
    const struct mentry *e = &ment[i];
    return e->owned ? e->inc << 3 | PYSHM_OWNER_READY | PYSHM_OWNER_OWNED : e->inc << 3;
}

HARNESS static void check_mqueue(const struct pyshm_queue *hq, struct mqueue *q)
{
    EXPECT_EQ(pyshm_ring_head(&hq->ring, PYSHM_RING_ENQ, memory_order_relaxed), q->enq);
    EXPECT_EQ(pyshm_ring_head(&hq->ring, PYSHM_RING_DEQ, memory_order_relaxed), q->deq);
    EXPECT_EQ(pyshm_queue_count(hq), mq_count(q));
    for (uint64_t i = 0; i < q->cap; i++) {
        const struct mslot *s = &q->slot[i];
        uint64_t stored = atomic_load_explicit(&hq->ring.slots[i].seq, memory_order_relaxed);
        uint64_t seq = pyshm_ring_seq_decode(&hq->ring, i, stored); /* slot i serves s->pos */
        if (seq != pyshm_ring_seq(s->pos, (enum pyshm_ring_phase)s->phase))
            FAIL("queue %#" PRIx64 " slot %" PRIu64 ": sequence word %#" PRIx64 ", the model's is position %" PRIu64
                 " phase %d",
                 q->id, i, seq, s->pos, s->phase);
        if ((s->phase == PYSHM_RING_FULL || s->phase == PYSHM_RING_STAGED) && !s->batch &&
            pyshm_queue_value(hq, s->pos) != s->value)
            FAIL("queue %#" PRIx64 " slot %" PRIu64 ": value %#" PRIx64 ", the model's is %#" PRIx64, q->id, i,
                 pyshm_queue_value(hq, s->pos), s->value);
    }
}

HARNESS static void model_check(void)
{
    if (corrupt)
        return;
    const struct pyshm_space *s1 = &sp[S1].s;
    for (int m = 0; m < n_mpools; m++) {
        struct mpool *mp = &mpools[m];
        struct pyshm_pool h;
        EXPECT_EQ(pyshm_pool_attach(&s1->region, mp->offset, &h), 0);
        for (uint64_t i = 0; i < mp->count; i++) {
            uint64_t st = atomic_load_explicit(&h.words[i].state, memory_order_relaxed);
            if (st != pyshm_block_state(mp->gen[i], (enum pyshm_block_kind)mp->kind[i]))
                FAIL("pool @%" PRIu64 " block %" PRIu64 ": state %#" PRIx64 ", the model's is kind %d gen %" PRIu64,
                     mp->offset, i, st, mp->kind[i], mp->gen[i]);
            if (mp->kind[i] == PYSHM_BLOCK_HELD &&
                atomic_load_explicit(&h.words[i].holder, memory_order_relaxed) != mp->holder[i])
                FAIL("pool @%" PRIu64 " block %" PRIu64 ": holder %#" PRIx64 ", the model's is %#" PRIx64, mp->offset, i,
                     atomic_load_explicit(&h.words[i].holder, memory_order_relaxed), mp->holder[i]);
        }
        check_mqueue(&h.free_queue, &mp->q);
    }
    for (int r = 0; r < n_mrings; r++) {
        struct mring *mr = &mrings[r];
        struct pyshm_block_ring h;
        EXPECT_EQ(pyshm_block_ring_attach(&s1->region, mr->offset, &h), 0);
        check_mqueue(&h.queue, &mr->q);
        EXPECT_EQ(pyshm_block_ring_shutdown_state(&h), mr->shutdown);
    }
    for (int i = 0; i < NENT; i++) {
        const struct pyshm_member_entry *e = &s1->members.table->entry[i];
        if (atomic_load_explicit(&e->owner, memory_order_relaxed) != owner_word_of(i))
            FAIL("member entry %d: owner word %#" PRIx64 ", the model's is %#" PRIx64, i,
                 atomic_load_explicit(&e->owner, memory_order_relaxed), owner_word_of(i));
        if (!ment[i].owned || ment[i].midwrite)
            continue;
        struct pyshm_announcement a;
        if (!pyshm_member_read(e, &a, 1))
            FAIL("member entry %d: announcement mid-write", i);
        if (a.what != ment[i].what || (a.what && (a.pos != ment[i].pos || a.n != ment[i].n)))
            FAIL("member entry %d: announces %#" PRIx64 " %" PRIu64 "+%" PRIu64 ", the model %#" PRIx64 " %" PRIu64
                 "+%" PRIu64,
                 i, a.what, a.pos, a.n, ment[i].what, ment[i].pos, ment[i].n);
        EXPECT_EQ(atomic_load_explicit(&e->held, memory_order_relaxed), ment[i].held);
    }
    uint64_t carve_end = atomic_load_explicit(&((struct pyshm_region_header *)base1())->carve_end, memory_order_relaxed);
    EXPECT_EQ(carve_end, model_carve_end);
}

/* ------------------------------------------------------------------------------------ */
/* handles the program holds                                                              */

#define MAX_HANDLES 16
#define MAX_HELD 160
#define MAX_BURST 80
#define PATIENCE_NS 0 /* puts give up at once when the free queue reads full */

struct hring {
    int owner; /* S1 / S2, or -1 */
    struct pyshm_block_ring h;
};
struct hraw {
    int owner;
    struct pyshm_rawbuf h;
};
/* A block the program knows of: taken by some member, through a pool of some space's
 * table (b.pool points into that table). It may since have moved on (a stale copy). */
struct held {
    struct pyshm_block b;
    int table; /* the space whose table b.pool is in */
};

static struct hring hrings[MAX_HANDLES];
static struct hraw hraws[MAX_HANDLES];
static struct held held[MAX_HELD];
static int n_held;

static int open_space(int want)
{
    return sp[want].open ? want : S1;
}

static int pick_space(struct reader *rd) { return open_space(rd8(rd) & 1); }

/* A pool of the table of s1 or s2. */
static const struct pyshm_pool *pick_pool(struct reader *rd, int *table)
{
    uint8_t sel = rd8(rd);
    for (int k = 0; k < 2; k++) {
        int s = open_space((sel + k) & 1);
        const struct pyshm_pool_table *t = &sp[s].s.pools;
        if (t->count) {
            *table = s;
            return t->pools[(sel >> 1) % t->count];
        }
    }
    return NULL;
}

static struct hring *pick_ring(struct reader *rd)
{
    uint8_t sel = rd8(rd);
    int live = 0;
    for (int i = 0; i < MAX_HANDLES; i++)
        live += hrings[i].owner >= 0;
    if (!live)
        return NULL;
    int want = sel % live;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hrings[i].owner >= 0 && want-- == 0)
            return &hrings[i];
    return NULL;
}

static struct hraw *pick_raw(struct reader *rd)
{
    uint8_t sel = rd8(rd);
    int live = 0;
    for (int i = 0; i < MAX_HANDLES; i++)
        live += hraws[i].owner >= 0;
    if (!live)
        return NULL;
    int want = sel % live;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hraws[i].owner >= 0 && want-- == 0)
            return &hraws[i];
    return NULL;
}

static void add_ring(int owner, const struct pyshm_block_ring *h, uint8_t sel)
{
    struct hring *slot = NULL;
    for (int i = 0; i < MAX_HANDLES && !slot; i++)
        if (hrings[i].owner < 0)
            slot = &hrings[i];
    if (!slot)
        slot = &hrings[sel % MAX_HANDLES];
    slot->owner = owner;
    slot->h = *h;
}

static void add_raw(int owner, const struct pyshm_rawbuf *h, uint8_t sel)
{
    struct hraw *slot = NULL;
    for (int i = 0; i < MAX_HANDLES && !slot; i++)
        if (hraws[i].owner < 0)
            slot = &hraws[i];
    if (!slot)
        slot = &hraws[sel % MAX_HANDLES];
    slot->owner = owner;
    slot->h = *h;
}

static void add_held(const struct pyshm_block *b, int table)
{
    struct held h = {*b, table};
    if (n_held < MAX_HELD)
        held[n_held++] = h;
    else
        held[b->index % MAX_HELD] = h; /* forgotten: the block stays held, as a leak would */
}

/* The space s is about to close: move what points into its table or mapping elsewhere. */
static void forget_space(int s)
{
    for (int i = n_held - 1; i >= 0; i--) {
        if (held[i].table != s)
            continue;
        const struct pyshm_pool *p = NULL;
        if (pyshm_pool_table_add(&sp[S1].s.pools, &sp[S1].s.region, held[i].b.pool->offset, &p) == 0) {
            held[i].b.pool = p;
            held[i].table = S1;
        } else {
            held[i] = held[--n_held];
        }
    }
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (hrings[i].owner == s)
            hrings[i].owner = -1;
        if (hraws[i].owner == s)
            hraws[i].owner = -1;
    }
}

/* ------------------------------------------------------------------------------------ */
/* the invariants that hold under any corruption                                          */

HARNESS static void check_pool_in_region(const struct pyshm_region *r, const struct pyshm_pool *p)
{
    uint64_t fp;
    if (pyshm_pool_footprint(p->count, p->elt_size, &fp) < 0)
        FAIL("a validated pool with an invalid geometry: count %" PRIu64 " elt_size %" PRIu64, p->count, p->elt_size);
    if (p->offset % PYSHM_CACHE_LINE != 0 || !pyshm_region_contains(r, p->offset, fp))
        FAIL("pool @%" PRIu64 " (footprint %" PRIu64 ") is not inside the region of %" PRIu64 " bytes", p->offset, fp,
             r->size);
    ASSERT(PYSHM_OBJECTS_OFFSET + r->size <= r->map_size);
    ASSERT(p->stride >= p->elt_size && p->stride % 8 == 0);
    ASSERT(p->data_offset > p->offset && p->data_offset % PYSHM_CACHE_LINE == 0);
    ASSERT(p->data_offset + p->count * p->stride <= p->offset + fp);
    ASSERT(p->data == r->base + p->data_offset);
    const uint8_t *lo = r->base + p->offset + sizeof(struct pyshm_pool_shared);
    ASSERT((const uint8_t *)p->free_queue.ring.slots >= lo);
    ASSERT((const uint8_t *)(p->free_queue.ring.slots + p->count) <= (const uint8_t *)p->words);
    ASSERT((const uint8_t *)(p->words + p->count) <= p->data);
    ASSERT((const uint8_t *)p->free_queue.shared == r->base + p->offset + offsetof(struct pyshm_pool_shared, free_queue));
    ASSERT(p->free_queue.ring.capacity == p->count && p->free_queue.ring.start_full);
}

HARNESS static void check_ring_in_region(const struct pyshm_region *r, const struct pyshm_block_ring *q)
{
    uint64_t fp;
    ASSERT(pyshm_block_ring_footprint(q->queue.ring.capacity, &fp) == 0);
    ASSERT(q->offset % PYSHM_CACHE_LINE == 0 && pyshm_region_contains(r, q->offset, fp));
    ASSERT((const uint8_t *)q->queue.ring.slots == r->base + q->offset + sizeof(struct pyshm_block_ring_shared));
    ASSERT((const uint8_t *)(q->queue.ring.slots + q->queue.ring.capacity) <= r->base + q->offset + fp);
    ASSERT((const uint8_t *)q->queue.shared == r->base + q->offset + offsetof(struct pyshm_block_ring_shared, queue));
    ASSERT(!q->queue.ring.start_full);
}

HARNESS static void check_raw_in_region(const struct pyshm_region *r, const struct pyshm_rawbuf *b)
{
    uint64_t fp;
    ASSERT(pyshm_rawbuf_footprint(b->size, &fp) == 0);
    ASSERT(b->offset % PYSHM_CACHE_LINE == 0 && pyshm_region_contains(r, b->offset, fp));
    ASSERT(b->data == r->base + b->offset + sizeof(struct pyshm_rawbuf_shared));
}

/* Every pool a space has validated lies in its region, and no two overlap. */
HARNESS static void check_table(const struct pyshm_space *s)
{
    const struct pyshm_pool_table *t = &s->pools;
    for (size_t i = 0; i < t->count; i++) {
        const struct pyshm_pool *a = t->pools[i];
        check_pool_in_region(&s->region, a);
        uint64_t fa, fb;
        ASSERT(pyshm_pool_footprint(a->count, a->elt_size, &fa) == 0);
        for (size_t j = 0; j < i; j++) {
            const struct pyshm_pool *b = t->pools[j];
            ASSERT(pyshm_pool_footprint(b->count, b->elt_size, &fb) == 0);
            if (a->offset < b->offset + fb && b->offset < a->offset + fa)
                FAIL("a pool table holds overlapping pools [%" PRIu64 ", +%" PRIu64 ") and [%" PRIu64 ", +%" PRIu64 ")",
                     a->offset, fa, b->offset, fb);
        }
    }
}

HARNESS static void check_tables(void)
{
    for (int s = 0; s < NSPACES; s++)
        if (sp[s].open)
            check_table(&sp[s].s);
}

HARNESS static int table_has(const struct pyshm_space *s, const struct pyshm_pool *p)
{
    for (size_t i = 0; i < s->pools.count; i++)
        if (s->pools.pools[i] == p)
            return 1;
    return 0;
}

/* A block just handed out through space s: of a pool in s's table, inside the region, in
 * the pool's data area, on a stride boundary. */
static void check_block(const struct pyshm_space *s, const struct pyshm_block *b, const char *what)
{
    if (!table_has(s, b->pool))
        FAIL("%s: a block of a pool not in the space's table", what);
    const struct pyshm_pool *p = b->pool;
    check_pool_in_region(&s->region, p);
    if (b->index >= p->count)
        FAIL("%s: index %" PRIu64 " of a pool of %" PRIu64, what, b->index, p->count);
    uint64_t off = pyshm_pool_block_offset(p, b->index);
    if (off < p->data_offset || (off - p->data_offset) % p->stride != 0 ||
        off + p->stride > p->data_offset + p->count * p->stride)
        FAIL("%s: block offset %" PRIu64 " is not on a stride boundary of the data area", what, off);
    if (!pyshm_region_contains(&s->region, off, p->elt_size))
        FAIL("%s: block [%" PRIu64 ", +%" PRIu64 ") is not inside the region", what, off, p->elt_size);
}

/* ------------------------------------------------------------------------------------ */
/* claims that would spin                                                                 */

/* A claim meeting a sequence word ahead of its position retries PYSHM_RING_MAX_RETRIES
 * times (ring.h) before it reports corruption: about 10 ms here, and a drain does that
 * capacity + 1 times. That path is exercised once per queue and input; later operations
 * that would spin on the same queue are skipped, so that corrupted programs do not spend
 * their whole time budget there. The prediction reads what the claim reads. */
#define MAX_SPUN 32
static uint64_t spun[MAX_SPUN];
static int n_spun;

HARNESS static int would_spin(const struct pyshm_ring *r, enum pyshm_ring_side side, uint64_t min, uint64_t max)
{
    uint64_t pos = pyshm_ring_head(r, side, memory_order_relaxed);
    enum pyshm_ring_phase want = pyshm_ring_ready_phase(side);
    if (max > r->capacity)
        max = r->capacity;
    for (uint64_t k = 0; k < max; k++) {
        int64_t d = pyshm_ring_distance(r, pos + k, want);
        if (d != 0)
            return k < min && d > 0;
    }
    return 0;
}

/* 1: skip the operation (it would spin on a queue that already did). */
static int spin_guard(const struct pyshm_queue *q, enum pyshm_ring_side side, uint64_t min, uint64_t max)
{
    if (!corrupt || !would_spin(&q->ring, side, min ? min : 1, max ? max : 1))
        return 0;
    for (int i = 0; i < n_spun; i++)
        if (spun[i] == q->id) {
            trace_op("  (skipped: would spin on queue %#" PRIx64 " again)", q->id);
            return 1;
        }
    if (n_spun < MAX_SPUN)
        spun[n_spun++] = q->id;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* members                                                                                */

/* Space s's membership, joining if needed (the model predicts the entry). NULL on failure. */
static struct pyshm_member *member_of(int s)
{
    struct pyshm_space *space = &sp[s].s;
    if (pyshm_member_is_current(&space->self))
        return &space->self;
    int want = -1;
    if (!corrupt)
        for (int i = 0; i < NENT && want < 0; i++)
            if (!ment[i].owned)
                want = i;
    int rc = 0;
    struct pyshm_member *m = pyshm_space_member(space, &rc);
    trace_op("  space %d joins: %d entry %d", s, rc, m ? (int)m->index : -1);
    if (!corrupt) {
        ASSERT(want >= 0);
        if (!m)
            FAIL("join of space %d = %d", s, rc);
        EXPECT_EQ(m->index, want);
        int was_midwrite = ment[want].midwrite;
        ment[want].owned = 1;
        ment[want].inc++;
        ment[want].space = s;
        ment[want].held = 0;
        ment[want].what = ment[want].pos = ment[want].n = 0;
        ment[want].midwrite = 0;
        EXPECT_EQ(m->holder, mholder(want));
        struct pyshm_announcement a;
        /* Joining settles the sequence even if the last writer died mid-write. */
        if (was_midwrite && !pyshm_member_read(m->entry, &a, 1))
            fail(__FILE__, __LINE__, "a joiner kept a dead writer's odd announcement sequence");
    } else if (!m) {
        /* join can also pass on a repair's -PYSHM_ECORRUPT (space.c), beyond space.h's list */
        CHECK_RC(rc, 3, -PYSHM_ENOMEMBER, -ENOMEM, -PYSHM_ECORRUPT);
    }
    return m;
}

/* The model entry of a member (clean phase). */
static int ment_of(const struct pyshm_member *m)
{
    ASSERT(m->index < PYSHM_MEMBER_ENTRIES && ment[m->index].owned);
    return (int)m->index;
}

/* A space leaves: cleanly (its entry is freed if nothing is held or announced) or killed. */
static void model_leave(int s, int killed)
{
    int i = ment_of_space(s);
    if (corrupt || i < 0)
        return;
    if (!killed && ment[i].held == 0 && ment[i].what == 0)
        ment[i].owned = 0;
    ment[i].space = -1;
}

/* ------------------------------------------------------------------------------------ */
/* the model of the two moves (mempool.h), drain and repair                               */

/* The block a queue's (exact) value names: 0 with pool and index. */
static int mblock_of_value(const struct mqueue *q, uint64_t value, struct mpool **mp, uint64_t *index)
{
    if (q->pool >= 0) {
        *mp = &mpools[q->pool];
        *index = value;
        return value < (*mp)->count ? 0 : -1;
    }
    return mblock_of_offset(value, mp, index);
}

/* A block as the model names it, for hand-overs. */
struct mblock {
    struct mpool *mp;
    uint64_t index, gen;
};

/*
 * pyshm_blocks_take in the model: take from q for member entry e. `got` (may be NULL: drain,
 * whose blocks are not visible) are the blocks the call returned, in order; the model
 * checks each against the value it holds at that position. Returns the predicted result;
 * *too_small is set when the check on the head refused (min_size).
 */
HARNESS static int64_t model_take(struct mqueue *q, int e, uint64_t max, enum pyshm_block_kind from, uint64_t min_size,
                          const struct pyshm_block *got, int64_t got_n, int *too_small, struct mblock *taken)
{
    *too_small = 0;
    if (max > q->cap)
        max = q->cap;
    for (uint64_t round = 0; round <= q->cap; round++) {
        uint64_t run = mq_deq_run(q, max);
        if (run == 0)
            return -PYSHM_EEMPTY;
        if (min_size) {
            struct mslot *head = mq_slot(q, q->deq);
            struct mpool *mp;
            uint64_t index;
            if (head->value != VHOLE && !head->batch && mblock_of_value(q, head->value, &mp, &index) == 0 &&
                mp->elt < min_size) {
                *too_small = 1;
                return -PYSHM_EEMPTY;
            }
        }
        uint64_t first = q->deq, holes = 0;
        int64_t kept = 0;
        q->deq += run;
        for (uint64_t k = 0; k < run; k++) {
            struct mslot *s = mq_slot(q, first + k);
            uint64_t value = s->value;
            if (got && s->batch) {
                /* Which block of the set came out: read it, the set must have it. */
                if (kept >= got_n)
                    FAIL("take: fewer blocks came out than the model has");
                value = got[kept].index;
                model_check_taken(q, first + k, value);
            } else if (!got && s->batch) {
                FAIL("take of a repair's returns where the result is not visible");
            }
            if (value == VHOLE) {
                holes++;
                continue;
            }
            struct mpool *mp;
            uint64_t index;
            if (mblock_of_value(q, value, &mp, &index) < 0 || mp->kind[index] != from)
                FAIL("take: position %" PRIu64 " names %#" PRIx64 ", not a block in state %d", first + k, value, from);
            mp->kind[index] = PYSHM_BLOCK_HELD;
            mp->gen[index]++;
            mp->holder[index] = mholder(e);
            if (got) {
                if (kept >= got_n || got[kept].pool->offset != mp->offset || got[kept].index != index ||
                    got[kept].gen != mp->gen[index])
                    FAIL("take: block %" PRId64 " is %" PRIu64 " @%" PRIu64 " gen %" PRIu64 ", the model's %" PRIu64
                         " @%" PRIu64 " gen %" PRIu64,
                         kept, kept < got_n ? got[kept].index : 0, kept < got_n ? got[kept].pool->offset : 0,
                         kept < got_n ? got[kept].gen : 0, index, mp->offset, mp->gen[index]);
            }
            if (taken)
                taken[kept] = (struct mblock){mp, index, mp->gen[index]};
            kept++;
        }
        ment[e].held += (uint64_t)kept;
        for (uint64_t k = 0; k < run; k++)
            mq_release(q, first + k);
        if (kept > 0)
            return kept;
        if (holes < run)
            return -PYSHM_ECORRUPT;
    }
    return -PYSHM_ECORRUPT;
}

/* pyshm_blocks_hand_over in the model. */
HARNESS static int model_hand_over(struct mqueue *q, int e, const struct mblock *b, uint64_t n, enum pyshm_block_kind to)
{
    if (n == 0)
        return 0;
    if (n > q->cap)
        return -PYSHM_EFULL;
    for (uint64_t i = 0; i < n; i++) {
        if (b[i].index >= b[i].mp->count)
            return -EINVAL;
        if (b[i].mp->kind[b[i].index] != PYSHM_BLOCK_HELD || b[i].mp->gen[b[i].index] != b[i].gen)
            return -PYSHM_ESTALE;
        if (b[i].mp->holder[b[i].index] != mholder(e))
            return -PYSHM_ENOTYOURS;
    }
    /* A block listed twice: refused before anything moves (the second is not held). */
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < i; j++)
            if (b[i].mp == b[j].mp && b[i].index == b[j].index)
                return -PYSHM_ESTALE;
    if (!mq_enq_ready(q, n))
        return -PYSHM_EFULL;
    for (uint64_t i = 0; i < n; i++) {
        struct mslot *s = mq_slot(q, q->enq + i);
        s->phase = PYSHM_RING_FULL;
        s->value = q->pool >= 0 ? b[i].index : b[i].mp->data_offset + b[i].index * b[i].mp->stride;
        s->batch = 0;
        b[i].mp->kind[b[i].index] = (uint8_t)to;
        b[i].mp->gen[b[i].index]++;
    }
    q->enq += n;
    ment[e].held -= n;
    return 0;
}

/* pyshm_block_ring_drain in the model. */
static int64_t model_drain(struct mring *mr, int e)
{
    struct mblock taken[64];
    int64_t returned = 0;
    for (uint64_t round = 0; round <= mr->q.cap; round++) {
        int too_small;
        int64_t n = model_take(&mr->q, e, 64, PYSHM_BLOCK_IN_RING, 0, NULL, 0, &too_small, taken);
        if (n == -PYSHM_EEMPTY)
            return returned;
        if (n < 0)
            FAIL("drain: the model's take gave %" PRId64, n);
        for (int64_t i = 0; i < n; i++) {
            if (model_hand_over(&taken[i].mp->q, e, &taken[i], 1, PYSHM_BLOCK_FREE) == 0) {
                returned++;
                continue;
            }
            /* The free queue stays blocked: the rest goes back into the Ring. */
            model_hand_over(&mr->q, e, &taken[i], (uint64_t)(n - i), PYSHM_BLOCK_IN_RING);
            return -EAGAIN;
        }
    }
    return returned;
}

/* Whether a live member (not dead in this repair) announces position pos of q on side. */
HARNESS static int model_live(const uint8_t *is_dead, const struct mqueue *q, uint64_t side, uint64_t pos)
{
    for (int j = 0; j < NENT; j++) {
        if (is_dead[j] || !ment[j].owned)
            continue;
        if (ment[j].what == (q->id | side) && pos - ment[j].pos < ment[j].n)
            return 1;
    }
    return 0;
}

struct mdead {
    int e;
    struct mblock *hold; /* blocks held under its holder word */
    int nhold;
    int fills[MAX_MODEL]; /* free-queue positions filled with "one of its held blocks" of pool i */
    uint64_t staged[MAX_BURST];
    int nstaged;
    int blocked;
};

HARNESS static void dead_unhold(struct mdead *dead, int ndead, const struct mpool *mp, uint64_t index)
{
    for (int k = 0; k < ndead; k++)
        for (int i = 0; i < dead[k].nhold; i++)
            if (dead[k].hold[i].mp == mp && dead[k].hold[i].index == index) {
                dead[k].hold[i] = dead[k].hold[--dead[k].nhold];
                break;
            }
}

HARNESS static int dead_held_in_pool(const struct mdead *d, const struct mpool *mp, int exclude_staged)
{
    int n = 0;
    for (int i = 0; i < d->nhold; i++) {
        if (d->hold[i].mp != mp)
            continue;
        int staged = 0;
        for (int k = 0; exclude_staged && k < d->nstaged; k++)
            staged |= d->staged[k] == d->hold[i].index;
        n += !staged;
    }
    return n;
}

static int batch_for(int *pool_batch, int pool)
{
    if (!pool_batch[pool]) {
        if (n_batches == MAX_BATCHES) {
            set_corrupt("the model ran out of repair batches");
            return 1;
        }
        batches[n_batches].n = 0;
        pool_batch[pool] = ++n_batches;
    }
    return pool_batch[pool];
}

/*
 * pyshm_repair by space s, in the model: what it must report and leave. Called after the
 * real repair, with its result. A few outcomes are not predicted (see the top of this
 * file): then the model is switched off.
 */
HARNESS static void model_repair(int s, int only_after, int rc, const struct pyshm_repair_report *rep)
{
    int self = ment_of_space(s);
    uint8_t is_dead[PYSHM_MEMBER_ENTRIES] = {0};
    struct mdead *dead = calloc(PYSHM_MEMBER_ENTRIES, sizeof(*dead));
    ASSERT(dead);
    int ndead = 0;
    for (int i = 0; i < NENT; i++)
        if (ment[i].owned && ment[i].space < 0 && i != self) {
            is_dead[i] = 1;
            dead[ndead++].e = i;
        }
    struct pyshm_repair_report want = {0, 0, 0, 0, 0, 0};
    if (only_after && ndead == 0)
        goto compare;
    /* Their blocks. */
    for (int k = 0; k < ndead; k++) {
        struct mdead *d = &dead[k];
        d->hold = calloc(MAX_MODEL * 256 + 1, sizeof(*d->hold));
        ASSERT(d->hold);
        if (ment[d->e].held == 0)
            continue;
        for (int p = 0; p < n_mpools; p++)
            for (uint64_t i = 0; i < mpools[p].count; i++)
                if (mpools[p].kind[i] == PYSHM_BLOCK_HELD && mpools[p].holder[i] == mholder(d->e))
                    d->hold[d->nhold++] = (struct mblock){&mpools[p], i, mpools[p].gen[i]};
    }
    int pool_batch[MAX_MODEL] = {0};
    /* Their claims. */
    for (int k = 0; k < ndead; k++) {
        struct mdead *d = &dead[k];
        struct mentry *en = &ment[d->e];
        if (en->what == 0 || en->midwrite)
            continue; /* died mid-write: it claimed nothing (member.h), nothing is cleared */
        struct mqueue *q = mqueue_by_id(en->what & ~PYSHM_ANNOUNCE_SIDES);
        uint64_t side = en->what & PYSHM_ANNOUNCE_SIDES;
        if (q && en->n <= q->cap) {
            if (side == PYSHM_ANNOUNCE_ENQ && q->pool >= 0)
                for (uint64_t j = 0; j < en->n && d->nstaged < MAX_BURST; j++) {
                    struct mslot *sl = mq_slot(q, en->pos + j);
                    if (sl->pos == en->pos + j && sl->phase == PYSHM_RING_STAGED)
                        d->staged[d->nstaged++] = sl->value;
                }
            for (uint64_t j = 0; j < en->n; j++) {
                uint64_t pos = en->pos + j;
                struct mslot *sl = mq_slot(q, pos);
                if (side == PYSHM_ANNOUNCE_ENQ) {
                    if ((int64_t)(q->enq - pos) <= 0 || sl->pos != pos)
                        continue; /* never claimed, or done */
                    enum pyshm_block_kind to = q->pool >= 0 ? PYSHM_BLOCK_FREE : PYSHM_BLOCK_IN_RING;
                    if (sl->phase == PYSHM_RING_EMPTY) {
                        if (model_live(is_dead, q, PYSHM_ANNOUNCE_ENQ, pos)) {
                            d->blocked = 1;
                            continue;
                        }
                        /* Filled: a free queue with one of the dead's blocks of that pool, else a hole. */
                        if (q->pool >= 0 &&
                            dead_held_in_pool(d, &mpools[q->pool], 1) - d->fills[q->pool] > 0) {
                            d->fills[q->pool]++;
                            sl->batch = batch_for(pool_batch, q->pool);
                            sl->value = 0;
                            want.finished++;
                        } else {
                            want.holes++;
                            sl->value = VHOLE;
                            sl->batch = 0;
                        }
                        sl->phase = PYSHM_RING_FULL;
                    } else if (sl->phase == PYSHM_RING_STAGED) {
                        if (model_live(is_dead, q, PYSHM_ANNOUNCE_ENQ, pos)) {
                            d->blocked = 1;
                            continue;
                        }
                        struct mpool *mp;
                        uint64_t index;
                        if (sl->value != VHOLE && mblock_of_value(q, sl->value, &mp, &index) == 0 &&
                            (mp->kind[index] == PYSHM_BLOCK_HELD || mp->kind[index] == to)) {
                            if (mp->kind[index] == PYSHM_BLOCK_HELD) {
                                mp->kind[index] = (uint8_t)to;
                                mp->gen[index]++;
                            }
                            dead_unhold(dead, ndead, mp, index);
                            want.finished++;
                        } else if (sl->value != VHOLE) {
                            sl->value = VHOLE;
                        }
                        sl->phase = PYSHM_RING_FULL;
                    }
                } else if (side == PYSHM_ANNOUNCE_DEQ) {
                    if ((int64_t)(q->deq - pos) <= 0 || sl->pos != pos || sl->phase != PYSHM_RING_FULL)
                        continue;
                    if (model_live(is_dead, q, PYSHM_ANNOUNCE_DEQ, pos)) {
                        d->blocked = 1;
                        continue;
                    }
                    if (sl->batch)
                        FAIL("repair of a claim on positions the model does not know exactly");
                    if (sl->value != VHOLE) {
                        want.released++;
                        struct mpool *mp;
                        uint64_t index;
                        enum pyshm_block_kind from = q->pool >= 0 ? PYSHM_BLOCK_FREE : PYSHM_BLOCK_IN_RING;
                        if (mblock_of_value(q, sl->value, &mp, &index) == 0 && mp->kind[index] == from) {
                            en->held++;
                            mp->kind[index] = PYSHM_BLOCK_HELD;
                            mp->gen[index]++;
                            mp->holder[index] = mholder(d->e);
                            d->hold[d->nhold++] = (struct mblock){mp, index, mp->gen[index]};
                        }
                    }
                    mq_release(q, pos);
                }
            }
        }
        if (!d->blocked)
            en->what = en->pos = en->n = 0;
    }
    /* Their blocks go back. */
    for (int k = 0; k < ndead; k++) {
        struct mdead *d = &dead[k];
        if (d->blocked) {
            for (int p = 0; p < n_mpools; p++)
                if (d->fills[p]) {
                    set_corrupt("a blocked repair filled positions with blocks the model cannot name");
                    goto out;
                }
            continue;
        }
        for (int p = 0; p < n_mpools; p++) {
            struct mpool *mp = &mpools[p];
            int inpool = dead_held_in_pool(d, mp, 0);
            if (inpool == 0)
                continue;
            int back = inpool - d->fills[p];
            ASSERT(back >= 0);
            if (back > 0 && !mq_enq_ready(&mp->q, (uint64_t)back)) {
                set_corrupt("a repair's puts meet a free queue blocked by a stalled member");
                goto out;
            }
            int b = batch_for(pool_batch, p);
            for (int i = 0; i < d->nhold; i++) {
                if (d->hold[i].mp != mp)
                    continue;
                mp->kind[d->hold[i].index] = PYSHM_BLOCK_FREE;
                mp->gen[d->hold[i].index]++;
                if (batches[b - 1].n < MAX_BATCH)
                    batches[b - 1].v[batches[b - 1].n++] = d->hold[i].index;
            }
            for (int i = 0; i < back; i++) {
                struct mslot *sl = mq_slot(&mp->q, mp->q.enq + (uint64_t)i);
                sl->phase = PYSHM_RING_FULL;
                sl->batch = b;
                sl->value = 0;
            }
            mp->q.enq += (uint64_t)back;
            ment[d->e].held -= (uint64_t)back;
            want.returned += (uint64_t)back;
        }
    }
    for (int k = 0; k < ndead; k++) {
        if (dead[k].blocked) {
            want.pending++;
        } else {
            ment[dead[k].e].owned = 0;
            want.entries++;
        }
    }
compare:
    EXPECT_EQ(rc, 0);
    if (rep->entries != want.entries || rep->pending != want.pending || rep->holes != want.holes ||
        rep->finished != want.finished || rep->released != want.released || rep->returned != want.returned)
        FAIL("repair report entries %" PRIu64 " pending %" PRIu64 " holes %" PRIu64 " finished %" PRIu64
             " released %" PRIu64 " returned %" PRIu64 ", the model's %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
             " %" PRIu64 " %" PRIu64,
             rep->entries, rep->pending, rep->holes, rep->finished, rep->released, rep->returned, want.entries,
             want.pending, want.holes, want.finished, want.released, want.returned);
out:
    for (int k = 0; k < ndead; k++)
        free(dead[k].hold);
    free(dead);
}

/* ------------------------------------------------------------------------------------ */
/* values the program writes and offsets it probes                                        */

static const char *const names[] = {NULL, "", "n0", "n1", "n2", "n3", "n4", "n5",
                                    "this-name-is-sixty-four-bytes-long-so-it-is-one-byte-too-long-x"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

static uint64_t forged[8]; /* offsets of the last objects forged (op_w_forge_*) */
static unsigned n_forged;

static const struct pyshm_pool *any_pool(uint8_t k)
{
    for (int i = 0; i < 2; i++) {
        const struct pyshm_pool_table *t = &sp[open_space((k + i) & 1)].s.pools;
        if (t->count)
            return t->pools[k % t->count];
    }
    return NULL;
}

/* An offset the program knows: of an object, a block, a pool part, a queue, an entry... */
static uint64_t known_offset(struct reader *rd)
{
    uint8_t sel = rd8(rd), k = rd8(rd), i = rd8(rd);
    const struct pyshm_pool *p = any_pool(k);
    uint8_t *b = base1();
    switch (sel % 8) {
    case 0: /* an object the model knows or the program forged, or a pool of a table */
        if (n_forged && (i & 1))
            return forged[k % (n_forged < 8 ? n_forged : 8)];
        if (n_mobjs)
            return mobjs[k % n_mobjs].offset;
        return p ? p->offset : PYSHM_OBJECTS_OFFSET;
    case 1: /* a block */
        return p ? pyshm_pool_block_offset(p, i % p->count) : PYSHM_OBJECTS_OFFSET;
    case 2: /* a Ring */
        for (int j = 0; j < MAX_HANDLES; j++)
            if (hrings[(k + j) % MAX_HANDLES].owner >= 0)
                return hrings[(k + j) % MAX_HANDLES].h.offset;
        return PYSHM_OBJECTS_OFFSET;
    case 3:
        return region_end() - 64 * (uint64_t)(k % 8);
    case 4: /* the slots, states or holders of a pool */
        if (!p)
            return PYSHM_OBJECTS_OFFSET;
        /* relative to the pool's data, whichever mapping its pointers are in */
        return p->data_offset - (uint64_t)(p->data - (i % 3 == 0   ? (const uint8_t *)p->free_queue.ring.slots
                                                      : i % 3 == 1 ? (const uint8_t *)&p->words[0].state
                                                                   : (const uint8_t *)&p->words[0].holder));
    case 5:
        return atomic_load_explicit(&((struct pyshm_region_header *)b)->carve_end, memory_order_relaxed);
    case 6: /* a member entry */
        return pyshm_member_lock_offset(k);
    default: /* a queue's id (its counters) */
        if (i & 1) {
            for (int j = 0; j < MAX_HANDLES; j++)
                if (hrings[(k + j) % MAX_HANDLES].owner >= 0)
                    return hrings[(k + j) % MAX_HANDLES].h.queue.id;
        }
        return p ? p->free_queue.id : PYSHM_OBJECTS_OFFSET;
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
                                       PYSHM_OBJECT_MAGIC,
                                       1 << 3 | PYSHM_OWNER_OWNED | PYSHM_OWNER_READY,
                                       1 << 3 | PYSHM_OWNER_OWNED | PYSHM_OWNER_READY | PYSHM_OWNER_NOLOCK,
                                       7 << 3 | PYSHM_OWNER_OWNED,
                                       PYSHM_QUEUE_HOLE - 1,
                                       PYSHM_OBJECTS_OFFSET,
                                       PYSHM_LAYOUT_VERSION};
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
        return k % 2 ? sp[S1].s.region.size : sp[S1].s.region.map_size;
    }
    case 5: { /* a block state word around the current one */
        uint8_t g = rd8(rd), kind = rd8(rd);
        return pyshm_block_state(pyshm_block_gen_of(cur) + (uint64_t)(int64_t)(int8_t)g, kind % 4);
    }
    case 6: /* a (stored, relative) sequence word around the current one: phases and laps */
        return cur + (uint64_t)(int64_t)(int8_t)rd8(rd);
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

/* Write `width` bytes at p, inside s1's mapping (the same memory as every space's). */
static void store_field(void *p, unsigned width, uint64_t v, const char *what)
{
    trace_op("  write %s (%u bytes) = %#" PRIx64, what, width, v);
    set_corrupt(what);
    memcpy(p, &v, width);
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
    OP_RAW_CREATE,
    OP_GET,
    OP_PUT,
    OP_ENQ,
    OP_DEQ,
    OP_DRAIN,
    OP_SHUTDOWN,
    OP_FIND_NAMED,
    OP_TABLE_FIND,
    OP_POOL_ATTACH,
    OP_RING_ATTACH,
    OP_RAW_ATTACH,
    OP_REOPEN_S2,
    OP_REPAIR,
    OP_BLOCK_WRITE,
    OP_RAW_WRITE,
    OP_COUNTS,
    OP_GHOST_NEW,
    OP_GHOST_GET,
    OP_GHOST_STEP,
    OP_GHOST_END,
    OP_FAST_FORWARD,
    /* corrupting writes */
    OP_W_REGION_HDR,
    OP_W_MEMBER,
    OP_W_OBJ_HDR,
    OP_W_POOL_GEOM,
    OP_W_RING_HDR,
    OP_W_RAW_HDR,
    OP_W_COUNTER,
    OP_W_SLOT,
    OP_W_STATE,
    OP_W_RAW,
    OP_W_FORGE_POOL,
    OP_W_FORGE_RING,
    OP_COUNT
};

static void model_publish(int type, int id, uint64_t offset, uint64_t size, const char *name)
{
    struct mobj *o = &mobjs[n_mobjs++];
    o->type = type;
    o->id = id;
    o->offset = offset;
    o->size = size;
    memset(o->name, 0, sizeof(o->name));
    if (name)
        strncpy(o->name, name, PYSHM_NAME_MAX);
}

/* What carve would say in a clean region: 0 with the offset, or an error. */
static int model_carve(uint64_t size, const char *name, uint64_t *offset)
{
    size_t len = name ? strlen(name) : 0;
    if (len > PYSHM_NAME_MAX)
        return -EINVAL;
    if (len > 0)
        for (int i = 0; i < n_mobjs; i++)
            if (strcmp(mobjs[i].name, name) == 0)
                return -EEXIST;
    uint64_t start = PYSHM_ALIGN_UP(model_carve_end, PYSHM_CACHE_LINE);
    if (start > region_end() || size > region_end() - start)
        return -ENOSPC;
    *offset = start;
    return 0;
}

/* Bookkeeping common to the three creates: the model's side. */
static int model_create(int rc, uint64_t off, uint64_t size, const char *name, int bad_args, int type)
{
    if (corrupt) {
        /* carve also refuses a garbage carve end with -PYSHM_ECORRUPT (region.c), which
         * region.h does not list */
        CHECK_RC(rc, 5, 0, -EINVAL, -EEXIST, -ENOSPC, -PYSHM_ECORRUPT);
        return 0;
    }
    uint64_t want_off = 0;
    int want = bad_args ? -EINVAL : model_carve(size, name, &want_off);
    EXPECT_EQ(rc, want);
    if (rc != 0)
        return 0;
    EXPECT_EQ(off, want_off);
    model_carve_end = off + size;
    if ((type == OBJ_POOL && n_mpools == MAX_MODEL) || (type == OBJ_RING && n_mrings == MAX_MODEL) ||
        n_mobjs == 3 * MAX_MODEL) {
        set_corrupt("more objects than the model tracks");
        return 0;
    }
    return 1;
}

static void op_pool_create(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t count = 1 + rd16(rd) % 256, elt = 1 + rd16(rd) % 2048;
    uint8_t fl = rd8(rd), nm = rd8(rd);
    uint32_t flags = fl & 0x80 ? fl : fl & PYSHM_MEMPOOL_FLAGS;
    const char *name = names[nm % N_NAMES];
    uint64_t off = 0, fp = 0;
    int rc = pyshm_pool_create(&sp[s].s.region, count, elt, flags, name, &off);
    trace_op("pool_create(s%d, %" PRIu64 " x %" PRIu64 ", flags %#x, %s) = %d @%" PRIu64, s, count, elt, flags,
             name ? name : "NULL", rc, off);
    ASSERT(pyshm_pool_footprint(count, elt, &fp) == 0);
    if (model_create(rc, off, fp, name, (flags & ~PYSHM_MEMPOOL_FLAGS) != 0, OBJ_POOL)) {
        struct mpool *mp = &mpools[n_mpools];
        memset(mp, 0, sizeof(*mp));
        mp->offset = off;
        mp->count = count;
        mp->elt = elt;
        mp->flags = flags;
        struct pyshm_pool h;
        EXPECT_EQ(pyshm_pool_attach(&sp[S1].s.region, off, &h), 0);
        mp->stride = h.stride;
        mp->data_offset = h.data_offset;
        mq_init(&mp->q, h.free_queue.id, count, 1, n_mpools);
        mp->kind = calloc(count, 1);
        mp->gen = calloc(count, sizeof(uint64_t));
        mp->holder = calloc(count, sizeof(uint64_t));
        ASSERT(mp->kind && mp->gen && mp->holder);
        model_publish(OBJ_POOL, n_mpools, off, fp, name);
        n_mpools++;
    }
    if (rc < 0)
        return;
    const struct pyshm_pool *p = NULL;
    int arc = pyshm_pool_table_add(&sp[s].s.pools, &sp[s].s.region, off, &p);
    if (!corrupt)
        EXPECT_EQ(arc, 0);
    else
        CHECK_RC(arc, 3, 0, -PYSHM_ECORRUPT, -ENOMEM); /* ECORRUPT: overlaps a (forged) pool it knows */
    if (arc == 0)
        check_pool_in_region(&sp[s].s.region, p);
}

static void op_ring_create(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t cap = 1 + rd16(rd) % 128;
    uint8_t fl = rd8(rd), nm = rd8(rd);
    uint32_t flags = fl & 0x80 ? fl : fl & PYSHM_BLOCK_RING_FLAGS;
    const char *name = names[nm % N_NAMES];
    uint64_t off = 0, fp = 0;
    int rc = pyshm_block_ring_create(&sp[s].s.region, cap, flags, name, &off);
    trace_op("ring_create(s%d, %" PRIu64 ", flags %#x, %s) = %d @%" PRIu64, s, cap, flags, name ? name : "NULL", rc,
             off);
    ASSERT(pyshm_block_ring_footprint(cap, &fp) == 0);
    if (model_create(rc, off, fp, name, (flags & ~PYSHM_BLOCK_RING_FLAGS) != 0, OBJ_RING)) {
        struct mring *mr = &mrings[n_mrings];
        memset(mr, 0, sizeof(*mr));
        mr->offset = off;
        mr->cap = cap;
        mr->flags = flags;
        mq_init(&mr->q, off + offsetof(struct pyshm_block_ring_shared, queue), cap, 0, -1);
        model_publish(OBJ_RING, n_mrings, off, fp, name);
        n_mrings++;
    }
    if (rc < 0)
        return;
    struct pyshm_block_ring h;
    int arc = pyshm_block_ring_attach(&sp[s].s.region, off, &h);
    if (!corrupt)
        EXPECT_EQ(arc, 0);
    CHECK_RC(arc, 2, 0, -PYSHM_ECORRUPT);
    if (arc == 0) {
        check_ring_in_region(&sp[s].s.region, &h);
        add_ring(s, &h, nm);
    }
}

static void op_raw_create(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t size = 1 + rd16(rd) % 4096;
    uint8_t nm = rd8(rd);
    const char *name = names[nm % N_NAMES];
    uint64_t off = 0, fp = 0;
    int rc = pyshm_rawbuf_create(&sp[s].s.region, size, name, &off);
    trace_op("rawbuf_create(s%d, %" PRIu64 ", %s) = %d @%" PRIu64, s, size, name ? name : "NULL", rc, off);
    ASSERT(pyshm_rawbuf_footprint(size, &fp) == 0);
    if (model_create(rc, off, fp, name, 0, OBJ_RAW))
        model_publish(OBJ_RAW, 0, off, fp, name);
    if (rc < 0)
        return;
    struct pyshm_rawbuf h;
    int arc = pyshm_rawbuf_attach(&sp[s].s.region, off, &h);
    if (!corrupt) {
        EXPECT_EQ(arc, 0);
        EXPECT_EQ(h.size, size);
        for (uint64_t i = 0; i < size; i++)
            if (h.data[i] != 0)
                FAIL("a new raw buffer is not zero at byte %" PRIu64, i);
    }
    CHECK_RC(arc, 2, 0, -PYSHM_ECORRUPT);
    if (arc == 0) {
        check_raw_in_region(&sp[s].s.region, &h);
        add_raw(s, &h, nm);
    }
}

static void op_get(struct reader *rd)
{
    int table;
    const struct pyshm_pool *p = pick_pool(rd, &table);
    int a = pick_space(rd);
    uint64_t max = rd8(rd) % MAX_BURST;
    if (!p)
        return;
    struct pyshm_member *m = member_of(a);
    if (!m || spin_guard(&p->free_queue, PYSHM_RING_DEQ, 1, max))
        return;
    struct pyshm_block out[MAX_BURST];
    int64_t n = pyshm_pool_get(p, m, out, max);
    trace_op("pool_get(@%" PRIu64 ", s%d, max %" PRIu64 ") = %" PRId64, p->offset, a, max, n);
    if (!corrupt) {
        struct mpool *mp = mpool_at(p->offset);
        ASSERT(mp);
        int too_small;
        int64_t want = max == 0 ? 0 : model_take(&mp->q, ment_of(m), max, PYSHM_BLOCK_FREE, 0, out, n, &too_small, NULL);
        EXPECT_EQ(n, want);
    } else if (!(n == -PYSHM_EEMPTY || n == -PYSHM_ECORRUPT || (n >= 0 && (uint64_t)n <= max && (n == 0) == (max == 0)))) {
        FAIL("pool_get(max %" PRIu64 ") returned %" PRId64, max, n);
    }
    for (int64_t i = 0; i < n; i++) {
        if (out[i].pool != p)
            FAIL("pool_get handed out a block of another pool");
        check_block(&sp[table].s, &out[i], "pool_get");
        for (int64_t j = 0; j < i; j++)
            if (out[j].index == out[i].index)
                FAIL("pool_get handed out block %" PRIu64 " twice", out[i].index);
        add_held(&out[i], table);
    }
}

/* Blocks for a put or enqueue: up to n of those the program knows (distinct), from held
 * index `start` on; `same_pool`: only blocks of the first one's pool. Variants make one of
 * them wrong. Returns how many; from[k] is the held index of block k or -1. */
static uint64_t pick_blocks(uint64_t n, uint8_t start, uint8_t variant, int same_pool, uint64_t holder,
                            struct pyshm_block *b, int *from, int *dup)
{
    uint64_t k = 0;
    *dup = 0;
    for (int j = 0; j < n_held && k < n; j++) {
        int i = (start + j) % n_held;
        if (same_pool && k && held[i].b.pool->offset != b[0].pool->offset)
            continue;
        /* The actor's own blocks, unless the variant asks for anyone's. */
        if (!(variant & 0x40) && atomic_load_explicit(&held[i].b.pool->words[held[i].b.index].holder, memory_order_relaxed) != holder)
            continue;
        int seen = 0;
        for (uint64_t x = 0; x < k; x++)
            seen |= b[x].pool->offset == held[i].b.pool->offset && b[x].index == held[i].b.index;
        if (seen)
            continue;
        b[k] = held[i].b;
        from[k++] = i;
    }
    if (k == 0)
        return 0;
    uint64_t at = (uint64_t)(variant & 0x3f) / 8 % k;
    switch (variant % 8) {
    case 1: b[at].gen--; from[at] = -1; break;
    case 2: b[at].gen++; from[at] = -1; break;
    case 3: b[at].index = b[at].pool->count + variant / 16; from[at] = -1; break;
    case 4: /* a block of another pool */
        for (int j = 0; j < n_held; j++)
            if (held[j].b.pool->offset != b[0].pool->offset) {
                b[at] = held[j].b;
                from[at] = -1;
                break;
            }
        break;
    case 5: /* the same block twice */
        if (k < MAX_BURST && k > 0) {
            b[k] = b[at];
            from[k++] = -1;
            *dup = 1;
        }
        break;
    default: break;
    }
    return k;
}

static void model_blocks(const struct pyshm_block *b, uint64_t n, struct mblock *mb)
{
    for (uint64_t i = 0; i < n; i++) {
        mb[i].mp = mpool_at(b[i].pool->offset);
        ASSERT(mb[i].mp);
        mb[i].index = b[i].index;
        mb[i].gen = b[i].gen;
    }
}

/* After a put or enqueue: blocks that moved are no longer the program's. */
static void settle_held(int rc, const int *from, uint64_t n)
{
    if (rc != 0)
        return;
    int drop[MAX_HELD] = {0};
    for (uint64_t i = 0; i < n; i++)
        if (from[i] >= 0)
            drop[from[i]] = 1;
    for (int i = n_held - 1; i >= 0; i--)
        if (drop[i])
            held[i] = held[--n_held];
}

static void op_put(struct reader *rd)
{
    int a = pick_space(rd);
    uint64_t n = rd8(rd) % MAX_BURST;
    uint8_t start = rd8(rd), variant = rd8(rd);
    struct pyshm_member *m = member_of(a);
    if (!m)
        return;
    struct pyshm_block b[MAX_BURST + 1];
    int from[MAX_BURST + 1], dup;
    uint64_t k = pick_blocks(n, start, variant, 1, m->holder, b, from, &dup);
    if (k == 0)
        return;
    const struct pyshm_pool *p = b[0].pool;
    if (variant % 8 == 4 && k > 1) /* the odd block out is not the first */
        p = b[k - 1].pool->offset != b[0].pool->offset ? b[0].pool : b[k - 1].pool;
    (void)dup; /* a block listed twice is refused (-PYSHM_ESTALE), as the model says */
    if (spin_guard(&p->free_queue, PYSHM_RING_ENQ, k, k))
        return;
    int rc = pyshm_pool_put(p, m, b, k, PATIENCE_NS);
    trace_op("pool_put(@%" PRIu64 ", s%d, %" PRIu64 " blocks, variant %d) = %d", p->offset, a, k, variant % 8, rc);
    if (!corrupt) {
        struct mpool *mp = mpool_at(p->offset);
        ASSERT(mp);
        int want = 0;
        for (uint64_t i = 0; i < k; i++)
            if (b[i].pool != p && b[i].pool->offset != p->offset)
                want = -EINVAL;
        if (want == 0) {
            struct mblock mb[MAX_BURST + 1];
            model_blocks(b, k, mb);
            want = model_hand_over(&mp->q, ment_of(m), mb, k, PYSHM_BLOCK_FREE);
            if (want == -PYSHM_EFULL)
                want = -EAGAIN;
        }
        EXPECT_EQ(rc, want);
    } else {
        CHECK_RC(rc, 6, 0, -EINVAL, -PYSHM_ESTALE, -PYSHM_ENOTYOURS, -PYSHM_ECORRUPT, -EAGAIN);
    }
    settle_held(rc, from, k);
}

static void op_enq(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int a = pick_space(rd);
    uint64_t n = rd8(rd) % MAX_BURST;
    uint8_t start = rd8(rd), variant = rd8(rd);
    if (!hq)
        return;
    struct pyshm_member *m = member_of(a);
    if (!m)
        return;
    struct pyshm_block b[MAX_BURST + 1];
    int from[MAX_BURST + 1], dup;
    uint64_t k = pick_blocks(n, start, variant, 0, m->holder, b, from, &dup);
    (void)dup; /* a block listed twice is refused (-PYSHM_ESTALE), as the model says */
    if (k && spin_guard(&hq->h.queue, PYSHM_RING_ENQ, k, k))
        return;
    int rc = pyshm_block_ring_enqueue(&hq->h, m, b, k);
    trace_op("ring_enqueue(@%" PRIu64 ", s%d, %" PRIu64 " blocks, variant %d) = %d", hq->h.offset, a, k, variant % 8,
             rc);
    if (!corrupt) {
        struct mring *mr = mring_at(hq->h.offset);
        ASSERT(mr);
        int want = -ESHUTDOWN;
        if (mr->shutdown == PYSHM_BLOCK_RING_OPEN) {
            struct mblock mb[MAX_BURST + 1];
            model_blocks(b, k, mb);
            want = model_hand_over(&mr->q, ment_of(m), mb, k, PYSHM_BLOCK_IN_RING);
        }
        EXPECT_EQ(rc, want);
    } else {
        CHECK_RC(rc, 7, 0, -PYSHM_EFULL, -ESHUTDOWN, -EINVAL, -PYSHM_ESTALE, -PYSHM_ENOTYOURS, -PYSHM_ECORRUPT);
    }
    settle_held(rc, from, k);
}

static void op_deq(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int a = pick_space(rd);
    uint64_t max = rd8(rd) % MAX_BURST;
    uint16_t ms = rd16(rd);
    uint64_t min_size = ms & 1 ? ms % 4096 : 0;
    if (!hq)
        return;
    struct pyshm_member *m = member_of(a);
    if (!m || spin_guard(&hq->h.queue, PYSHM_RING_DEQ, 1, 1))
        return;
    struct pyshm_space *space = &sp[a].s;
    struct pyshm_block out[MAX_BURST];
    int64_t n = pyshm_block_ring_dequeue(&hq->h, m, &space->pools, &space->region, min_size, max, out);
    trace_op("ring_dequeue(@%" PRIu64 ", s%d, min %" PRIu64 ", max %" PRIu64 ") = %" PRId64, hq->h.offset, a, min_size,
             max, n);
    if (!corrupt) {
        struct mring *mr = mring_at(hq->h.offset);
        ASSERT(mr);
        int64_t want;
        if (mr->shutdown == PYSHM_BLOCK_RING_SHUTDOWN_NOW) {
            want = -ESHUTDOWN;
        } else if (max == 0) {
            want = 0;
        } else {
            int too_small;
            want = model_take(&mr->q, ment_of(m), min_size ? 1 : max, PYSHM_BLOCK_IN_RING, min_size, out, n, &too_small,
                              NULL);
            if (want == -PYSHM_EEMPTY && too_small)
                want = -PYSHM_ETOOBIG;
            else if (want == -PYSHM_EEMPTY && mr->shutdown)
                want = -ESHUTDOWN;
        }
        EXPECT_EQ(n, want);
    } else if (!(n == -PYSHM_EEMPTY || n == -PYSHM_ECORRUPT || n == -ESHUTDOWN || n == -ENOMEM ||
                 n == -PYSHM_ETOOBIG || (n >= 0 && (uint64_t)n <= max))) {
        FAIL("ring_dequeue(max %" PRIu64 ") returned %" PRId64, max, n);
    }
    for (int64_t i = 0; i < n; i++) {
        check_block(space, &out[i], "ring_dequeue");
        if (out[i].pool->elt_size < min_size)
            FAIL("ring_dequeue handed out a block of %" PRIu64 " bytes for min_size %" PRIu64, out[i].pool->elt_size,
                 min_size);
        if (min_size && n > 1)
            FAIL("ring_dequeue with min_size handed out %" PRId64 " blocks", n);
        add_held(&out[i], a);
    }
}

static void op_drain(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int a = pick_space(rd);
    if (!hq)
        return;
    struct pyshm_member *m = member_of(a);
    if (!m)
        return;
    /* A drain that would spin does so capacity + 1 times (see the report): only small ones. */
    if (corrupt && would_spin(&hq->h.queue.ring, PYSHM_RING_DEQ, 1, 1) &&
        (hq->h.queue.ring.capacity > 8 || spin_guard(&hq->h.queue, PYSHM_RING_DEQ, 1, 1))) {
        trace_op("  (skipped: a drain that would spin)");
        return;
    }
    struct pyshm_space *space = &sp[a].s;
    int64_t n = pyshm_block_ring_drain(&hq->h, m, &space->pools, &space->region);
    trace_op("ring_drain(@%" PRIu64 ", s%d) = %" PRId64, hq->h.offset, a, n);
    if (!corrupt) {
        struct mring *mr = mring_at(hq->h.offset);
        ASSERT(mr);
        EXPECT_EQ(n, model_drain(mr, ment_of(m)));
    } else if (!(n >= 0 || n == -PYSHM_ECORRUPT || n == -EAGAIN || n == -ENOMEM)) {
        FAIL("ring_drain returned %" PRId64, n);
    }
}

static void op_shutdown(struct reader *rd)
{
    struct hring *hq = pick_ring(rd);
    int immediate = rd8(rd) & 1;
    if (!hq)
        return;
    pyshm_block_ring_shutdown(&hq->h, immediate);
    trace_op("ring_shutdown(@%" PRIu64 ", %d)", hq->h.offset, immediate);
    int want = immediate ? PYSHM_BLOCK_RING_SHUTDOWN_NOW : PYSHM_BLOCK_RING_SHUTDOWN;
    if (!corrupt) {
        struct mring *mr = mring_at(hq->h.offset);
        ASSERT(mr);
        if (mr->shutdown < want)
            mr->shutdown = want;
    }
    /* Whatever the word held: never back to open, never weaker than asked. */
    if ((int)pyshm_block_ring_shutdown_state(&hq->h) < want)
        FAIL("shutdown(%d) left the state at %d", immediate, (int)pyshm_block_ring_shutdown_state(&hq->h));
}

static void op_find_named(struct reader *rd)
{
    int s = pick_space(rd);
    const char *name = names[rd8(rd) % N_NAMES];
    if (!name)
        name = "";
    uint32_t kind = 0;
    uint64_t off = 0;
    int rc = pyshm_region_find_named(&sp[s].s.region, name, &kind, &off);
    trace_op("find_named(s%d, \"%s\") = %d kind %u @%" PRIu64, s, name, rc, kind, off);
    if (!corrupt) {
        const struct mobj *o = NULL;
        for (int i = n_mobjs - 1; i >= 0 && !o; i--)
            if (strncmp(mobjs[i].name, name, sizeof(mobjs[i].name)) == 0)
                o = &mobjs[i];
        EXPECT_EQ(rc, o ? 0 : -ENOENT);
        if (o) {
            EXPECT_EQ(off, o->offset);
            EXPECT_EQ(kind, o->type == OBJ_POOL ? PYSHM_KIND_POOL : o->type == OBJ_RING ? PYSHM_KIND_RING : PYSHM_KIND_RAW);
        }
    } else {
        CHECK_RC(rc, 3, 0, -ENOENT, -PYSHM_ECORRUPT);
    }
    if (rc == 0 && (off % PYSHM_CACHE_LINE != 0 ||
                    !pyshm_region_contains(&sp[s].s.region, off, sizeof(struct pyshm_object_header))))
        FAIL("find_named gave offset %" PRIu64 ", not an object inside the region", off);
}

static void op_table_find(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t off = pick_value(rd, known_offset(rd));
    const struct pyshm_pool *p = NULL;
    uint64_t index = 0;
    int rc = pyshm_pool_table_find(&sp[s].s.pools, &sp[s].s.region, off, &p, &index);
    trace_op("pool_table_find(s%d, %" PRIu64 ") = %d", s, off, rc);
    if (!corrupt) {
        struct mpool *mp;
        uint64_t mi;
        int want = mblock_of_offset(off, &mp, &mi) == 0 ? 0 : -PYSHM_ECORRUPT;
        EXPECT_EQ(rc, want);
        if (rc == 0)
            ASSERT(p->offset == mp->offset && index == mi);
    } else {
        CHECK_RC(rc, 3, 0, -PYSHM_ECORRUPT, -ENOMEM);
    }
    if (rc == 0) {
        struct pyshm_block b = {p, index, 0};
        check_block(&sp[s].s, &b, "pool_table_find");
        if (pyshm_pool_block_offset(p, index) != off)
            FAIL("pool_table_find(%" PRIu64 ") gave block %" PRIu64 " of pool @%" PRIu64 " at %" PRIu64, off, index,
                 p->offset, pyshm_pool_block_offset(p, index));
    }
}

static void op_pool_attach(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t off = pick_value(rd, known_offset(rd));
    uint8_t add = rd8(rd);
    struct pyshm_pool out;
    int rc = pyshm_pool_attach(&sp[s].s.region, off, &out);
    trace_op("pool_attach(s%d, %" PRIu64 ") = %d", s, off, rc);
    CHECK_RC(rc, 2, 0, -PYSHM_ECORRUPT);
    if (!corrupt) {
        struct mpool *mp = mpool_at(off);
        EXPECT_EQ(rc, mp ? 0 : -PYSHM_ECORRUPT);
        if (mp)
            ASSERT(out.count == mp->count && out.elt_size == mp->elt && out.stride == mp->stride &&
                   out.flags == mp->flags && out.data_offset == mp->data_offset);
    }
    if (rc < 0)
        return;
    check_pool_in_region(&sp[s].s.region, &out);
    if (add & 1) { /* as the binding does with a pool it opens */
        const struct pyshm_pool *p;
        int arc = pyshm_pool_table_add(&sp[s].s.pools, &sp[s].s.region, off, &p);
        if (!corrupt)
            EXPECT_EQ(arc, 0);
        CHECK_RC(arc, 3, 0, -ENOMEM, -PYSHM_ECORRUPT);
    }
}

static void op_ring_attach(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t off = pick_value(rd, known_offset(rd));
    struct pyshm_block_ring out;
    int rc = pyshm_block_ring_attach(&sp[s].s.region, off, &out);
    trace_op("ring_attach(s%d, %" PRIu64 ") = %d", s, off, rc);
    CHECK_RC(rc, 2, 0, -PYSHM_ECORRUPT);
    if (!corrupt) {
        struct mring *mr = mring_at(off);
        EXPECT_EQ(rc, mr ? 0 : -PYSHM_ECORRUPT);
        if (mr)
            ASSERT(out.queue.ring.capacity == mr->cap && out.flags == mr->flags);
    }
    if (rc < 0)
        return;
    check_ring_in_region(&sp[s].s.region, &out);
    add_ring(s, &out, (uint8_t)off);
}

static void op_raw_attach(struct reader *rd)
{
    int s = pick_space(rd);
    uint64_t off = pick_value(rd, known_offset(rd));
    struct pyshm_rawbuf out;
    int rc = pyshm_rawbuf_attach(&sp[s].s.region, off, &out);
    trace_op("rawbuf_attach(s%d, %" PRIu64 ") = %d", s, off, rc);
    CHECK_RC(rc, 2, 0, -PYSHM_ECORRUPT);
    if (!corrupt) {
        int known = 0;
        for (int i = 0; i < n_mobjs; i++)
            known |= mobjs[i].type == OBJ_RAW && mobjs[i].offset == off;
        EXPECT_EQ(rc, known ? 0 : -PYSHM_ECORRUPT);
    }
    if (rc < 0)
        return;
    check_raw_in_region(&sp[s].s.region, &out);
    add_raw(s, &out, (uint8_t)off);
}

/* Attach space f to the region (a dup of s1's fd), between guard pages. */
static int attach_space(struct fspace *f)
{
    int fd = dup(sp[S1].s.region.fd);
    ASSERT(fd >= 0);
    int rc = pyshm_space_attach_fd(&f->s, fd, NULL);
    if (rc < 0) {
        CHECK_RC(rc, 3, -PYSHM_ENOTREGION, -PYSHM_EVERSION, -PYSHM_ECORRUPT);
        if (!corrupt)
            FAIL("attach of a clean region = %d", rc);
        pyshm_space_close(&f->s);
        return rc;
    }
    guard_mapping(f);
    f->open = 1;
    return 0;
}

/* Close s2 (it leaves, cleanly) and attach again: a fresh process's view. */
static void op_reopen_s2(void)
{
    if (sp[S2].open) {
        forget_space(S2);
        model_leave(S2, 0);
        close_space(&sp[S2]);
    }
    int rc = attach_space(&sp[S2]);
    trace_op("reopen s2 = %d", rc);
}

static void op_repair(struct reader *rd)
{
    int s = pick_space(rd);
    int only_after = rd8(rd) & 1;
    struct pyshm_repair_report rep;
    int rc = pyshm_repair(&sp[s].s, only_after, &rep);
    trace_op("repair(s%d, %d) = %d: entries %" PRIu64 " pending %" PRIu64 " holes %" PRIu64 " finished %" PRIu64
             " released %" PRIu64 " returned %" PRIu64,
             s, only_after, rc, rep.entries, rep.pending, rep.holes, rep.finished, rep.released, rep.returned);
    if (!corrupt)
        model_repair(s, only_after, rc, &rep);
    else
        CHECK_RC(rc, 5, 0, -EBUSY, -ENOTSUP, -ENOMEM, -PYSHM_ECORRUPT);
    if (rc == 0 && rep.entries + rep.pending > PYSHM_MEMBER_ENTRIES)
        FAIL("repair reports %" PRIu64 " entries", rep.entries + rep.pending);
}

/* Writing into a block's bytes or a raw buffer is what they are for: not corruption. */
static void op_block_write(struct reader *rd)
{
    uint8_t sel = rd8(rd);
    uint16_t at = rd16(rd);
    uint8_t len = rd8(rd), byte = rd8(rd);
    if (n_held == 0)
        return;
    const struct pyshm_block *b = &held[sel % n_held].b;
    uint64_t elt = b->pool->elt_size;
    uint64_t start = at % elt, n = len % 64 + 1;
    if (n > elt - start)
        n = elt - start;
    memset(b->pool->data + b->index * b->pool->stride + start, byte, n);
}

static void op_raw_write(struct reader *rd)
{
    struct hraw *h = pick_raw(rd);
    uint16_t at = rd16(rd);
    uint8_t len = rd8(rd), byte = rd8(rd);
    if (!h)
        return;
    uint64_t start = at % h->h.size, n = len % 64 + 1;
    if (n > h->h.size - start)
        n = h->h.size - start;
    memset(h->h.data + start, byte, n);
}

static void op_counts(void)
{
    for (int s = 0; s < 2; s++) {
        if (!sp[s].open)
            continue;
        const struct pyshm_pool_table *t = &sp[s].s.pools;
        for (size_t i = 0; i < t->count; i++) {
            uint64_t c = pyshm_pool_free_count(t->pools[i]);
            if (c > t->pools[i]->count)
                FAIL("free count %" PRIu64 " of a pool of %" PRIu64, c, t->pools[i]->count);
            if (pyshm_pool_touched(t->pools[i]) > t->pools[i]->count)
                FAIL("touched beyond the pool");
        }
    }
    for (int i = 0; i < MAX_HANDLES; i++)
        if (hrings[i].owner >= 0 && pyshm_block_ring_count(&hrings[i].h) > hrings[i].h.queue.ring.capacity)
            FAIL("a Ring counts more entries than its capacity");
    for (int s = 0; s < NSPACES; s++)
        if (sp[s].open)
            (void)pyshm_repair_needed(&sp[s].s);
}

/* ------------------------------------------------------------------------------------ */
/* ghosts: members that stop mid-operation                                                */

static int pick_ghost(struct reader *rd, int live_only)
{
    uint8_t sel = rd8(rd);
    for (int k = 0; k < MAX_GHOSTS; k++) {
        int g = G0 + (sel + k) % MAX_GHOSTS;
        if (sp[g].open && (!live_only || sp[g].ghost == GHOST_LIVE))
            return g;
    }
    return -1;
}

static void ghost_end(int g, int killed)
{
    trace_op("ghost s%d %s", g, killed ? "dies" : "leaves");
    forget_space(g);
    model_leave(g, killed);
    if (killed)
        memset(&sp[g].s.self, 0, sizeof(sp[g].s.self)); /* its entry stays as it is */
    close_space(&sp[g]);
}

static void op_ghost_new(void)
{
    for (int g = G0; g < NSPACES; g++) {
        if (sp[g].open)
            continue;
        if (attach_space(&sp[g]) < 0)
            return;
        sp[g].ghost = GHOST_LIVE;
        trace_op("ghost s%d attached", g);
        if (!member_of(g))
            ghost_end(g, 0);
        return;
    }
}

/* The ghost's own handle of a pool picked from s1's or s2's table. */
static const struct pyshm_pool *ghost_pool(int g, struct reader *rd)
{
    int table;
    const struct pyshm_pool *p = pick_pool(rd, &table), *gp = NULL;
    if (!p)
        return NULL;
    int rc = pyshm_pool_table_add(&sp[g].s.pools, &sp[g].s.region, p->offset, &gp);
    if (!corrupt)
        EXPECT_EQ(rc, 0);
    return rc == 0 ? gp : NULL;
}

static void op_ghost_get(struct reader *rd)
{
    int g = pick_ghost(rd, 1);
    const struct pyshm_pool *p = g >= 0 ? ghost_pool(g, rd) : NULL;
    uint64_t max = rd8(rd) % MAX_BURST;
    if (!p)
        return;
    struct pyshm_member *m = member_of(g);
    if (!m || spin_guard(&p->free_queue, PYSHM_RING_DEQ, 1, max))
        return;
    struct pyshm_block out[MAX_BURST];
    int64_t n = pyshm_pool_get(p, m, out, max);
    trace_op("ghost s%d: pool_get(@%" PRIu64 ", max %" PRIu64 ") = %" PRId64, g, p->offset, max, n);
    if (!corrupt) {
        int too_small;
        int64_t want = max == 0 ? 0
                                : model_take(&mpool_at(p->offset)->q, ment_of(m), max, PYSHM_BLOCK_FREE, 0, out, n,
                                             &too_small, NULL);
        EXPECT_EQ(n, want);
    }
    for (int64_t i = 0; i < n; i++) {
        check_block(&sp[g].s, &out[i], "ghost pool_get");
        add_held(&out[i], g);
    }
}

/* The model learns which block of a repair's set each claimed position holds. */
static void model_resolve(struct mqueue *q, const struct pyshm_queue *hq, uint64_t pos, uint64_t n)
{
    for (uint64_t k = 0; k < n; k++) {
        struct mslot *sl = mq_slot(q, pos + k);
        if (!sl->batch)
            continue;
        uint64_t v = pyshm_queue_value(hq, pos + k);
        model_check_taken(q, pos + k, v);
        sl->value = v;
        sl->batch = 0;
    }
}

/* A consumer's steps (mempool.c pyshm_blocks_take) up to `progress`: claim n, then take
 * the first `progress` blocks (0..n), then release the first progress - n slots. */
static void ghost_take_steps(int g, struct pyshm_member *m, const struct pyshm_queue *hq, uint64_t n, uint64_t progress,
                             int ring)
{
    struct mqueue *q = corrupt ? NULL : mqueue_by_id(hq->id);
    if (!corrupt)
        ASSERT(q);
    uint64_t pos = 0;
    if (spin_guard(hq, PYSHM_RING_DEQ, n, n))
        return;
    int64_t rc = pyshm_queue_claim(hq, m, PYSHM_RING_DEQ, n, n, &pos, NULL, NULL);
    trace_op("ghost s%d: claim %" PRIu64 " of queue %#" PRIx64 " (deq) = %" PRId64 " at %" PRIu64 ", progress %" PRIu64,
             g, n, hq->id, rc, pos, progress);
    int e = corrupt ? -1 : ment_of(m);
    if (!corrupt) {
        if (mq_deq_run(q, n) == n) {
            EXPECT_EQ(rc, (int64_t)n);
            EXPECT_EQ(pos, q->deq);
            q->deq += n;
            ment[e].what = q->id | PYSHM_ANNOUNCE_DEQ;
            ment[e].pos = pos;
            ment[e].n = n;
            model_resolve(q, hq, pos, n);
        } else {
            EXPECT_EQ(rc, -PYSHM_EEMPTY);
        }
    } else {
        CHECK_RC(rc, 3, (int)n, -PYSHM_EEMPTY, -PYSHM_ECORRUPT);
    }
    if (rc <= 0)
        return;
    struct pyshm_block b[MAX_BURST];
    uint64_t taken = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t value = pyshm_queue_value(hq, pos + k);
        if (value == PYSHM_QUEUE_HOLE)
            continue;
        const struct pyshm_pool *p = NULL;
        uint64_t index = value;
        if (ring) {
            if (pyshm_pool_table_find(&sp[g].s.pools, &sp[g].s.region, value, &p, &index) != 0)
                continue;
        } else {
            /* a free queue's values are indices of its own pool */
            for (size_t t = 0; t < sp[g].s.pools.count && !p; t++)
                if (sp[g].s.pools.pools[t]->free_queue.id == hq->id)
                    p = sp[g].s.pools.pools[t];
            if (!p)
                continue;
        }
        b[taken++] = (struct pyshm_block){p, index, 0};
    }
    uint64_t take = progress < taken ? progress : taken;
    if (progress > 0) {
        pyshm_member_held_add(m, (int64_t)taken);
        if (!corrupt)
            ment[e].held += taken;
    }
    enum pyshm_block_kind from = ring ? PYSHM_BLOCK_IN_RING : PYSHM_BLOCK_FREE;
    for (uint64_t k = 0; k < take; k++) {
        int trc = pyshm_block_take(b[k].pool, b[k].index, from, m->holder, &b[k].gen);
        if (!corrupt) {
            EXPECT_EQ(trc, 0);
            struct mpool *mp = mpool_at(b[k].pool->offset);
            mp->kind[b[k].index] = PYSHM_BLOCK_HELD;
            mp->gen[b[k].index]++;
            mp->holder[b[k].index] = mholder(e);
        }
        if (trc == 0) {
            check_block(&sp[g].s, &b[k], "ghost take");
            add_held(&b[k], g);
        }
    }
    uint64_t release = progress > n ? progress - n : 0;
    if (release > n)
        release = n;
    if (take < taken)
        release = 0; /* releasing comes after every take */
    for (uint64_t k = 0; k < release; k++) {
        pyshm_queue_release(hq, pos + k);
        if (!corrupt)
            mq_release(q, pos + k);
    }
}

/* A producer's steps (mempool.c pyshm_blocks_hand_over) up to `progress`: claim n, stage
 * the first min(progress, n), move the first progress - n states, lower the held count at
 * 2n, publish the first progress - 2n. */
static void ghost_give_steps(int g, struct pyshm_member *m, const struct pyshm_queue *hq, const struct pyshm_pool *only,
                             uint64_t n, uint64_t progress, int ring)
{
    struct pyshm_block b[MAX_BURST];
    uint64_t k = 0;
    for (int i = 0; i < n_held && k < n; i++) {
        const struct pyshm_block *h = &held[i].b;
        if (held[i].table != g || (only && h->pool->offset != only->offset))
            continue;
        if (pyshm_block_check_held(h->pool, h->index, h->gen, m->holder) != 0)
            continue;
        int dup = 0;
        for (uint64_t x = 0; x < k; x++)
            dup |= b[x].pool->offset == h->pool->offset && b[x].index == h->index;
        if (!dup)
            b[k++] = *h;
    }
    if (k == 0)
        return;
    n = k;
    struct mqueue *q = corrupt ? NULL : mqueue_by_id(hq->id);
    int e = corrupt ? -1 : ment_of(m);
    uint64_t pos = 0;
    if (spin_guard(hq, PYSHM_RING_ENQ, n, n))
        return;
    int64_t rc = pyshm_queue_claim(hq, m, PYSHM_RING_ENQ, n, n, &pos, NULL, NULL);
    trace_op("ghost s%d: claim %" PRIu64 " of queue %#" PRIx64 " (enq) = %" PRId64 " at %" PRIu64 ", progress %" PRIu64,
             g, n, hq->id, rc, pos, progress);
    if (!corrupt) {
        ASSERT(q);
        if (mq_enq_ready(q, n)) {
            EXPECT_EQ(rc, (int64_t)n);
            EXPECT_EQ(pos, q->enq);
            q->enq += n;
            ment[e].what = q->id | PYSHM_ANNOUNCE_ENQ;
            ment[e].pos = pos;
            ment[e].n = n;
        } else {
            EXPECT_EQ(rc, -PYSHM_EFULL);
        }
    } else {
        CHECK_RC(rc, 3, (int)n, -PYSHM_EFULL, -PYSHM_ECORRUPT);
    }
    if (rc <= 0)
        return;
    enum pyshm_block_kind to = ring ? PYSHM_BLOCK_IN_RING : PYSHM_BLOCK_FREE;
    uint64_t staged = progress < n ? progress : n;
    uint64_t moved = progress > n ? (progress - n < n ? progress - n : n) : 0;
    int lowered = progress >= 2 * n;
    uint64_t published = progress > 2 * n ? (progress - 2 * n < n ? progress - 2 * n : n) : 0;
    for (uint64_t i = 0; i < staged; i++) {
        uint64_t value = ring ? pyshm_pool_block_offset(b[i].pool, b[i].index) : b[i].index;
        pyshm_queue_stage(hq, pos + i, value);
        if (!corrupt) {
            struct mslot *sl = mq_slot(q, pos + i);
            sl->phase = PYSHM_RING_STAGED;
            sl->value = value;
            sl->batch = 0;
        }
    }
    for (uint64_t i = 0; i < moved; i++) {
        int trc = pyshm_block_transition(&b[i].pool->words[b[i].index].state, PYSHM_BLOCK_HELD, b[i].gen, to);
        if (!corrupt) {
            EXPECT_EQ(trc, 0);
            struct mpool *mp = mpool_at(b[i].pool->offset);
            mp->kind[b[i].index] = (uint8_t)to;
            mp->gen[b[i].index]++;
        }
    }
    if (lowered) {
        pyshm_member_held_add(m, -(int64_t)n);
        if (!corrupt)
            ment[e].held -= n;
    }
    for (uint64_t i = 0; i < published; i++) {
        pyshm_queue_publish(hq, pos + i);
        if (!corrupt)
            mq_slot(q, pos + i)->phase = PYSHM_RING_FULL;
    }
}

static void op_ghost_step(struct reader *rd)
{
    int g = pick_ghost(rd, 1);
    uint8_t kind = rd8(rd);
    uint8_t nsel = rd8(rd), progress = rd8(rd), then = rd8(rd);
    const struct pyshm_pool *p = NULL;
    struct hring *hr = NULL;
    uint8_t step = (kind & 7) % 6; /* bit 3: on a Ring (steps 4, 5); bit 4: the consumers' side */
    if (step == 2 || step == 3 || (step >= 4 && (kind & 8)))
        hr = pick_ring(rd);
    else if (g >= 0)
        p = ghost_pool(g, rd);
    if (g < 0 || (!p && !hr))
        return;
    struct pyshm_member *m = member_of(g);
    if (!m)
        return;
    struct pyshm_block_ring ring;
    if (hr && pyshm_block_ring_attach(&sp[g].s.region, hr->h.offset, &ring) != 0) {
        if (!corrupt)
            FAIL("a ghost cannot attach a clean Ring");
        return;
    }
    const struct pyshm_queue *hq = hr ? &ring.queue : &p->free_queue;
    uint64_t cap = hq->ring.capacity, n = 1 + nsel % (cap < MAX_BURST ? cap : MAX_BURST);
    switch (step) {
    case 0: ghost_take_steps(g, m, hq, n, progress % (2 * n + 1), 0); break;
    case 1: ghost_give_steps(g, m, hq, p, n, progress % (3 * n + 1), 0); break;
    case 2: ghost_give_steps(g, m, hq, NULL, n, progress % (3 * n + 1), 1); break;
    case 3: ghost_take_steps(g, m, hq, n, progress % (2 * n + 1), 1); break;
    case 5: { /* killed between the stores of its seqlock (pyshm_member_write): the odd
               * sequence, then some of the fields */
        enum pyshm_announce_side side = kind & 16 ? PYSHM_ANNOUNCE_DEQ : PYSHM_ANNOUNCE_ENQ;
        struct pyshm_member_entry *e = m->entry;
        atomic_store_explicit(&e->ann_seq, m->ann_seq + 1, memory_order_relaxed);
        if (progress & 1)
            atomic_store_explicit(&e->what, hq->id | side, memory_order_relaxed);
        if (progress & 2)
            atomic_store_explicit(&e->pos, pyshm_ring_head(&hq->ring, PYSHM_RING_ENQ, memory_order_relaxed),
                                  memory_order_relaxed);
        if (progress & 4)
            atomic_store_explicit(&e->n, n, memory_order_relaxed);
        trace_op("ghost s%d: dies mid-announcement (%d)", g, progress & 7);
        if (!corrupt)
            ment[ment_of(m)].midwrite = 1;
        ghost_end(g, 1);
        return;
    }
    default: { /* announce a claim, and never make it (the CAS is lost or never tried) */
        enum pyshm_announce_side side = kind & 16 ? PYSHM_ANNOUNCE_DEQ : PYSHM_ANNOUNCE_ENQ;
        uint64_t head = pyshm_ring_head(&hq->ring, side == PYSHM_ANNOUNCE_ENQ ? PYSHM_RING_ENQ : PYSHM_RING_DEQ,
                                        memory_order_relaxed);
        uint64_t pos = head - 2 + progress % 5;
        pyshm_member_announce(m, hq->id, side, pos, n);
        trace_op("ghost s%d: announces %" PRIu64 " of queue %#" PRIx64 " side %d at %" PRIu64, g, n, hq->id, side, pos);
        if (!corrupt) {
            int e = ment_of(m);
            ment[e].what = hq->id | side;
            ment[e].pos = pos;
            ment[e].n = n;
        }
    }
    }
    if (then & 1) {
        ghost_end(g, 1);
    } else {
        sp[g].ghost = GHOST_STALLED;
        trace_op("ghost s%d stalls", g);
    }
}

static void op_ghost_end(struct reader *rd)
{
    int g = pick_ghost(rd, 0);
    uint8_t how = rd8(rd);
    if (g >= 0)
        ghost_end(g, how & 1);
}

/* ------------------------------------------------------------------------------------ */
/* a queue still in its first state, moved to just below 2^64                             */

static void place_queue(const struct pyshm_ring *r, uint64_t start)
{
    uint64_t cap = r->capacity, full = r->start_full;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t p = start + i;
        struct pyshm_ring_slot *slot = pyshm_ring_slot_at(r, p);
        atomic_store(&slot->value, full ? i - pyshm_ring_value_bias(r, p) : 0);
        atomic_store(&slot->seq,
                     pyshm_ring_seq_encode(r, p, pyshm_ring_seq(p, full ? PYSHM_RING_FULL : PYSHM_RING_EMPTY)));
    }
    atomic_store(r->enq_pos, start + (full ? cap : 0) - pyshm_ring_counter_bias(r, PYSHM_RING_ENQ));
    atomic_store(r->deq_pos, start);
}

static void op_fast_forward(struct reader *rd)
{
    uint8_t which = rd8(rd);
    uint16_t k = rd16(rd);
    const struct pyshm_queue *hq = NULL;
    int table;
    struct hring *hr = NULL;
    const struct pyshm_pool *p = NULL;
    if (which & 1)
        hr = pick_ring(rd);
    else
        p = pick_pool(rd, &table);
    if (hr)
        hq = &hr->h.queue;
    else if (p)
        hq = &p->free_queue;
    if (!hq)
        return;
    uint64_t cap = hq->ring.capacity, start = (uint64_t)0 - 1 - k % (8 * cap);
    if (!corrupt) {
        struct mqueue *q = mqueue_by_id(hq->id);
        ASSERT(q);
        int pristine = (cap & (cap - 1)) == 0 && q->deq == 0 && q->enq == (hr ? 0 : cap);
        for (int i = 0; i < NENT && pristine; i++)
            pristine = !(ment[i].owned && (ment[i].what & ~PYSHM_ANNOUNCE_SIDES) == hq->id);
        if (!pristine)
            return; /* only a first state stands for a long history */
        q->deq = start;
        q->enq = start + (hr ? 0 : cap);
        for (uint64_t i = 0; i < cap; i++) {
            struct mslot *sl = mq_slot(q, start + i);
            sl->pos = start + i;
            sl->phase = hr ? PYSHM_RING_EMPTY : PYSHM_RING_FULL;
            sl->value = hr ? 0 : i;
            sl->batch = 0;
        }
    }
    trace_op("fast-forward queue %#" PRIx64 " to %" PRIu64, hq->id, start);
    place_queue(&hq->ring, start);
    /* A pool's long history had every block out: its first get past count marked it
     * lapped (mempool.c). Without the mark, the consumers' head that wraps to 0 would say
     * no block was ever out, and a repair would not look for a dead getter's blocks. */
    if (p)
        atomic_store(p->lapped, 1);
}

/* ------------------------------------------------------------------------------------ */
/* corrupting writes                                                                      */

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
    write_field(rd, base1() + f[k].off, f[k].width, f[k].name);
}

static void op_w_member(struct reader *rd)
{
    uint8_t i = rd8(rd), k = rd8(rd);
    struct pyshm_member_entry *e = &sp[S1].s.members.table->entry[i];
    static const struct {
        size_t off;
        const char *name;
    } f[] = {
        {offsetof(struct pyshm_member_entry, owner), "entry.owner"},
        {offsetof(struct pyshm_member_entry, ann_seq), "entry.ann_seq"},
        {offsetof(struct pyshm_member_entry, what), "entry.what"},
        {offsetof(struct pyshm_member_entry, pos), "entry.pos"},
        {offsetof(struct pyshm_member_entry, n), "entry.n"},
        {offsetof(struct pyshm_member_entry, held), "entry.held"},
        {offsetof(struct pyshm_member_entry, pid), "entry.pid"},
        {offsetof(struct pyshm_member_entry, pidns), "entry.pidns"},
        {offsetof(struct pyshm_member_entry, pidfs), "entry.pidfs"},
    };
    k %= sizeof(f) / sizeof(f[0]);
    if (k == 0 && (rd8(rd) & 1)) { /* an owner word: an incarnation and flags */
        uint8_t inc = rd8(rd), flags = rd8(rd);
        store_field((uint8_t *)e + f[k].off, 8, (uint64_t)inc << 3 | (flags & 7), f[k].name);
        return;
    }
    if (k == 6 && (rd8(rd) & 1)) { /* a pid that exists: ours, our parent's, init's */
        uint8_t w = rd8(rd);
        store_field((uint8_t *)e + f[k].off, 8, w % 3 == 0 ? (uint64_t)getpid() : w % 3 == 1 ? (uint64_t)getppid() : 1,
                    f[k].name);
        return;
    }
    write_field(rd, (uint8_t *)e + f[k].off, 8, f[k].name);
}

/* The offset of an object the program knows of, with room for `need` bytes of it. */
static int pick_object(struct reader *rd, uint64_t need, uint64_t *off)
{
    uint8_t sel = rd8(rd);
    if (n_forged && (sel & 1))
        *off = forged[(sel >> 1) % (n_forged < 8 ? n_forged : 8)];
    else if (n_mobjs)
        *off = mobjs[(sel >> 1) % n_mobjs].offset;
    else {
        const struct pyshm_pool *p = any_pool(sel);
        if (!p)
            return -1;
        *off = p->offset;
    }
    return *off <= sp[S1].s.region.map_size && sp[S1].s.region.map_size - *off >= need ? 0 : -1;
}

static void op_w_obj_hdr(struct reader *rd)
{
    uint64_t off;
    uint8_t k = rd8(rd);
    if (pick_object(rd, sizeof(struct pyshm_object_header), &off) < 0)
        return;
    uint8_t *o = base1() + off;
    switch (k % 6) {
    case 0: write_field(rd, o + offsetof(struct pyshm_object_header, magic), 8, "object.magic"); break;
    case 1: write_field(rd, o + offsetof(struct pyshm_object_header, kind), 4, "object.kind"); break;
    case 2: write_field(rd, o + offsetof(struct pyshm_object_header, layout_version), 4, "object.layout_version"); break;
    case 3: write_field(rd, o + offsetof(struct pyshm_object_header, size), 8, "object.size"); break;
    case 4: write_field(rd, o + offsetof(struct pyshm_object_header, next), 8, "object.next"); break;
    default: {
        uint8_t i = rd8(rd) % (PYSHM_NAME_MAX + 1), c = rd8(rd);
        store_field(o + offsetof(struct pyshm_object_header, name) + i, 1, c % 4 == 0 ? 0 : (uint8_t) "n0123xyz"[c % 8],
                    "object.name");
    }
    }
}

static void op_w_pool_geom(struct reader *rd)
{
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
        {offsetof(struct pyshm_pool_shared, holders_offset), "pool.holders_offset"},
        {offsetof(struct pyshm_pool_shared, data_offset), "pool.data_offset"},
    };
    uint8_t k = rd8(rd) % (sizeof(f) / sizeof(f[0]));
    uint64_t off;
    if (pick_object(rd, sizeof(struct pyshm_pool_shared), &off) < 0)
        return;
    write_field(rd, base1() + off + f[k].off, 8, f[k].name);
}

static void op_w_ring_hdr(struct reader *rd)
{
    static const struct {
        size_t off;
        const char *name;
    } f[] = {
        {offsetof(struct pyshm_block_ring_shared, capacity), "ring.capacity"},
        {offsetof(struct pyshm_block_ring_shared, flags), "ring.flags"},
        {offsetof(struct pyshm_block_ring_shared, slots_offset), "ring.slots_offset"},
        {offsetof(struct pyshm_block_ring_shared, shutdown), "ring.shutdown"},
    };
    uint8_t k = rd8(rd) % (sizeof(f) / sizeof(f[0]));
    uint64_t off;
    if (pick_object(rd, sizeof(struct pyshm_block_ring_shared), &off) < 0)
        return;
    write_field(rd, base1() + off + f[k].off, 8, f[k].name);
}

static void op_w_raw_hdr(struct reader *rd)
{
    uint8_t k = rd8(rd);
    uint64_t off;
    if (pick_object(rd, sizeof(struct pyshm_rawbuf_shared), &off) < 0)
        return;
    if (k & 1)
        write_field(rd, base1() + off + offsetof(struct pyshm_rawbuf_shared, size), 8, "rawbuf.size");
    else
        write_field(rd, base1() + off + offsetof(struct pyshm_rawbuf_shared, data_offset), 8, "rawbuf.data_offset");
}

/* The queue of a pool or a Ring the program has a handle on (its pointers are into the
 * mapping of an open space). 0, or -1 if there is none. */
static int pick_queue(struct reader *rd, struct pyshm_queue *out)
{
    uint8_t which = rd8(rd);
    if (which & 1) {
        struct hring *hr = pick_ring(rd);
        if (!hr)
            return -1;
        *out = hr->h.queue;
        return 0;
    }
    int table;
    const struct pyshm_pool *p = pick_pool(rd, &table);
    if (!p)
        return -1;
    *out = p->free_queue;
    return 0;
}

static void op_w_counter(struct reader *rd)
{
    struct pyshm_queue q;
    int have = pick_queue(rd, &q);
    uint8_t k = rd8(rd);
    if (have < 0)
        return;
    struct pyshm_queue_shared *c = q.shared;
    switch (k % 6) {
    case 0: write_field(rd, (void *)&c->enq_pos, 8, "queue.enq_pos"); break;
    case 1: write_field(rd, (void *)&c->deq_pos, 8, "queue.deq_pos"); break;
    case 2: write_field(rd, (void *)&c->not_empty.epoch, 4, "not_empty.epoch"); break;
    case 3: write_field(rd, (void *)&c->not_empty.marker, 8, "not_empty.marker"); break;
    case 4: write_field(rd, (void *)&c->not_full.epoch, 4, "not_full.epoch"); break;
    default: write_field(rd, (void *)&c->not_full.marker, 8, "not_full.marker"); break;
    }
}

static void op_w_slot(struct reader *rd)
{
    struct pyshm_queue q;
    int have = pick_queue(rd, &q);
    uint16_t i = rd16(rd);
    uint8_t k = rd8(rd);
    if (have < 0)
        return;
    struct pyshm_ring_slot *s = &q.ring.slots[i % q.ring.capacity];
    if (k & 1)
        write_field(rd, (void *)&s->value, 8, "slot.value");
    else
        write_field(rd, (void *)&s->seq, 8, "slot.seq");
}

static void op_w_state(struct reader *rd)
{
    int table;
    const struct pyshm_pool *p = pick_pool(rd, &table);
    uint16_t i = rd16(rd);
    uint8_t k = rd8(rd);
    if (!p)
        return;
    if (k & 1)
        write_field(rd, (void *)&p->words[i % p->count].holder, 8, "block.holder");
    else
        write_field(rd, (void *)&p->words[i % p->count].state, 8, "block.state");
}

static void op_w_raw(struct reader *rd)
{
    uint32_t at = rd32(rd);
    uint8_t len = rd8(rd) % 16 + 1;
    uint64_t limit = sp[S1].s.region.map_size;
    uint64_t start = at % limit;
    if (len > limit - start)
        len = (uint8_t)(limit - start);
    uint8_t bytes[16];
    for (uint8_t i = 0; i < len; i++)
        bytes[i] = rd8(rd);
    trace_op("  write raw [%" PRIu64 ", +%u)", start, len);
    set_corrupt("raw write");
    memcpy(base1() + start, bytes, len);
}

/*
 * Forging a whole object, as a hostile process would: a header consistent in every field
 * the core cross-checks (the pool layout below mirrors mempool.c's), at any 64-aligned
 * offset, of any geometry (so it may overlap live objects or run past the region's end),
 * optionally with zeroed counters and slots (a fresh queue) and pushed on the object list.
 * Writes are clipped to the region.
 */
static void forge_bytes(uint64_t at, const void *src, uint64_t n)
{
    if (at >= region_end())
        return;
    if (n > region_end() - at)
        n = region_end() - at;
    memcpy(base1() + at, src, n);
}
static void forge_u64(uint64_t at, uint64_t v) { forge_bytes(at, &v, 8); }
static void forge_zero(uint64_t at, uint64_t n)
{
    if (at >= region_end())
        return;
    if (n > region_end() - at)
        n = region_end() - at;
    memset(base1() + at, 0, n);
}

/* opts & 8: the header lies about its size, claiming just what is left of the region. */
static void forge_object(uint64_t at, uint32_t kind, uint64_t size, uint8_t name, int link, uint8_t opts)
{
    forged[n_forged++ % 8] = at;
    if ((opts & 8) && at < region_end())
        size = (region_end() - at) & ~(uint64_t)(PYSHM_CACHE_LINE - 1);
    struct pyshm_object_header o;
    memset(&o, 0, sizeof(o));
    o.magic = PYSHM_OBJECT_MAGIC;
    o.kind = kind;
    o.layout_version = PYSHM_LAYOUT_VERSION;
    o.size = size;
    const char *nm = names[name % N_NAMES];
    if (nm && strlen(nm) <= PYSHM_NAME_MAX)
        memcpy(o.name, nm, strlen(nm));
    struct pyshm_region_header *h = (struct pyshm_region_header *)base1();
    if (link) {
        o.next = atomic_load_explicit(&h->objects_head, memory_order_relaxed);
        forge_bytes(at, &o, sizeof(o));
        atomic_store_explicit(&h->objects_head, at, memory_order_relaxed);
    } else {
        /* keep the next link that is there */
        o.next = at + sizeof(o) <= region_end() ? ((struct pyshm_object_header *)(base1() + at))->next : 0;
        forge_bytes(at, &o, sizeof(o));
    }
}

/* A geometry from two bytes and a scale: mostly small, sometimes past any region. */
static uint64_t forged_number(uint16_t v, uint8_t scale)
{
    return (uint64_t)(v ? v : 1) << (scale % 4 == 3 ? scale / 4 % 30 : 0);
}

static void op_w_forge_pool(struct reader *rd)
{
    uint64_t at = pick_value(rd, known_offset(rd)) & ~(uint64_t)(PYSHM_CACHE_LINE - 1);
    uint64_t count = forged_number(rd16(rd), rd8(rd)), elt = forged_number(rd16(rd), rd8(rd));
    uint8_t flags = rd8(rd), opts = rd8(rd), name = rd8(rd);
    if (at < PYSHM_OBJECTS_OFFSET || at >= region_end())
        return;
    uint64_t stride = elt < PYSHM_CACHE_LINE ? PYSHM_ALIGN_UP(elt, 8) : PYSHM_ALIGN_UP(elt, PYSHM_CACHE_LINE);
    uint64_t slots = sizeof(struct pyshm_pool_shared), states = slots + count * sizeof(struct pyshm_ring_slot);
    uint64_t holders = states + 8, data = PYSHM_ALIGN_UP(states + count * 16, PYSHM_CACHE_LINE);
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
    forge_u64(at + offsetof(struct pyshm_pool_shared, holders_offset), at + holders);
    forge_u64(at + offsetof(struct pyshm_pool_shared, data_offset), at + data);
    if (opts & 2) { /* a fresh pool: zero is a full free queue of FREE blocks */
        forge_zero(at + offsetof(struct pyshm_pool_shared, free_queue), sizeof(struct pyshm_queue_shared));
        forge_zero(at + slots, data - slots);
    }
}

static void op_w_forge_ring(struct reader *rd)
{
    uint64_t at = pick_value(rd, known_offset(rd)) & ~(uint64_t)(PYSHM_CACHE_LINE - 1);
    uint64_t cap = forged_number(rd16(rd), rd8(rd));
    uint8_t flags = rd8(rd), opts = rd8(rd), name = rd8(rd);
    if (at < PYSHM_OBJECTS_OFFSET || at >= region_end())
        return;
    uint64_t hdr = sizeof(struct pyshm_block_ring_shared);
    uint64_t size = PYSHM_ALIGN_UP(hdr + cap * sizeof(struct pyshm_ring_slot), PYSHM_CACHE_LINE);
    trace_op("  forge ring @%" PRIu64 ": capacity %" PRIu64 " size %" PRIu64 " opts %#x", at, cap, size, opts);
    set_corrupt("forged ring");
    forge_object(at, PYSHM_KIND_RING, size, name, opts & 1, opts);
    forge_u64(at + offsetof(struct pyshm_block_ring_shared, capacity), cap);
    forge_u64(at + offsetof(struct pyshm_block_ring_shared, flags), flags & PYSHM_BLOCK_RING_FLAGS);
    forge_u64(at + offsetof(struct pyshm_block_ring_shared, slots_offset), at + hdr);
    forge_u64(at + offsetof(struct pyshm_block_ring_shared, shutdown), opts & 4 ? 1 : 0);
    if (opts & 2) { /* empty, first position 0 */
        forge_zero(at + offsetof(struct pyshm_block_ring_shared, queue), sizeof(struct pyshm_queue_shared));
        forge_zero(at + hdr, cap * sizeof(struct pyshm_ring_slot) < (UINT64_C(1) << 30) ? cap * 16 : (UINT64_C(1) << 30));
    }
}

/* ------------------------------------------------------------------------------------ */
/* the program                                                                            */

/* After every operation: the safety checks, the model's, and forgetting blocks that moved
 * on (put and enqueue variants make stale and foreign copies on purpose). */
HARNESS static void after_op(void)
{
    check_tables();
    for (int i = n_held - 1; i >= 0; i--) {
        const struct pyshm_block *b = &held[i].b;
        if (b->index >= b->pool->count ||
            atomic_load_explicit(&b->pool->words[b->index].state, memory_order_relaxed) !=
                pyshm_block_state(b->gen, PYSHM_BLOCK_HELD))
            held[i] = held[--n_held];
    }
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (hrings[i].owner >= 0)
            check_ring_in_region(&sp[hrings[i].owner].s.region, &hrings[i].h);
        if (hraws[i].owner >= 0)
            check_raw_in_region(&sp[hraws[i].owner].s.region, &hraws[i].h);
    }
    model_check();
}

static void run_op(struct reader *rd)
{
    uint8_t op = rd8(rd) % OP_COUNT;
    switch (op) {
    case OP_POOL_CREATE: op_pool_create(rd); break;
    case OP_RING_CREATE: op_ring_create(rd); break;
    case OP_RAW_CREATE: op_raw_create(rd); break;
    case OP_GET: op_get(rd); break;
    case OP_PUT: op_put(rd); break;
    case OP_ENQ: op_enq(rd); break;
    case OP_DEQ: op_deq(rd); break;
    case OP_DRAIN: op_drain(rd); break;
    case OP_SHUTDOWN: op_shutdown(rd); break;
    case OP_FIND_NAMED: op_find_named(rd); break;
    case OP_TABLE_FIND: op_table_find(rd); break;
    case OP_POOL_ATTACH: op_pool_attach(rd); break;
    case OP_RING_ATTACH: op_ring_attach(rd); break;
    case OP_RAW_ATTACH: op_raw_attach(rd); break;
    case OP_REOPEN_S2: op_reopen_s2(); break;
    case OP_REPAIR: op_repair(rd); break;
    case OP_BLOCK_WRITE: op_block_write(rd); break;
    case OP_RAW_WRITE: op_raw_write(rd); break;
    case OP_COUNTS: op_counts(); break;
    case OP_GHOST_NEW: op_ghost_new(); break;
    case OP_GHOST_GET: op_ghost_get(rd); break;
    case OP_GHOST_STEP: op_ghost_step(rd); break;
    case OP_GHOST_END: op_ghost_end(rd); break;
    case OP_FAST_FORWARD: op_fast_forward(rd); break;
    case OP_W_REGION_HDR: op_w_region_hdr(rd); break;
    case OP_W_MEMBER: op_w_member(rd); break;
    case OP_W_OBJ_HDR: op_w_obj_hdr(rd); break;
    case OP_W_POOL_GEOM: op_w_pool_geom(rd); break;
    case OP_W_RING_HDR: op_w_ring_hdr(rd); break;
    case OP_W_RAW_HDR: op_w_raw_hdr(rd); break;
    case OP_W_COUNTER: op_w_counter(rd); break;
    case OP_W_SLOT: op_w_slot(rd); break;
    case OP_W_STATE: op_w_state(rd); break;
    case OP_W_RAW: op_w_raw(rd); break;
    case OP_W_FORGE_POOL: op_w_forge_pool(rd); break;
    case OP_W_FORGE_RING: op_w_forge_ring(rd); break;
    }
    after_op();
}

/* A bound on the work one input can ask for: each op is bounded, so is the program. */
#define MAX_OPS 400

static uint64_t region_size_of(uint16_t v)
{
    return v < 32768 ? PYSHM_MIN_REGION_SIZE + v : PYSHM_MIN_REGION_SIZE + 64 * (uint64_t)(v - 32768);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    static uint64_t budget_ns = 500 * UINT64_C(1000000);
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
    uint64_t region_size = region_size_of(rd16(&rd));

    corrupt = 0;
    model_free_all();
    memset(sp, 0, sizeof(sp));
    for (int i = 0; i < MAX_HANDLES; i++)
        hrings[i].owner = hraws[i].owner = -1;
    n_held = 0;
    n_forged = 0;
    n_spun = 0;
    op_number = 0;

    int rc = pyshm_space_create(&sp[S1].s, region_size);
    if (rc < 0)
        FAIL("space_create(%" PRIu64 ") = %d", region_size, rc);
    ASSERT(sp[S1].s.region.fd >= 0 && sp[S1].s.members.lock_fd >= 0);
    guard_mapping(&sp[S1]);
    sp[S1].open = 1;
    trace_op("space_create(%" PRIu64 ")", region_size);
    model_carve_end = atomic_load_explicit(&((struct pyshm_region_header *)base1())->carve_end, memory_order_relaxed);
    EXPECT_EQ(model_carve_end, PYSHM_OBJECTS_OFFSET);
    op_reopen_s2();

    for (op_number = 1; rd.n > 0 && op_number <= MAX_OPS; op_number++) {
        if (budget_ns && pyshm_now_ns() - started > budget_ns) {
            trace_op("(time budget spent: the rest of the program is not run)");
            break;
        }
        run_op(&rd);
    }

    for (int s = NSPACES - 1; s >= 0; s--)
        if (sp[s].open)
            close_space(&sp[s]);
    model_free_all();
    n_held = 0;
    return 0;
}
