/* scenarios.c - the scenarios, the actor scripts, and the invariants checked after every
 * schedule. Talks to the core only through sim.h. */
#define _GNU_SOURCE
#include "scenarios.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

/* ------------------------------------------------------------------ the scenarios */

#define SH(P, K, R, C, PF, RF, N)                                                                                       \
    {.pools = P, .blocks = K, .rings = R, .ring_capacity = C, .pool_flags = PF, .ring_flags = RF, .actors = N}
#define DFS(P, K) .strategy = SCHED_DFS, .max_preempt = P, .max_kills = K
#define PCT(D, K) .strategy = SCHED_PCT, .pct_depth = D, .max_kills = K

const struct scenario scenarios[] = {
    /* ---- the review's defects: each must be found by its scenario ---- */
    {.name = "d1_sp_put_vs_reclaim", .defect = "1",
     .about = "a pool made with F_SP_PUT: its one putter puts while a reclaim puts a dead holder's block back",
     .shape = SH(1, 2, 0, 0, SIM_POOL_SP_PUT, 0, 3), .script = {"get", "get put", "reclaim"}, DFS(1, 1),
     .expect = "op-error,stranded,twice-queued,double-holder,flow"},
    {.name = "d2_getter_dies_during_reclaim", .defect = "2",
     .about = "a getter that claimed and took a block dies while a reclaim that saw it alive runs",
     .shape = SH(1, 2, 0, 0, 0, 0, 3), .script = {"get", "get", "reclaim"}, DFS(1, 1),
     .expect = "twice-queued,double-holder,dup-delivery"},
    {.name = "d3_consumers_race_winner_killed", .defect = "3",
     .about = "two consumers race for one message; the winner is killed mid-dequeue, the loser's claim CAS failed",
     .shape = SH(1, 2, 1, 1, 0, 0, 3), .script = {"enq", "deqk", "deqk"}, DFS(1, 1), .expect = "unfinished-deq"},
    {.name = "d3b_getters_race_winner_killed", .defect = "3",
     .about = "the same on a free queue: two getters race for a pool's only block, the winner is killed mid-get",
     .shape = SH(1, 1, 0, 0, 0, 0, 2), .script = {"get", "get"}, DFS(1, 1), .expect = "unfinished-deq"},
    {.name = "d3c_inflight_announcement", .defect = "3",
     .about = "a variant: the repair runs while the race's loser has announced but not yet tried its CAS; the loser "
              "then succeeds at the next position, so no stale announcement is left, yet the slot is lost",
     .shape = SH(1, 2, 0, 0, 0, 0, 3), .script = {"get", "get", "reclaim"}, DFS(1, 1), .mortal = 2u,
     .kill_modes = SCHED_KILL_SELF, .preemptible = 3u, .expect = "unfinished-deq,flow"},
    {.name = "d5_repairer_keeps_block", .defect = "5",
     .about = "a consumer (entry 0) and a getter (entry 1) die mid-claim: repair puts the ring's block back into a "
              "free queue the getter's slot still blocks",
     .shape = SH(1, 2, 1, 1, 0, 0, 3), .script = {"deqwk", "get", "enq"}, DFS(0, 2), .expect = "kept-by-live"},
    {.name = "d5b_orphan_put_blocked", .defect = "5",
     .about = "the orphan step: a producer dies mid-enqueue (its block IN_RING in no slot); a reclaim puts the orphan "
              "back while a getter's claimed slot blocks the free queue, and the getter dies",
     .shape = SH(1, 2, 1, 1, 0, 0, 3), .script = {"get", "enq", "reclaim"}, DFS(1, 2),
     /* only the getter and the producer die, each at its own step; the reclaim is not
      * preempted (it still yields): other defects (2, 3) are reachable with fewer events */
     .mortal = 3u, .kill_modes = SCHED_KILL_SELF, .preemptible = 3u, .no_deepening = 1, .expect = "kept-by-live"},
    {.name = "d6_putter_killed_after_claim", .defect = "6",
     .about = "a putter is killed after claiming its free-queue position: the hole takes the orphan's place",
     .shape = SH(1, 2, 0, 0, 0, 0, 1), .script = {"get put"}, DFS(0, 1), .expect = "stranded"},
    {.name = "d7_repairer_killed_mid_put", .defect = "7",
     .about = "a holder dies, then the repairer putting its block back is killed between claim and publish",
     .shape = SH(1, 2, 0, 0, 0, 0, 2), .script = {"get", "reclaim"}, DFS(0, 2), .expect = "unfinished-enq"},

    /* ---- general exploration: small shapes exhaustively ---- */
    {.name = "pool_two_getters", .about = "two processes get and put on one pool", .shape = SH(1, 2, 0, 0, 0, 0, 2),
     .script = {"get put", "get put"}, DFS(2, 1), .max_spurious = 1},
    {.name = "pool_bursts", .about = "burst and single gets and puts", .shape = SH(1, 3, 0, 0, 0, 0, 2),
     .script = {"get2 put2", "get put"}, DFS(2, 1)},
    {.name = "pool_holder_and_supervisor", .about = "a holder, a getter/putter and a supervisor that reclaims",
     .shape = SH(1, 3, 0, 0, 0, 0, 3), .script = {"get", "get put", "reclaim"}, DFS(1, 2)},
    {.name = "ring_spsc", .about = "one producer, one waiting consumer, capacity 1", .shape = SH(1, 2, 1, 1, 0, 0, 2),
     .script = {"enq enq", "deqw deqw"}, DFS(2, 1)},
    {.name = "ring_two_consumers", .about = "one producer, two consumers that put back", .shape = SH(1, 3, 1, 2, 0, 0, 3),
     .script = {"enq enq", "deqw", "deqw"}, DFS(1, 1)},
    {.name = "ring_bursts", .about = "burst producer, burst consumer", .shape = SH(1, 3, 1, 2, 0, 0, 2),
     .script = {"enq2 enq", "deq2w deqw"}, DFS(2, 1)},
    {.name = "ring_supervised", .about = "producer, consumer, and a supervisor that repairs",
     .shape = SH(1, 3, 1, 2, 0, 0, 3), .script = {"enq enq", "deqw deqw", "repair reclaim"}, DFS(1, 2)},
    {.name = "pc_single_death",
     .about = "one producer, one consumer and a holder that keeps a block (so one hole fits in the free queue); one death",
     .shape = SH(1, 3, 1, 2, 0, 0, 3), .script = {"get", "enq enq", "deqw deqw"}, DFS(2, 1)},
    {.name = "ring_shutdown", .about = "a producer and a consumer that shuts the ring down at once",
     .shape = SH(1, 3, 1, 2, 0, 0, 2), .script = {"enq enq", "deq shutnow"}, DFS(2, 1)},

    /* ---- larger shapes at random (PCT) ---- */
    {.name = "pct_pipeline", .about = "two producers, two waiting consumers, a supervisor; two pools, two rings",
     .shape = SH(2, 4, 2, 2, 0, 0, 5),
     .script = {"enq@0 enq2@1 enq@0", "enq2@1 enq@0", "deqW@0 deq2W@1", "deq2W@1 deqW@0", "repair reclaim"}, PCT(3, 2),
     .max_spurious = 1},
    {.name = "pct_pool_churn", .about = "getters and putters with bursts and a supervisor on a pool of 4",
     .shape = SH(1, 4, 0, 0, 0, 0, 4), .script = {"get2 put get put", "get put get2 putall", "get getw put", "reclaim reclaim"},
     PCT(3, 2), .max_spurious = 1},
    {.name = "pct_ring_full", .about = "producers against a full ring of capacity 2, consumers keeping and putting",
     .shape = SH(1, 4, 1, 2, 0, 0, 4), .script = {"enqw enqw enqw", "enqw enq2w", "deqwk deqw", "deq2W reclaim"},
     PCT(4, 2), .max_spurious = 1},
};
const int scenario_count = (int)(sizeof(scenarios) / sizeof(scenarios[0]));

