/*
 * sched.h - a deterministic scheduler for simulated processes ("actors").
 *
 * Actors are cooperative coroutines on one OS thread, each with its own stack. The code
 * under test is compiled with hooks.h, so each of its atomic operations calls
 * sched_point() first; there the scheduler decides who runs next, or kills the running
 * actor. Everything an actor does between two points is one indivisible step, so a
 * schedule is a sequence of decisions, and replaying the decisions replays the run.
 *
 * Decisions (each one is a numbered "step"):
 *   P  before an atomic op on shared memory: go on / switch to another runnable actor
 *      (a preemption) / kill the running actor (only before a store, RMW or CAS: killing
 *      before a load is the same as killing before the next write)
 *   E  an actor's script ends: go on / kill it (dies holding what it holds)
 *   F  the running actor finished, was killed, or the run starts: who runs next (free)
 *   Y  the running actor called sched_yield(): forced switch to another runnable actor
 *      (free); virtual time advances by SCHED_YIELD_NS
 *   G  liveness query about a live actor X other than the caller: X lives / X is killed
 *      now (X is paused between two points, or finished: its death is only observable
 *      through such queries, so this is the only place that death time matters)
 *   W  a weak CAS that would succeed: succeed / fail spuriously
 *
 * Strategies: DFS (exhaustive, stateless: each schedule is replayed from scratch
 * following a prefix of choices; bounded preemptions, kills, spurious failures), PCT
 * (randomised priorities with d-1 change points, seeded), REPLAY (a printed trace).
 *
 * A trace lists the decisions that differ from the default (go on / next actor in
 * round-robin order / no kill / no spurious failure) as STEP:ACTION, ACTION one of rN
 * (run actor N), kN (kill actor N), f (spurious CAS failure); e.g. "17:r1,40:k0".
 */
#ifndef PYSHM_SCHED_H
#define PYSHM_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SCHED_MAX_ACTORS 8
#define SCHED_MAIN (-1)            /* sched_current() outside any actor */
#define SCHED_YIELD_NS 25000000ull /* a yield advances the virtual clock by 25 ms */
#define SCHED_TICK_NS 100ull       /* each decision advances it by 100 ns */

enum sched_strategy { SCHED_DFS = 0, SCHED_PCT = 1, SCHED_REPLAY = 2 };
/* Where kills may happen: P/E decisions (the running actor) and G decisions (a paused
 * actor, at another's liveness query). */
enum { SCHED_KILL_SELF = 1, SCHED_KILL_AT_QUERY = 2 };

struct sched_config {
    int strategy;
    int max_preempt;   /* DFS: preemptions per schedule */
    int max_kills;     /* DFS and PCT: kills per schedule */
    int max_spurious;  /* DFS and PCT: spurious weak-CAS failures per schedule */
    int pct_depth;     /* PCT: d (d - 1 priority change points) */
    uint64_t seed;     /* PCT */
    long max_steps;    /* a schedule longer than this is reported as not terminating */
    unsigned mortal;   /* bit i: actor i may be killed; 0: every actor may */
    int kill_modes;    /* SCHED_KILL_SELF | SCHED_KILL_AT_QUERY; 0: both */
    unsigned preemptible; /* bit i: actor i may be preempted (DFS, PCT); 0: every actor may */
    const char *trace; /* REPLAY */
};

typedef void (*sched_actor_fn)(int actor, void *arg);

/* ---- exploration driver ---- */

/* Start an exploration (resets the DFS tree / PCT counter). */
void sched_begin(const struct sched_config *cfg);
/* Prepare the next schedule: 1, or 0 when DFS has explored every schedule within its
 * bounds (or the single REPLAY schedule has run). */
int sched_next(void);
/* Run the prepared schedule: actors 0..n-1 each run fn(actor, arg) until every actor has
 * finished or been killed. Returns 0, or -1 if it exceeded max_steps (the actors still
 * running are abandoned). */
int sched_run(int nactors, sched_actor_fn fn, void *arg);
/* Run fn(arg) on a coroutine of its own as `identity`, outside exploration: no
 * decisions, but each point and yield is counted, and past max_points the run is
 * abandoned (-1). For the survivor's final phase ("every queue flows within a bounded
 * number of steps"). Returns 0 or -1. */
int sched_run_solo(int identity, void (*fn)(void *), void *arg, long max_points);
/* The trace of the last schedule (valid until the next sched_run). */
const char *sched_trace(void);

struct sched_stats {
    uint64_t schedules;   /* run since sched_begin */
    uint64_t steps;       /* decisions made, summed */
    long last_steps;      /* decisions in the last schedule */
    int last_kills, last_preempts;
    long dfs_depth;       /* choice points on the current DFS path */
};
void sched_get_stats(struct sched_stats *out);

/* ---- for adapters and scenarios ---- */

/* The actor running now, SCHED_MAIN, or the identity set with sched_enter_as. */
int sched_current(void);
/* Outside exploration (set-up, the survivor's final phase): run as this identity. The
 * switch hook is called with it. */
void sched_enter_as(int identity);
/* Whether actor x is dead; if x is alive, not the caller, and the strategy chooses to,
 * x is killed now (decision G) and 1 is returned. Outside exploration: no decision. */
int sched_liveness_query(int x);
/* Whether actor x is dead, without a decision. */
int sched_is_dead(int x);
/* Whether an exploration schedule is running right now (in an actor). */
int sched_exploring(void);
/* Virtual monotonic clock, in ns. */
uint64_t sched_now_ns(void);
/* The libc name, defined by sched.c (it takes the place of libc's for the whole program):
 * a Y decision inside an actor, virtual time += SCHED_YIELD_NS outside. */
int sched_yield(void);
/* Likewise nanosleep(): inside an actor (or the survivor's run) the virtual clock moves on
 * by the time asked and the actor yields; elsewhere it really sleeps. */

/* Only atomics whose address lies in [lo, lo + len) are points. */
void sched_set_shared(const void *lo, size_t len);
/* Atomics in [lo, lo + len) are not points (the adapter argues why, see sim.h). */
void sched_add_quiet(const void *lo, size_t len);
void sched_clear_quiet(void);
/* Called with the new identity at every switch (to set per-process globals). */
void sched_set_switch_hook(void (*hook)(int identity));
/* Print every decision to f (NULL: stop). For replaying one schedule. */
void sched_set_log(FILE *f);
/* Names a shared address in that log (optional). */
void sched_set_describe(const char *(*describe)(const volatile void *addr));

#endif
