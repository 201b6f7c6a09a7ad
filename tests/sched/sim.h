/*
 * sim.h - the adapter interface: what the scenarios and the invariant checks know of a
 * pyshm core. One adapter per core (adapter_v2.c: the core of f8f5ca3); the scenarios
 * (scenarios.c) call nothing else, so a core with another API but the same concepts
 * needs only a new adapter.
 *
 * CONCEPTS
 *   World   one region with `pools` pools of `blocks` blocks each, and `rings` block
 *           rings of capacity `ring_capacity`; all made by sim_world_create, brought
 *           back to the freshly made state by sim_world_reset (before every schedule).
 *   Block   named by a global id: pool * blocks + index. Its state: kind (FREE, HELD,
 *           IN_RING), generation, and the identity of its holder (the last process that
 *           took it: for a HELD block, who holds it).
 *   Actor   a simulated process, 0 .. actors-1, plus the survivor (id `actors`), a fresh
 *           live process that runs the final phase. Each actor is a different process
 *           for the core: its own identity word, its own region handle, its own
 *           announcement entry (or whatever the core uses to make its queue steps
 *           repairable), its own pool and ring handles.
 *   Queue   queue q in 0 .. pools-1 is pool q's free queue (values: block ids), queue
 *           pools + r is ring r (values: block ids of the blocks it carries).
 *
 * WHAT AN ADAPTER MUST PROVIDE BESIDES THESE FUNCTIONS
 *   - Identity: the core's "who am I" answers the identity of sched_current() (set any
 *     per-process globals in a hook given to sched_set_switch_hook: it runs at every
 *     switch). Identities: actors 0..actors-1, the survivor `actors`, SCHED_MAIN (-1) for
 *     set-up and checks.
 *   - Liveness: the core's "is process X gone" answers sched_liveness_query(X) for the
 *     actors (that call is where the scheduler may decide that X dies right now), 0 for
 *     identities it does not know.
 *   - Time and spinning: the core's monotonic clock reads sched_now_ns(); sched_yield()
 *     and nanosleep() are the scheduler's (sched.c defines the libc names). A core that
 *     sleeps on futexes must have its sleep replaced by a yield, its wake by nothing.
 *   - Reduction: sched_set_shared(region) so that only atomics on shared memory are
 *     scheduling points, and sched_add_quiet() for shared words that no actor can write
 *     during exploration (say why next to each).
 *   - No kill points of its own: the core is built without fault injection.
 *
 * OPERATIONS are called by actor `a` from its own context (a == sched_current()); each
 * is what the Python binding's method of the same name does without blocking (so
 * sim_pool_put repairs and retries once when the free queue stays blocked, as
 * Mempool.put does). They return an enum sim_rc. A block the caller holds is a
 * struct sim_block: its id, and an adapter-private token (the old core: the generation
 * it is held at), which a failed put or enqueue may update (the block is still held).
 *
 * INTROSPECTION is called outside actors (between schedules, or by the checks), reads
 * shared memory directly and makes no scheduling decision.
 */
#ifndef PYSHM_SCHED_SIM_H
#define PYSHM_SCHED_SIM_H

#include <stdint.h>

#define SIM_MAX_POOLS 4
#define SIM_MAX_RINGS 4
#define SIM_MAX_BLOCKS 16 /* per pool */
#define SIM_MAX_ACTORS 6  /* explored actors; the survivor is one more */
#define SIM_MAX_CAPACITY 16
#define SIM_BLOCK_BYTES 32 /* every block has at least this many bytes of data */

enum sim_rc {
    SIM_OK = 0,
    SIM_EMPTY,    /* nothing to get / dequeue */
    SIM_FULL,     /* no room to enqueue (the block is still held) */
    SIM_AGAIN,    /* put: the free queue stayed blocked; the block is still held */
    SIM_STALE,    /* the block was not held at the caller's token */
    SIM_BUSY,     /* repair: another live process is repairing */
    SIM_SHUTDOWN, /* the ring is shut down */
    SIM_CORRUPT,  /* the core reported corruption */
    SIM_ERROR     /* anything else */
};
const char *sim_rc_name(int rc);

#define SIM_POOL_SP_PUT 1u /* single putter flag */
#define SIM_POOL_SC_GET 2u /* single getter flag */
#define SIM_RING_SP_ENQ 1u
#define SIM_RING_SC_DEQ 2u