const struct scenario *scenario_find(const char *name)
{
    for (int i = 0; i < scenario_count; i++)
        if (strcmp(scenarios[i].name, name) == 0)
            return &scenarios[i];
    return NULL;
}

/* ------------------------------------------------------------------ scripts */

enum opkind { OP_GET, OP_PUT, OP_PUTALL, OP_ENQ, OP_DEQ, OP_RECLAIM, OP_REPAIR, OP_SHUT, OP_SHUTNOW, OP_YIELD };

struct op {
    int kind;
    int n;      /* burst size; 1: the single-item call */
    int target; /* pool or ring */
    int keep;   /* deq: keep the blocks */
    int wait;   /* 0, 1 (yield and retry), 2 (also repair-if-someone-is-gone) */
};

#define MAX_OPS 32
#define WAIT_TRIES 6
#define MAX_SEQ 64
#define MAX_HELD (SIM_MAX_POOLS * SIM_MAX_BLOCKS)
#define NIDS (SIM_MAX_ACTORS + 1)

static struct {
    const struct scenario *sc;
    struct op ops[SIM_MAX_ACTORS][MAX_OPS];
    int nops[SIM_MAX_ACTORS];
    int actors, survivor, nblocks;
} P;

struct rec {
    struct sim_block held[MAX_HELD];
    int nheld;
    int seq[SIM_MAX_RINGS];            /* next sequence number stamped, per ring */
    int last[SIM_MAX_RINGS][NIDS];     /* last sequence delivered to us, per ring and producer */
    int in_op, op_kind, op_target;     /* the operation under way (for dead actors) */
};

struct stamp {
    uint32_t magic, producer, ring, seq, check;
};
#define STAMP_MAGIC 0x5ced5eedu

