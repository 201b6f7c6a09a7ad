/*
 * stress.h - shared by the stress tests (test_stress.c: threads, test_fork.c: processes):
 * see stress_common.c.
 *
 * Every actor (thread or process) has its own struct pyshm_space on the region, as a
 * separate process would: its own mapping (but see tc_space_attach_view under TSan),
 * member entry, lock description and pool table.
 *
 * Every message (producer p, sequence s) must be seen at most once, and, unless its
 * producer or a consumer holding it was killed, exactly once: a seen table counts
 * deliveries. Blocks carry their message and a checksum over it, and an owner word:
 * whoever holds a block (got it from a pool or took it out of the Ring) writes its id
 * there and checks it is still there before giving the block away (enqueue or put), so
 * two holders of one block at once are caught (counted as duplicates). Per (producer,
 * consumer) pair sequence numbers must increase (both sides take Ring positions in order).
 */
#ifndef PYSHM_TESTS_STRESS_H
#define PYSHM_TESTS_STRESS_H

#include "tc.h"

/* ---- the message a block carries ---- */
enum { OFF_OWNER = 0, OFF_PRODUCER = 8, OFF_SEQ = 16, OFF_SUM = 24, OFF_PAYLOAD = 32 };
#define MIN_ELT OFF_PAYLOAD

#define STRESS_MAX_ACTORS 8
#define STRESS_MAX_POOLS 2

struct stress_cfg {
    int producers, consumers;
    int npools;
    uint64_t count[STRESS_MAX_POOLS], elt[STRESS_MAX_POOLS];
    uint64_t capacity;        /* of the Ring */
    uint64_t ring_start;      /* the Ring's first position */
    int free_queue_near_wrap; /* start the free queues just below 2^64 (counts: powers of two) */
    int burst;                /* producers get and enqueue, consumers dequeue and put, 1..8 at a time */
    int picky;                /* consumers sometimes ask for the larger block size (ETOOBIG path) */
    int late_pool;            /* producer 1 creates the second pool itself, after the others started */
    uint64_t per;             /* messages per producer */
};

/* Shared by all actors: heap memory for threads, a MAP_SHARED mapping for processes. */
struct stress_ctl {
    atomic_int abort;
    atomic_int producers_done;
    atomic_uint_least64_t late_pool_off;
    atomic_uint_least64_t handled[STRESS_MAX_ACTORS]; /* messages each consumer has handled */
    atomic_uint_least64_t duplicates, bad;            /* owner-word conflicts, bad messages */
    atomic_uint_least64_t eagain;                     /* puts that ran out of patience (retried) */
    /* per message: deliveries; whether its producer saw its enqueue succeed; its pool */
    atomic_uchar *seen, *sent;
    uint64_t *sent_pool; /* plain: written before the enqueue, read after the dequeue (R1) */
};

/* Bytes of shared memory a stress_ctl for cfg needs (the arrays follow it). */
size_t stress_ctl_size(const struct stress_cfg *cfg);
/* Lay the ctl and its arrays out in zeroed memory of stress_ctl_size bytes. */
struct stress_ctl *stress_ctl_init(void *mem, const struct stress_cfg *cfg);

struct stress_env {
    const struct stress_cfg *cfg;
    const struct pyshm_space *creator; /* actors attach to its region */
    uint64_t pool_off[STRESS_MAX_POOLS], ring_off;
    struct stress_ctl *ctl;
};

/* Create the pools and the Ring in the creator's space (a region of `size`). */
int stress_setup(struct stress_env *e, struct pyshm_space *creator, const struct stress_cfg *cfg,
                 struct stress_ctl *ctl);

/* One producer / consumer, in its own space `own` (already attached). 0, or non-zero on a
 * failure (recorded; ctl->abort set). */
int stress_producer(const struct stress_env *e, struct pyshm_space *own, int id);
int stress_consumer(const struct stress_env *e, struct pyshm_space *own, int id);

/* After everyone is done: no message seen twice; every message whose enqueue succeeded
 * seen, but for at most `may_lose` (held by consumers that were killed); every message sent
 * unless `may_be_unsent` (a producer was killed); owner-word and message checks clean; no
 * member left; every block comes out of its free queue once; the Ring empty. */
void stress_check(const struct stress_env *e, struct pyshm_space *creator, uint64_t may_lose, int may_be_unsent);

uint64_t mix(uint64_t x);
void jitter(uint64_t *rng);

#endif