struct sim_shape {
    int pools;  /* 1 .. SIM_MAX_POOLS */
    int blocks; /* per pool, 1 .. SIM_MAX_BLOCKS */
    int rings;  /* 0 .. SIM_MAX_RINGS */
    int ring_capacity;
    unsigned pool_flags; /* SIM_POOL_* for every pool */
    unsigned ring_flags; /* SIM_RING_* for every ring */
    int actors;          /* explored actors, 1 .. SIM_MAX_ACTORS */
};

struct sim_block {
    int id;         /* pool * blocks + index */
    uint64_t token; /* adapter-private (old core: the generation held at) */
};

/* ---- life cycle (outside actors) ---- */
const char *sim_core_name(void);
/* Make the world once per scenario; 0 or -1 (message on stderr). */
int sim_world_create(const struct sim_shape *shape);
/* Back to the freshly made state: every block FREE in its free queue in id order,
 * rings empty, no process known to the core, every actor's handles fresh. */
void sim_world_reset(void);
void sim_world_destroy(void);

/* ---- operations (actor a, in its own context) ---- */
int sim_pool_get(int a, int pool, struct sim_block *out);
/* 1 .. max blocks: SIM_OK with *got set, or an error. */
int sim_pool_get_burst(int a, int pool, struct sim_block *out, int max, int *got);
int sim_pool_put(int a, struct sim_block *b);
/* All n (same pool) or none. */
int sim_pool_put_burst(int a, struct sim_block *b, int n);
int sim_ring_enqueue(int a, int ring, struct sim_block *b);
/* All n or none, in order. */
int sim_ring_enqueue_burst(int a, int ring, struct sim_block *b, int n);
int sim_ring_dequeue(int a, int ring, struct sim_block *out);
int sim_ring_dequeue_burst(int a, int ring, struct sim_block *out, int max, int *got);
/* Ring.shutdown(immediate): an immediate one also drains the ring into the pools. */
int sim_ring_shutdown(int a, int ring, int immediate);

struct sim_repair_result {
    long work; /* things put right (entries cleared, holes, slots released, blocks
                  returned...); 0: nothing to do */
};
/* only_after_deaths = 0: Mempool.reclaim() (repair everything; retried, yielding,
 * while another live process repairs). 1: what a blocked call does now and then (repair
 * only if some process the core knows of is gone; one attempt). */
int sim_repair(int a, int only_after_deaths, struct sim_repair_result *res);

/* The block's data (at least SIM_BLOCK_BYTES); the caller must hold it. */
unsigned char *sim_block_data(int id);

/* ---- introspection (outside actors) ---- */
enum sim_kind { SIM_FREE = 0, SIM_HELD = 1, SIM_IN_RING = 2, SIM_BADKIND = 3 };
#define SIM_NOBODY (-1)  /* no holder recorded */
#define SIM_UNKNOWN (-2) /* a holder word that names no actor */

struct sim_block_info {
    int kind;     /* enum sim_kind */
    uint64_t gen; /* the generation, for messages (sim_token_matches compares tokens) */
    int holder;   /* actor id (the survivor included), SIM_NOBODY or SIM_UNKNOWN */
};
int sim_inspect_block(int id, struct sim_block_info *out);
/* Whether the block is held at this token (the holder's record is current). */
int sim_token_matches(int id, uint64_t token);

enum sim_slot_kind {
    SIM_SLOT_PUBLISHED,   /* holds a value no consumer has claimed yet */
    SIM_SLOT_HOLE,        /* published filler that consumers pass over */
    SIM_SLOT_ENQ_CLAIMED, /* claimed by a producer, not yet published */
    SIM_SLOT_DEQ_CLAIMED, /* claimed by a consumer, not yet released (block still named) */
    SIM_SLOT_GARBAGE      /* a value that names no block, or a sequence word no correct
                             process writes */
};
struct sim_slot {
    uint64_t pos;
    int kind;  /* enum sim_slot_kind */
    int block; /* block id for PUBLISHED and DEQ_CLAIMED, else -1 */
};
struct sim_queue_view {
    int count; /* slots that are not empty-and-waiting */
    struct sim_slot slot[SIM_MAX_CAPACITY];
};
int sim_queue_count(void); /* pools + rings */
int sim_inspect_queue(int q, struct sim_queue_view *out);

/* What a shared address is, for the decision log of a replay ("ring 0 slot 1 seq");
 * an adapter registers it with sched_set_describe (optional). */
const char *sim_describe_address(const volatile void *addr);

#endif