static struct {
    struct rec rec[NIDS];
    unsigned char sent[SIM_MAX_RINGS][NIDS][MAX_SEQ];      /* enqueue returned OK */
    unsigned char refused[SIM_MAX_RINGS][NIDS][MAX_SEQ];   /* enqueue returned an error */
    unsigned char delivered[SIM_MAX_RINGS][NIDS][MAX_SEQ];
    int shut[SIM_MAX_RINGS];  /* 1 graceful, 2 immediate */
    int lossy[SIM_MAX_RINGS]; /* messages may be dropped by design (immediate shutdown, dead consumer) */
    int nviol;
    char code[32];
    char text[1024];
} R;

static const char *kind_name(int k)
{
    static const char *n[] = {"FREE", "HELD", "IN_RING", "BAD"};
    return k >= 0 && k <= 3 ? n[k] : "?";
}

static const char *who(int id)
{
    static char buf[4][32];
    static int i;
    char *b = buf[i++ % 4];
    if (id == SIM_NOBODY)
        return "nobody";
    if (id == SIM_UNKNOWN)
        return "an unknown process";
    if (id == P.survivor)
        return "the survivor";
    snprintf(b, 32, "actor %d%s", id, sched_is_dead(id) ? " (dead)" : "");
    return b;
}

static const char *queue_name(int q)
{
    static char buf[4][32];
    static int i;
    char *b = buf[i++ % 4];
    if (q < P.sc->shape.pools)
        snprintf(b, 32, "free queue %d", q);
    else
        snprintf(b, 32, "ring %d", q - P.sc->shape.pools);
    return b;
}

/* The first violation gives the schedule its code; the text keeps the first three. */
static void violation(const char *code, const char *fmt, ...)
{
    if (R.nviol == 0)
        snprintf(R.code, sizeof R.code, "%s", code);
    if (R.nviol < 3) {
        size_t used = strlen(R.text);
        if (used)
            used += (size_t)snprintf(R.text + used, sizeof R.text - used, "; then ");
        if (used < sizeof R.text)
            used += (size_t)snprintf(R.text + used, sizeof R.text - used, "[%s] ", code);
        va_list ap;
        va_start(ap, fmt);
        if (used < sizeof R.text)
            vsnprintf(R.text + used, sizeof R.text - used, fmt, ap);
        va_end(ap);
    }
    R.nviol++;
}

const char *violation_code(void) { return R.nviol ? R.code : ""; }
const char *violation_text(void) { return R.nviol ? R.text : ""; }

static int is_live(int id) { return id == P.survivor || (id >= 0 && id < P.actors && !sched_is_dead(id)); }

static int parse_flags(const char **sp, struct op *o)
{
    const char *s = *sp;
    for (;; s++) {
        if (*s == 'k')
            o->keep = 1;
        else if (*s == 'w')
            o->wait = 1;
        else if (*s == 'W')
            o->wait = 2;
        else
            break;
    }
    *sp = s;
    return 0;
}

static int parse_script(const char *s, struct op *ops, int *nops)
{
    static const struct {
        const char *name;
        int kind;
    } names[] = {{"shutnow", OP_SHUTNOW}, {"shut", OP_SHUT},   {"reclaim", OP_RECLAIM}, {"repair", OP_REPAIR},
                 {"yield", OP_YIELD},     {"putall", OP_PUTALL}, {"put", OP_PUT},       {"get", OP_GET},
                 {"enq", OP_ENQ},         {"deq", OP_DEQ}};
    *nops = 0;
    while (*s) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        struct op o = {.n = 1, .kind = -1};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            size_t len = strlen(names[i].name);
            if (strncmp(s, names[i].name, len) == 0) {
                o.kind = names[i].kind;
                s += len;
                break;
            }
        }
        if (o.kind < 0)
            return -1;
        parse_flags(&s, &o);
        if (*s >= '0' && *s <= '9') {
            char *end;
            o.n = (int)strtol(s, &end, 10);
            s = end;
        }
        parse_flags(&s, &o);
        if (*s == '@') {
            char *end;
            o.target = (int)strtol(s + 1, &end, 10);
            s = end;
        }
        if (*s && *s != ' ')
            return -1;
        if (o.n < 1 || o.n > SIM_MAX_CAPACITY || *nops == MAX_OPS)
            return -1;
        ops[(*nops)++] = o;
    }
    return 0;
}

int scenario_prepare(const struct scenario *sc)
{
    memset(&P, 0, sizeof P);
    P.sc = sc;
    P.actors = sc->shape.actors;
    P.survivor = sc->shape.actors;
    P.nblocks = sc->shape.pools * sc->shape.blocks;
    for (int a = 0; a < P.actors; a++) {
        if (!sc->script[a] || parse_script(sc->script[a], P.ops[a], &P.nops[a]) < 0) {
            fprintf(stderr, "scenario %s: bad script for actor %d: \"%s\"\n", sc->name, a,
                    sc->script[a] ? sc->script[a] : "(none)");
            return -1;
        }
        for (int i = 0; i < P.nops[a]; i++) {
            const struct op *o = &P.ops[a][i];
            int rings = o->kind == OP_ENQ || o->kind == OP_DEQ || o->kind == OP_SHUT || o->kind == OP_SHUTNOW;
            if ((rings && o->target >= sc->shape.rings) || (o->kind == OP_GET && o->target >= sc->shape.pools)) {
                fprintf(stderr, "scenario %s: actor %d: target out of range\n", sc->name, a);
                return -1;
            }
        }
    }
    return 0;
}

