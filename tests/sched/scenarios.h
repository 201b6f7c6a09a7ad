/* scenarios.h - scenario table, actor scripts and invariant checks (scenarios.c). */
#ifndef PYSHM_SCHED_SCENARIOS_H
#define PYSHM_SCHED_SCENARIOS_H

#include "sim.h"

/*
 * A scenario: a world shape, one script per actor, and how to explore it.
 *
 * Script: tokens separated by spaces, run in order by the actor.
 *   get  getN        take 1 / a burst of up to N blocks from a pool, and keep them
 *   put  putN putall give back the oldest held block / N oldest / all (bursts per pool)
 *   enq  enqN        produce: get 1 / N blocks, stamp each (producer, ring, sequence),
 *                    enqueue them (one call: single or burst); on FULL put them back
 *   deq  deqN        consume: dequeue 1 / a burst of up to N, check each stamp, put back
 *   reclaim          Mempool.reclaim(): repair everything
 *   repair           what a blocked call does now and then: repair if someone is gone
 *   shut shutnow     Ring.shutdown() / shutdown(immediate=True) (which drains)
 *   yield            sched_yield()
 * After the name: a count, then flags k (deq: keep what was dequeued), w (enq/deq/get:
 * on FULL/EMPTY yield and retry, up to 6 tries), W (the same, and repair-if-someone-is-
 * gone every second try, as a blocking call does), then @T (pool or ring T, default 0;
 * enq takes its blocks from pool T % pools). E.g. "deq2wk@1".
 *
 * Focus (for scenarios aimed at one defect, when others are reachable with fewer
 * events): `mortal` limits who may die, `kill_modes` where (at its own steps, at another
 * actor's liveness query), `preemptible` who may be preempted (the others still switch
 * at yields), `no_deepening` explores the full DFS bounds at once instead of smaller
 * bounds first. The search still has to find the interleaving and the death points.
 */
struct scenario {
    const char *name;
    const char *defect; /* the review's defect number this scenario must find, or NULL */
    const char *about;
    struct sim_shape shape;
    const char *script[SIM_MAX_ACTORS];
    int strategy; /* SCHED_DFS or SCHED_PCT */
    int max_preempt, max_kills, max_spurious;
    int pct_depth;
    unsigned mortal; /* bit i: actor i may be killed; 0: all may */
    int kill_modes;  /* SCHED_KILL_SELF | SCHED_KILL_AT_QUERY, 0: both (sched.h) */
    unsigned preemptible; /* bit i: actor i may be preempted; 0: all may */
    int no_deepening;     /* DFS: explore the full bounds at once, not smaller bounds first */
    /* For defect scenarios: the violation codes (comma separated) that count as finding it. */
    const char *expect;
};

extern const struct scenario scenarios[];
extern const int scenario_count;
const struct scenario *scenario_find(const char *name);

/* Per scenario: parse the scripts. 0 or -1 (message printed). */
int scenario_prepare(const struct scenario *sc);
/* Per schedule: reset the bookkeeping (the world is reset by the caller). */
void scenario_reset(void);
/* The actor body given to sched_run. */
void scenario_actor(int actor, void *arg);
/* After a schedule: the checks before repair, the survivor's repair, the checks after,
 * the flow test. Returns the number of violations (0: the schedule passed). */
int scenario_final(int overrun);
/* The first violation of the last schedule: its code and a message. */
const char *violation_code(void);
const char *violation_text(void);

#endif
