/*
 * stress.h - shared by the stress tests (test_stress.c, test_fork.c): see stress_common.c.
 *
 * Every message (producer p, sequence s) must be seen exactly once: a seen table counts
 * deliveries, so a duplicate fails at once and a missing one at the end. Blocks carry
 * their message, a checksum over the rest of their bytes, and an owner word: whoever
 * holds a block writes its id there and checks it is still there before giving the block
 * away, so two holders of one block are caught. Per (producer, consumer) pair sequence
 * numbers must increase (both sides take ring positions in order).
 */
#ifndef PYSHM_TESTS_STRESS_H
#define PYSHM_TESTS_STRESS_H

#include "tc.h"

/* ---- the message a block carries ---- */
enum { OFF_OWNER = 0, OFF_PRODUCER = 8, OFF_SEQ = 16, OFF_SUM = 24, OFF_PAYLOAD = 32 };
#define MIN_ELT OFF_PAYLOAD

uint64_t mix(uint64_t x);
void stamp_message(uint8_t *b, uint64_t elt_size, uint64_t producer, uint64_t seq);
/* 0 if the block holds an intact message of a valid (producer, seq); fills them in. */
int check_message(const uint8_t *b, uint64_t elt_size, uint64_t producers, uint64_t per_producer,
                  uint64_t *producer, uint64_t *seq);
/* Owner word: written on taking a block, checked before giving it away. */
void own_block(uint8_t *b, uint64_t who);
int still_owner(const uint8_t *b, uint64_t who, const char *when);
/* Mark a message delivered: 0, or -1 on a second delivery. */
int mark_seen(atomic_uchar *seen, uint64_t producer, uint64_t seq, uint64_t per_producer);
/* Every message seen exactly once. */
void check_all_seen(atomic_uchar *seen, uint64_t producers, uint64_t per_producer);

uint64_t next_rand(uint64_t *state);
/* Now and then yield or dawdle, so threads interleave at many points on few cores. */
void jitter(uint64_t *rng);

/* Take up to `want` blocks of one pool, waiting while it is empty: how many, or -1. */
int64_t get_blocks(const struct pyshm_pool *pool, int burst, uint64_t want, uint64_t *idx, uint64_t *gen,
                   atomic_int *abort);

/* One consumer's loop; `region` is its own handle (its own table, perhaps mapping). */
struct consumer_ctx {
    const struct pyshm_block_ring *ring;
    struct pyshm_region *region;
    uint64_t producers, per, me;
    /* Offset of the pool message (p, seq) must arrive in, as its producer chose it. */
    uint64_t (*expected_pool)(void *ctx, uint64_t producer, uint64_t seq);
    void *pool_ctx;
    uint64_t large_elt;
    int picky, burst;
    atomic_uchar *seen;
    atomic_int *abort;
    int (*producers_done)(void *);
    void *done_ctx;
    int64_t last[8]; /* last seq seen from each producer */
    uint64_t handled, too_big, eagain;
};

/* Take blocks out of c->ring until the producers are done and the ring is empty (or
 * *c->abort is set), verifying and recording each message and putting each block back.
 * On a failure it sets *c->abort. */
void consume(struct consumer_ctx *c);

#endif