void scenario_reset(void)
{
    memset(&R, 0, sizeof R);
    for (int a = 0; a < NIDS; a++)
        for (int r = 0; r < SIM_MAX_RINGS; r++)
            for (int p = 0; p < NIDS; p++)
                R.rec[a].last[r][p] = -1;
}

/* ---- bookkeeping of what each actor holds ---- */

static int held_find(int a, int id)
{
    for (int i = 0; i < R.rec[a].nheld; i++)
        if (R.rec[a].held[i].id == id)
            return i;
    return -1;
}

static void held_remove(int a, int id)
{
    struct rec *r = &R.rec[a];
    int i = held_find(a, id);
    if (i < 0)
        return;
    memmove(&r->held[i], &r->held[i + 1], (size_t)(r->nheld - i - 1) * sizeof(r->held[0]));
    r->nheld--;
}

static void held_update(int a, const struct sim_block *b)
{
    int i = held_find(a, b->id);
    if (i >= 0)
        R.rec[a].held[i] = *b;
}

/* A block just handed to actor a by get or dequeue. */
static void acquired(int a, const struct sim_block *b, const char *how)
{
    if (b->id < 0 || b->id >= P.nblocks) {
        violation("op-error", "%s handed %s a block id %d out of range", how, who(a), b->id);
        return;
    }
    /* A record is exact only between operations: an actor inside a put or an enqueue has
     * handed its block over before its call returns. The final checks catch the rest. */
    for (int o = 0; o <= P.survivor; o++)
        if (is_live(o) && (o == a || !R.rec[o].in_op) && held_find(o, b->id) >= 0)
            violation("double-holder", "%s handed block %d to %s while %s still holds it", how, b->id, who(a),
                      o == a ? "it" : who(o));
    struct sim_block_info info;
    sim_inspect_block(b->id, &info);
    if (info.kind != SIM_HELD || info.holder != a || !sim_token_matches(b->id, b->token))
        violation("state-mismatch", "%s handed block %d to %s, but its state says %s by %s", how, b->id, who(a),
                  kind_name(info.kind), who(info.holder));
    if (R.rec[a].nheld < MAX_HELD)
        R.rec[a].held[R.rec[a].nheld++] = *b;
}

static void stamp_write(int id, int producer, int ring, int seq)
{
    struct stamp s = {STAMP_MAGIC, (uint32_t)producer, (uint32_t)ring, (uint32_t)seq, 0};
    s.check = s.magic ^ s.producer * 31u ^ s.ring * 7u ^ s.seq * 131u;
    memcpy(sim_block_data(id), &s, sizeof s);
}

static void stamp_clear(int id) { memset(sim_block_data(id), 0, sizeof(struct stamp)); }

static void delivered(int a, int ring, int id)
{
    struct stamp s;
    memcpy(&s, sim_block_data(id), sizeof s);
    if (s.magic != STAMP_MAGIC || s.check != (s.magic ^ s.producer * 31u ^ s.ring * 7u ^ s.seq * 131u) ||
        s.producer > (uint32_t)P.survivor || s.seq >= MAX_SEQ) {
        violation("bad-stamp", "%s dequeued block %d from ring %d: it carries no message (stamp overwritten or "
                  "never written)", who(a), id, ring);
        return;
    }
    if ((int)s.ring != ring) {
        violation("bad-stamp", "%s dequeued from ring %d block %d stamped for ring %u", who(a), ring, id, s.ring);
        return;
    }
    if (R.delivered[ring][s.producer][s.seq])
        violation("dup-delivery", "message %u.%u (block %d) delivered twice, the second time to %s", s.producer, s.seq,
                  id, who(a));
    if (R.refused[ring][s.producer][s.seq])
        violation("phantom", "message %u.%u (block %d) delivered to %s although its enqueue failed", s.producer, s.seq,
                  id, who(a));
    R.delivered[ring][s.producer][s.seq] = 1;
    if ((int)s.seq <= R.rec[a].last[ring][s.producer])
        violation("fifo", "%s got message %u.%u after %u.%d from ring %d", who(a), s.producer, s.seq, s.producer,
                  R.rec[a].last[ring][s.producer], ring);
    R.rec[a].last[ring][s.producer] = (int)s.seq;
}

