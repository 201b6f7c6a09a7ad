/*
 * waiting.c - block=/timeout= for every call that can wait, with queue.Queue semantics.
 *
 * The ordering protocol lives in src/core/wait.h; this file adds what only the binding
 * can: releasing the GIL while asleep, running signal handlers between sleeps (so Ctrl-C
 * raises KeyboardInterrupt within one sleep slice), keeping the region mapped while no
 * lock protects it, waking up when the handle is closed in another thread, and looking
 * for dead processes to repair now and then.
 */
#include "pyshm_ext.h"

#include <sched.h>

#include "liveness.h"
#include "repair.h"

/*
 * Adaptive spinning. Before sleeping, a waiter keeps trying for a while: a peer that
 * answers at once (a ping-pong through Python takes a few microseconds) is caught
 * without two futex round trips. Each waitpoint handle keeps its own budget: back to the
 * maximum when spinning paid off, down by a quarter each time the waiter had to sleep
 * anyway, so an idle consumer soon stops taking CPU from its peers.
 */
#define SPIN_MIN_NS 1000u
#define SPIN_MAX_NS 200000u
/* How often a sleeping waiter checks for processes that died mid-operation (repair.h). */
#define REPAIR_PERIOD_NS UINT64_C(100000000)

/* While asleep without the GIL, another thread could clean up the region: count the wait
 * so that cleanup() refuses instead of unmapping, and the handle's, so that its cleanup()
 * wakes us. A fork child has none of these waits (their threads are not there). */
void pyshm_waits_add(ShareMemObject *shm, CarvedObject *handle, int delta)
{
    uint64_t gen = pyshm_fork_generation();
    if (shm->waits_fork_gen != gen) {
        shm->waits_fork_gen = gen;
        shm->waits = 0;
    }
    shm->waits += delta;
    if (handle)
        handle->waits += delta;
}

/* Gathering (pyshm_ext.h): for how long at most. */
#define GATHER_NS UINT64_C(50000)

/* When a waiter that just found nothing stops gathering: 0 when it does not gather at
 * all (no queue given, one under 32, a call that needs k or more at once, or a deadline
 * within 2 x GATHER_NS, so that a short timeout still gets the first one back). */
static uint64_t gather_until(const struct pyshm_gather *g, uint64_t *k, uint64_t deadline_ns)
{
    if (!g)
        return 0;
    *k = pyshm_gather_k(g);
    uint64_t now = pyshm_now_ns();
    if (!*k || deadline_ns <= now || deadline_ns - now <= 2 * GATHER_NS)
        return 0;
    return now + GATHER_NS;
}

/* Pacing (pyshm_ext.h): about this long, in pause instructions, whose length varies
 * fourfold and more between processors (measured once); a clock read costs as much as
 * the pace. */
#define PACE_NS 40u
/* 0: not measured yet. Atomic: interpreters with their own GIL may measure at once
 * (they would store the same kind of value). */
static _Atomic unsigned pace_pauses;

static unsigned measure_pace(void)
{
    uint64_t best = UINT64_MAX;
    for (int round = 0; round < 3; round++) {
        uint64_t start = pyshm_now_ns();
        for (int i = 0; i < 64; i++)
            pyshm_cpu_relax();
        uint64_t took = pyshm_now_ns() - start;
        best = took < best ? took : best;
    }
    if (best == 0)
        return 4; /* a clock too coarse to tell: 4, about 40 ns of 10 ns pauses */
    uint64_t n = (PACE_NS * 64 + best / 2) / best; /* PACE_NS / (best / 64), rounded */
    return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

void pyshm_pace_idle(void)
{
    unsigned pauses = atomic_load_explicit(&pace_pauses, memory_order_relaxed);
    if (!pauses) {
        pauses = measure_pace();
        atomic_store_explicit(&pace_pauses, pauses, memory_order_relaxed);
    }
    for (unsigned i = 0; i < pauses; i++)
        pyshm_cpu_relax();
}

/* One try, unless still gathering: then `again` without touching the queue's head. */
static int64_t try_or_gather(const struct pyshm_gather *g, uint64_t k, uint64_t *until, int64_t again,
                             pyshm_attempt_fn attempt, void *ctx)
{
    if (*until) {
        if (!pyshm_ring_ready_at(g->ring, g->side, k) && pyshm_now_ns() < *until)
            return again;
        *until = 0;
    }
    return attempt(ctx);
}

static int64_t closed_meanwhile(CarvedObject *handle)
{
    PyErr_Format(PyExc_ValueError, "%s was closed (cleanup() in another thread) while this call waited",
                 handle->kind->name);
    return PYSHM_RAISED;
}

int64_t pyshm_wait_more(ShareMemObject *shm, CarvedObject *handle, struct pyshm_waitpoint *point,
                        uint32_t *spin_budget, int64_t again, pyshm_attempt_fn attempt, void *ctx,
                        const struct pyshm_wait_options *opts, const struct pyshm_gather *gather)
{
    int64_t rc = again;
    uint64_t k = 0;
    uint64_t until = gather_until(gather, &k, opts->deadline_ns);
    uint32_t budget = *spin_budget ? *spin_budget : SPIN_MAX_NS; /* 0: never waited yet */
    uint64_t spin_until = pyshm_now_ns() + budget;
    if (spin_until > opts->deadline_ns)
        spin_until = opts->deadline_ns;
    do {
        for (int i = 0; i < 16; i++) {
            pyshm_cpu_relax();
            rc = try_or_gather(gather, k, &until, again, attempt, ctx);
            if (rc != again) {
                *spin_budget = SPIN_MAX_NS;
                return rc;
            }
        }
        /* Lets a peer that shares this CPU run; returns at once when none does. */
        sched_yield();
    } while (pyshm_now_ns() < spin_until);
    *spin_budget = budget - budget / 4 < SPIN_MIN_NS ? SPIN_MIN_NS : budget - budget / 4;
    Py_INCREF(shm);
    if (handle)
        Py_INCREF(handle);
    pyshm_waits_add(shm, handle, 1);
    for (;;) {
        uint32_t epoch = pyshm_wait_prepare(point);
        rc = try_or_gather(gather, k, &until, again, attempt, ctx);
        uint64_t now = pyshm_now_ns();
        if (rc != again || now >= opts->deadline_ns)
            break;
        if (until && now >= until)
            continue; /* the gathering ended since that look: a real try now, not a sleep */
        uint64_t left = opts->deadline_ns - now;
        /* Wake now and then to look for a process that died mid-operation and left the
         * queue stuck (repair.h): then waiting would be in vain until someone repairs. */
        if (left > REPAIR_PERIOD_NS)
            left = REPAIR_PERIOD_NS;
        /* Gathering ends then, and nobody may notify us at that moment. */
        if (until > now && until - now < left)
            left = until - now;
        Py_BEGIN_ALLOW_THREADS
        pyshm_wait_sleep(point, epoch, left);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            rc = PYSHM_RAISED;
            break;
        }
        if (handle && handle->closed) {
            rc = closed_meanwhile(handle);
            break;
        }
        /* Once per period per region, across calls: short timeouts in a loop count too. */
        now = pyshm_now_ns();
        if (now >= shm->next_repair_ns) {
            struct pyshm_repair_report report;
            shm->next_repair_ns = now + REPAIR_PERIOD_NS;
            pyshm_repair(&shm->space, 1, &report); /* best effort: errors surface in the attempt */
        }
    }
    pyshm_waits_add(shm, handle, -1);
    if (handle)
        Py_DECREF(handle);
    Py_DECREF(shm);
    return rc;
}