static int rc_ok_or(int rc, int a, const char *what, int allowed1, int allowed2)
{
    if (rc != SIM_OK && rc != allowed1 && rc != allowed2) {
        violation("op-error", "%s: %s returned %s", who(a), what, sim_rc_name(rc));
        return 0;
    }
    return 1;
}

static void wait_step(int a, const struct op *o, int tries)
{
    if (o->wait == 2 && tries % 2 == 0) {
        struct sim_repair_result res;
        rc_ok_or(sim_repair(a, 1, &res), a, "repair (waiting)", SIM_BUSY, SIM_BUSY);
    }
    sched_yield();
}

/* Give back n blocks of one pool, as one call (single or burst). */
static void put_blocks(int a, struct sim_block *b, int n, int single)
{
    int rc = single ? sim_pool_put(a, b) : sim_pool_put_burst(a, b, n);
    if (rc == SIM_OK) {
        for (int i = 0; i < n; i++)
            held_remove(a, b[i].id);
        return;
    }
    /* AGAIN: still ours, at a new token. */
    rc_ok_or(rc, a, n > 1 ? "put_many" : "put", SIM_AGAIN, SIM_AGAIN);
    for (int i = 0; i < n; i++)
        held_update(a, &b[i]);
}

static void do_put(int a, int count, int all)
{
    struct rec *r = &R.rec[a];
    while (r->nheld > 0 && (all || count > 0)) {
        struct sim_block b[SIM_MAX_BLOCKS];
        int pool = r->held[0].id / P.sc->shape.blocks, n = 0;
        int want = all ? SIM_MAX_BLOCKS : count;
        for (int i = 0; i < r->nheld && n < want && n < SIM_MAX_BLOCKS; i++)
            if (r->held[i].id / P.sc->shape.blocks == pool)
                b[n++] = r->held[i];
        put_blocks(a, b, n, !all && count == 1);
        if (!all)
            return;
        /* blocks put back left the list; blocks refused (AGAIN) stay: stop then */
        if (r->nheld > 0 && r->held[0].id / P.sc->shape.blocks == pool)
            return;
    }
}

static int do_get(int a, int pool, int n, int wait, const struct op *o, struct sim_block *out)
{
    for (int tries = 1;; tries++) {
        int got = 0, rc;
        if (n == 1) {
            rc = sim_pool_get(a, pool, out);
            got = rc == SIM_OK;
        } else {
            rc = sim_pool_get_burst(a, pool, out, n, &got);
        }
        if (rc == SIM_OK) {
            for (int i = 0; i < got; i++)
                acquired(a, &out[i], n == 1 ? "get" : "get_many");
            return got;
        }
        if (!rc_ok_or(rc, a, n == 1 ? "get" : "get_many", SIM_EMPTY, SIM_EMPTY) || !wait || tries >= WAIT_TRIES)
            return 0;
        wait_step(a, o, tries);
    }
}

static void do_enq(int a, const struct op *o)
{
    int ring = o->target, pool = ring % P.sc->shape.pools;
    struct sim_block b[SIM_MAX_CAPACITY];
    int n = do_get(a, pool, o->n, 0, o, b);
    if (n == 0)
        return;
    int seq[SIM_MAX_CAPACITY];
    for (int i = 0; i < n; i++) {
        seq[i] = R.rec[a].seq[ring]++;
        if (seq[i] < MAX_SEQ)
            stamp_write(b[i].id, a, ring, seq[i]);
    }
    int rc;
    for (int tries = 1;; tries++) {
        rc = o->n == 1 ? sim_ring_enqueue(a, ring, b) : sim_ring_enqueue_burst(a, ring, b, n);
        for (int i = 0; i < n; i++)
            held_update(a, &b[i]);
        if (rc != SIM_FULL || !o->wait || tries >= WAIT_TRIES)
            break;
        wait_step(a, o, tries);
    }
    if (rc == SIM_OK) {
        for (int i = 0; i < n; i++) {
            if (seq[i] < MAX_SEQ)
                R.sent[ring][a][seq[i]] = 1;
            held_remove(a, b[i].id);
        }
        return;
    }
    rc_ok_or(rc, a, o->n == 1 ? "enqueue" : "enqueue_many", SIM_FULL, SIM_SHUTDOWN);
    for (int i = 0; i < n; i++) {
        if (seq[i] < MAX_SEQ)
            R.refused[ring][a][seq[i]] = 1;
        stamp_clear(b[i].id);
    }
    put_blocks(a, b, n, o->n == 1);
}

static void do_deq(int a, const struct op *o)
{
    int ring = o->target;
    struct sim_block b[SIM_MAX_CAPACITY];
    int got = 0, rc;
    for (int tries = 1;; tries++) {
        if (o->n == 1) {
            rc = sim_ring_dequeue(a, ring, b);
            got = rc == SIM_OK;
        } else {
            rc = sim_ring_dequeue_burst(a, ring, b, o->n, &got);
        }
        if (rc != SIM_EMPTY || !o->wait || tries >= WAIT_TRIES)
            break;
        wait_step(a, o, tries);
    }
    if (rc != SIM_OK) {
        rc_ok_or(rc, a, o->n == 1 ? "dequeue" : "dequeue_many", SIM_EMPTY, SIM_SHUTDOWN);
        return;
    }
    for (int i = 0; i < got; i++) {
        acquired(a, &b[i], o->n == 1 ? "dequeue" : "dequeue_many");
        delivered(a, ring, b[i].id);
    }
    if (o->keep)
        return;
    for (int i = 0; i < got; i++)
        stamp_clear(b[i].id);
    /* back to their pools, one call per pool */
    for (int p = 0; p < P.sc->shape.pools; p++) {
        struct sim_block same[SIM_MAX_CAPACITY];
        int n = 0;
        for (int i = 0; i < got; i++)
            if (b[i].id / P.sc->shape.blocks == p)
                same[n++] = b[i];
        if (n)
            put_blocks(a, same, n, o->n == 1);
    }
}

static void run_op(int a, const struct op *o)
{
    struct rec *r = &R.rec[a];
    struct sim_repair_result res;
    struct sim_block b[SIM_MAX_BLOCKS];
    r->in_op = 1;
    r->op_kind = o->kind;
    r->op_target = o->target;
    switch (o->kind) {
    case OP_GET:
        do_get(a, o->target, o->n, o->wait, o, b);
        break;
    case OP_PUT:
        do_put(a, o->n, 0);
        break;
    case OP_PUTALL:
        do_put(a, 0, 1);
        break;
    case OP_ENQ:
        do_enq(a, o);
        break;
    case OP_DEQ:
        do_deq(a, o);
        break;
    case OP_RECLAIM:
        rc_ok_or(sim_repair(a, 0, &res), a, "reclaim", SIM_BUSY, SIM_BUSY);
        break;
    case OP_REPAIR:
        rc_ok_or(sim_repair(a, 1, &res), a, "repair", SIM_BUSY, SIM_BUSY);
        break;
    case OP_SHUT:
    case OP_SHUTNOW:
        if (o->kind == OP_SHUTNOW)
            R.lossy[o->target] = 1; /* the drain drops what is in the ring */
        if (R.shut[o->target] < (o->kind == OP_SHUTNOW ? 2 : 1))
            R.shut[o->target] = o->kind == OP_SHUTNOW ? 2 : 1;
        rc_ok_or(sim_ring_shutdown(a, o->target, o->kind == OP_SHUTNOW), a, "shutdown", SIM_OK, SIM_OK);
        break;
    case OP_YIELD:
        sched_yield();
        break;
    }
    r->in_op = 0;
}

void scenario_actor(int actor, void *arg)
{
    (void)arg;
    for (int i = 0; i < P.nops[actor]; i++)
        run_op(actor, &P.ops[actor][i]);
}

/* ------------------------------------------------------------------ the invariants */

/*
 * I1 (after the schedule, before repair; "after" = after the survivor's repair, I4):
 *   - a block is in at most one published slot (of all queues), and a published slot's
 *     block has the queue's kind (FREE in its pool's free queue, IN_RING in a ring);
 *   - a HELD block whose holder is alive is on that actor's record at that generation;
 *   - every block on a live actor's record is HELD by it at the recorded generation;
 *   - a FREE or IN_RING block in no slot was last held by a dead process (it was being
 *     queued when that process died), or is named by a dead consumer's claimed slot.
 * After repair, further: no claimed-but-unfinished slot, no block held by the dead, every
 * FREE / IN_RING block in exactly one published slot.
 */
static void check_places(int after)
{
    int pub[MAX_HELD] = {0}, named[MAX_HELD] = {0};
    int q_of[MAX_HELD];
    uint64_t pos_of[MAX_HELD];
    const char *when = after ? "after the survivor's repair" : "before repair";
    for (int q = 0; q < sim_queue_count(); q++) {
        struct sim_queue_view v;
        sim_inspect_queue(q, &v);
        for (int i = 0; i < v.count; i++) {
            const struct sim_slot *s = &v.slot[i];
            switch (s->kind) {
            case SIM_SLOT_PUBLISHED: {
                int id = s->block;
                if (pub[id]++)
                    violation("twice-queued", "block %d is in two queue slots %s: %s pos %llu and %s pos %llu", id, when,
                              queue_name(q_of[id]), (unsigned long long)pos_of[id], queue_name(q), (unsigned long long)s->pos);
                q_of[id] = q;
                pos_of[id] = s->pos;
                struct sim_block_info info;
                sim_inspect_block(id, &info);
                int want = q < P.sc->shape.pools ? SIM_FREE : SIM_IN_RING;
                if (info.kind != want || (q < P.sc->shape.pools && id / P.sc->shape.blocks != q))
                    violation("state-mismatch", "block %d sits in %s pos %llu %s but its state is %s (holder %s)", id,
                              queue_name(q), (unsigned long long)s->pos, when, kind_name(info.kind), who(info.holder));
                break;
            }
            case SIM_SLOT_HOLE:
                break;
            case SIM_SLOT_ENQ_CLAIMED:
                if (after)
                    violation("unfinished-enq", "%s pos %llu: claimed by a producer, never published, %s", queue_name(q),
                              (unsigned long long)s->pos, when);
                break;
            case SIM_SLOT_DEQ_CLAIMED:
                if (s->block >= 0)
                    named[s->block]++;
                if (after)
                    violation("unfinished-deq", "%s pos %llu: claimed by a consumer, never released, %s (it names %s%d)",
                              queue_name(q), (unsigned long long)s->pos, when, s->block >= 0 ? "block " : "a hole ",
                              s->block);
                break;
            default:
                violation("garbage", "%s pos %llu holds a value or sequence no correct process writes (%s)", queue_name(q),
                          (unsigned long long)s->pos, when);
            }
        }
    }
    for (int id = 0; id < P.nblocks; id++) {
        struct sim_block_info info;
        sim_inspect_block(id, &info);
        switch (info.kind) {
        case SIM_FREE:
        case SIM_IN_RING:
            if (pub[id])
                break;
            if (after)
                violation("stranded", "block %d is %s but in no queue slot %s (last holder %s)", id,
                          kind_name(info.kind), when, who(info.holder));
            else if (!named[id] && (info.holder < 0 || info.holder >= P.actors || !sched_is_dead(info.holder)))
                violation("stranded", "block %d is %s, in no queue slot, and its last holder %s is not dead (%s)", id,
                          kind_name(info.kind), who(info.holder), when);
            break;
        case SIM_HELD:
            if (info.holder >= 0 && is_live(info.holder)) {
                int i = held_find(info.holder, id);
                if (i < 0 || !sim_token_matches(id, R.rec[info.holder].held[i].token))
                    violation("kept-by-live", "block %d is HELD by %s, which does not hold it: nobody will ever give it back "
                              "(%s)", id, who(info.holder), when);
            } else if (info.holder >= 0 && info.holder < P.actors) {
                if (after)
                    violation("held-by-dead", "block %d is still HELD by %s %s", id, who(info.holder), when);
            } else {
                violation("state-mismatch", "block %d is HELD by %s (%s)", id, who(info.holder), when);
            }
            break;
        default:
            violation("state-mismatch", "block %d has a state word of kind 3 (%s)", id, when);
        }
    }
    for (int a = 0; a <= P.survivor; a++) {
        if (!is_live(a))
            continue;
        for (int i = 0; i < R.rec[a].nheld; i++) {
            const struct sim_block *b = &R.rec[a].held[i];
            struct sim_block_info info;
            sim_inspect_block(b->id, &info);
            if (!sim_token_matches(b->id, b->token) || info.holder != a)
                violation("double-holder", "%s holds block %d, but its state says %s by %s (%s)", who(a), b->id,
                          kind_name(info.kind), who(info.holder), when);
        }
    }
}

/* I4's second half: the survivor can drain every ring, get every free block, move blocks
 * through every ring, and put everything back, each call succeeding at once. */
static void check_flow(void)
{
    const int S = P.survivor, K = P.sc->shape.blocks;
    struct sim_block b;
    for (int r = 0; r < P.sc->shape.rings; r++) {
        if (R.shut[r]) {
            /* a shut ring's leftovers go back by a (later) immediate shutdown, which drops
             * the messages (by design) */
            R.lossy[r] = 1;
            rc_ok_or(sim_ring_shutdown(S, r, 1), S, "shutdown(immediate) of a shut ring", SIM_OK, SIM_OK);
            continue;
        }
        int i, cap = P.sc->shape.ring_capacity;
        for (i = 0; i < cap + 2; i++) {
            int rc = sim_ring_dequeue(S, r, &b);
            if (rc == SIM_EMPTY)
                break;
            if (rc != SIM_OK) {
                violation("flow", "the survivor's dequeue from ring %d returned %s", r, sim_rc_name(rc));
                return;
            }
            acquired(S, &b, "the survivor's dequeue");
            delivered(S, r, b.id);
            stamp_clear(b.id);
            int prc = sim_pool_put(S, &b);
            if (prc != SIM_OK) {
                violation("flow", "the survivor's put of block %d (drained from ring %d) returned %s", b.id, r,
                          sim_rc_name(prc));
                return;
            }
            held_remove(S, b.id);
        }
        if (i == cap + 2) {
            violation("flow", "ring %d never reads empty to the survivor", r);
            return;
        }
    }
    for (int round = 0; round < 2; round++) {
        for (int p = 0; p < P.sc->shape.pools; p++) {
            int expect = K;
            for (int a = 0; a < P.actors; a++)
                if (is_live(a))
                    for (int i = 0; i < R.rec[a].nheld; i++)
                        expect -= R.rec[a].held[i].id / K == p;
            int got = 0;
            for (int i = 0; i <= K; i++) {
                int rc = sim_pool_get(S, p, &b);
                if (rc == SIM_EMPTY)
                    break;
                if (rc != SIM_OK) {
                    violation("flow", "the survivor's get from pool %d returned %s", p, sim_rc_name(rc));
                    return;
                }
                acquired(S, &b, "the survivor's get");
                got++;
            }
            if (got != expect) {
                violation("flow", "the survivor got %d free blocks from pool %d, expected %d%s", got, p, expect,
                          round ? " (after putting everything back)" : "");
                return;
            }
        }
        if (R.nviol)
            return;
        if (round == 0) {
            /* every ring carries blocks again */
            for (int r = 0; r < P.sc->shape.rings; r++) {
                if (R.shut[r])
                    continue;
                int n = R.rec[S].nheld < P.sc->shape.ring_capacity ? R.rec[S].nheld : P.sc->shape.ring_capacity;
                struct sim_block moving[SIM_MAX_CAPACITY];
                for (int i = 0; i < n; i++) {
                    moving[i] = R.rec[S].held[i];
                    int seq = R.rec[S].seq[r]++;
                    if (seq < MAX_SEQ)
                        stamp_write(moving[i].id, S, r, seq);
                    int rc = sim_ring_enqueue(S, r, &moving[i]);
                    if (rc != SIM_OK) {
                        violation("flow", "the survivor's enqueue into ring %d returned %s with %d of %d in it", r,
                                  sim_rc_name(rc), i, P.sc->shape.ring_capacity);
                        return;
                    }
                    if (seq < MAX_SEQ)
                        R.sent[r][S][seq] = 1;
                }
                for (int i = 0; i < n; i++)
                    held_remove(S, moving[i].id);
                for (int i = 0; i < n; i++) {
                    int rc = sim_ring_dequeue(S, r, &b);
                    if (rc != SIM_OK) {
                        violation("flow", "the survivor's dequeue from ring %d returned %s after %d of %d", r,
                                  sim_rc_name(rc), i, n);
                        return;
                    }
                    acquired(S, &b, "the survivor's dequeue");
                    delivered(S, r, b.id);
                    stamp_clear(b.id);
                }
                if (sim_ring_dequeue(S, r, &b) != SIM_EMPTY) {
                    violation("flow", "ring %d not empty after the survivor took back what it put in", r);
                    return;
                }
            }
        }
        /* everything back */
        while (R.rec[S].nheld > 0) {
            b = R.rec[S].held[0];
            int rc = sim_pool_put(S, &b);
            if (rc != SIM_OK) {
                violation("flow", "the survivor's put of block %d returned %s", b.id, sim_rc_name(rc));
                return;
            }
            held_remove(S, b.id);
        }
        if (R.nviol)
            return;
    }
}

#define SURVIVOR_MAX_POINTS 1000000
static void survivor_phase(void *arg);

int scenario_final(int overrun)
{
    if (overrun) {
        violation("livelock", "the schedule did not end within the step limit (a process spins forever)");
        return R.nviol;
    }
    /* A consumer killed inside a dequeue may take its message with it (by design). */
    for (int a = 0; a < P.actors; a++)
        if (sched_is_dead(a) && R.rec[a].in_op && R.rec[a].op_kind == OP_DEQ)
            R.lossy[R.rec[a].op_target] = 1;
    check_places(0);

    if (sched_run_solo(P.survivor, survivor_phase, NULL, SURVIVOR_MAX_POINTS) < 0)
        violation("flow", "the survivor's repair and flow test did not end within %d steps (a loop that never "
                  "ends, or a wait that is never satisfied)", SURVIVOR_MAX_POINTS);
    sched_enter_as(SCHED_MAIN);
    return R.nviol;
}

/* The survivor: repair, then I4 and the flow test. */
static void survivor_phase(void *arg)
{
    (void)arg;
    struct sim_repair_result res;
    int rc = sim_repair(P.survivor, 1, &res);
    if (rc != SIM_OK)
        violation("op-error", "the survivor's repair (after deaths) returned %s", sim_rc_name(rc));
    for (int i = 0; i < 4; i++) {
        rc = sim_repair(P.survivor, 0, &res);
        if (rc != SIM_OK) {
            violation("op-error", "the survivor's reclaim returned %s", sim_rc_name(rc));
            break;
        }
        if (res.work == 0)
            break;
    }
    check_places(1);
    if (R.nviol == 0)
        check_flow();
    if (R.nviol == 0)
        for (int r = 0; r < P.sc->shape.rings; r++)
            for (int p = 0; p <= P.survivor && !R.lossy[r]; p++)
                for (int s = 0; s < MAX_SEQ; s++)
                    if (R.sent[r][p][s] && !R.delivered[r][p][s]) {
                        violation("lost-message", "message %d.%d was enqueued on ring %d and never delivered", p, s, r);
                        break;
                    }
}
