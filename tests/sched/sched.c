/* sched.c - the deterministic scheduler of sched.h: coroutines, decisions, strategies. */
#define _GNU_SOURCE
#include "sched.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hooks.h" /* enum sched_op (this file uses no atomics itself) */

/* ------------------------------------------------------------------------------------ */
/* Context switching: a hand-written x86-64 switch (no signal-mask system call), else    */
/* ucontext.                                                                              */

#define STACK_SIZE (512u * 1024u)

#if defined(__x86_64__)
struct ctx {
    void *sp;
};
void sched_ctx_switch(void **save_sp, void *new_sp);
__asm__(".text\n"
        ".globl sched_ctx_switch\n"
        ".type sched_ctx_switch,@function\n"
        "sched_ctx_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size sched_ctx_switch, .-sched_ctx_switch\n");

static void ctx_make(struct ctx *c, void *stack, size_t size, void (*entry)(void))
{
    uint64_t *top = (uint64_t *)(((uintptr_t)stack + size) & ~(uintptr_t)15);
    *--top = 0;                   /* fake return address of entry: rsp = 8 mod 16 there */
    *--top = (uint64_t)(uintptr_t)entry;
    for (int i = 0; i < 6; i++)
        *--top = 0;               /* rbp rbx r12 r13 r14 r15 */
    *--top = 0x1f80 | (uint64_t)0x037f << 32; /* default mxcsr, x87 control word */
    c->sp = top;
}
static void ctx_swap(struct ctx *from, struct ctx *to) { sched_ctx_switch(&from->sp, to->sp); }
#else
#include <ucontext.h>
struct ctx {
    ucontext_t uc;
};
static void ctx_make(struct ctx *c, void *stack, size_t size, void (*entry)(void))
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, entry, 0);
}
static void ctx_swap(struct ctx *from, struct ctx *to) { swapcontext(&from->uc, &to->uc); }
#endif

/* ------------------------------------------------------------------------------------ */

enum actor_state { A_UNUSED = 0, A_RUNNABLE, A_FINISHED, A_DEAD };

/* Actions a decision picks among; options[0] is always the default. */
#define ACT_RUN(j) (j)
#define ACT_KILL(j) (16 + (j))
#define ACT_FAIL 32
#define ACT_NONE 33
#define IS_RUN(a) ((a) >= 0 && (a) < 16)
#define IS_KILL(a) ((a) >= 16 && (a) < 32)

enum dtype { D_POINT, D_END, D_NEXT, D_YIELD, D_LIVE, D_WEAK };

struct actor {
    struct ctx ctx;
    void *stack;
    int state;
};

struct choice {
    int nopts;
    int chosen;
};

struct alloc_rec {
    void *p;
    int owner;
};

#define MAX_QUIET 64
#define MAX_TRACE 65536
#define MAX_ALLOCS 4096

static struct {
    struct sched_config cfg;
    int active;   /* a schedule is running and we are inside an actor */
    int cur;      /* running actor, or an identity outside exploration */
    int nactors;
    struct actor a[SCHED_MAX_ACTORS];
    struct ctx main_ctx;
    sched_actor_fn fn;
    void *arg;
    void (*hook)(int);
    uintptr_t shared_lo, shared_hi;
    uintptr_t quiet_lo[MAX_QUIET], quiet_hi[MAX_QUIET];
    int nquiet;
    uint64_t now;
    long step;
    int preempts, kills, spurious;
    int overrun;
    char trace[MAX_TRACE];
    size_t trace_len;
    int trace_truncated;
    /* DFS */
    struct choice *cps;
    long ncps, cap_cps, committed, cp_index;
    int dfs_started, exhausted;
    /* PCT */
    uint64_t rng;
    long prio[SCHED_MAX_ACTORS];
    long change_at[16];
    int nchange;
    long kill_at[8];
    int nkill_plan, kill_next;
    long low_water;
    long est_steps;
    /* REPLAY */
    long *rp_step;
    int *rp_action;
    int rp_count, rp_next, replay_done;
    /* stats */
    uint64_t schedules, total_steps;
    /* verbose log of decisions */
    FILE *log;
    const char *(*describe)(const volatile void *);
    int last_op;
    uintptr_t last_addr;
    /* solo run (the survivor): no decisions, points counted and bounded */
    int solo;
    long solo_points, solo_max;
    int solo_overrun;
    struct actor solo_actor;
    void (*solo_fn)(void *);
    void *solo_arg;
    /* malloc tracking */
    struct alloc_rec allocs[MAX_ALLOCS];
    int nallocs;
} S = {.cur = SCHED_MAIN};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sched: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(3);
}

/* ---- RNG (splitmix64) ---- */
static uint64_t rng_next(void)
{
    uint64_t z = (S.rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t rng_below(uint64_t n) { return n ? rng_next() % n : 0; }

/* ---- malloc tracking: an actor killed mid-call never frees what it allocated ---- */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static void track_add(void *p)
{
    if (p && (S.active || S.solo) && S.cur >= 0 && S.nallocs < MAX_ALLOCS)
        S.allocs[S.nallocs++] = (struct alloc_rec){p, S.cur};
}
static void track_remove(void *p)
{
    for (int i = S.nallocs - 1; i >= 0; i--)
        if (S.allocs[i].p == p) {
            S.allocs[i] = S.allocs[--S.nallocs];
            return;
        }
}
void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    track_add(p);
    return p;
}
void *__wrap_calloc(size_t n, size_t m)
{
    void *p = __real_calloc(n, m);
    track_add(p);
    return p;
}
void *__wrap_realloc(void *p, size_t n)
{
    void *q = __real_realloc(p, n);
    if (q && p)
        track_remove(p);
    if (q)
        track_add(q);
    return q;
}
void __wrap_free(void *p)
{
    if (p && S.nallocs)
        track_remove(p);
    __real_free(p);
}

/* ---- trace ---- */
static void trace_add(long step, int action)
{
    char buf[48];
    int n;
    if (IS_RUN(action))
        n = snprintf(buf, sizeof buf, "%s%ld:r%d", S.trace_len ? "," : "", step, action);
    else if (IS_KILL(action))
        n = snprintf(buf, sizeof buf, "%s%ld:k%d", S.trace_len ? "," : "", step, action - 16);
    else
        n = snprintf(buf, sizeof buf, "%s%ld:f", S.trace_len ? "," : "", step);
    if (S.trace_len + (size_t)n + 1 >= MAX_TRACE) {
        S.trace_truncated = 1;
        return;
    }
    memcpy(S.trace + S.trace_len, buf, (size_t)n + 1);
    S.trace_len += (size_t)n;
}

static void parse_trace(const char *t)
{
    free(S.rp_step);
    free(S.rp_action);
    size_t cap = 16;
    S.rp_step = malloc(cap * sizeof(long));
    S.rp_action = malloc(cap * sizeof(int));
    S.rp_count = 0;
    while (t && *t) {
        char *end;
        long step = strtol(t, &end, 10);
        if (end == t || *end != ':')
            die("bad trace near \"%s\"", t);
        t = end + 1;
        int action;
        if (*t == 'r' || *t == 'k') {
            char c = *t++;
            long j = strtol(t, &end, 10);
            if (end == t || j < 0 || j >= SCHED_MAX_ACTORS)
                die("bad actor in trace near \"%s\"", t);
            t = end;
            action = c == 'r' ? ACT_RUN((int)j) : ACT_KILL((int)j);
        } else if (*t == 'f') {
            t++;
            action = ACT_FAIL;
        } else {
            die("bad action in trace near \"%s\"", t);
        }
        if ((size_t)S.rp_count == cap) {
            cap *= 2;
            S.rp_step = realloc(S.rp_step, cap * sizeof(long));
            S.rp_action = realloc(S.rp_action, cap * sizeof(int));
        }
        S.rp_step[S.rp_count] = step;
        S.rp_action[S.rp_count++] = action;
        if (*t == ',')
            t++;
        else if (*t)
            die("bad trace separator near \"%s\"", t);
    }
}

/* ---- the decision ---- */

static int pct_pick(int type, const int *opts, int nopts);

/* Pick one of opts (opts[0] the default); returns the action. Counts a step. */
static int decide(int type, const int *opts, int nopts)
{
    long step = ++S.step;
    S.now += SCHED_TICK_NS;
    if (step > S.cfg.max_steps && S.cfg.max_steps > 0)
        return opts[0]; /* the caller of decide notices overrun via S.step */
    int idx = 0;
    if (nopts > 1) {
        switch (S.cfg.strategy) {
        case SCHED_DFS:
            if (S.cp_index < S.committed) {
                struct choice *c = &S.cps[S.cp_index];
                if (c->nopts != nopts)
                    die("nondeterminism: choice point %ld had %d options, now %d (step %ld)", S.cp_index,
                        c->nopts, nopts, step);
                idx = c->chosen;
            } else {
                if (S.ncps == S.cap_cps) {
                    S.cap_cps = S.cap_cps ? 2 * S.cap_cps : 1024;
                    S.cps = realloc(S.cps, (size_t)S.cap_cps * sizeof(*S.cps));
                }
                S.cps[S.ncps++] = (struct choice){nopts, 0};
                idx = 0;
            }
            S.cp_index++;
            break;
        case SCHED_PCT: {
            int action = pct_pick(type, opts, nopts);
            for (idx = 0; idx < nopts && opts[idx] != action; idx++)
                ;
            if (idx == nopts)
                idx = 0;
            break;
        }
        case SCHED_REPLAY:
            if (S.rp_next < S.rp_count && S.rp_step[S.rp_next] == step) {
                int action = S.rp_action[S.rp_next++];
                for (idx = 0; idx < nopts && opts[idx] != action; idx++)
                    ;
                if (idx == nopts)
                    die("replay: step %ld: action not possible here", step);
            }
            break;
        }
    } else if (S.cfg.strategy == SCHED_REPLAY && S.rp_next < S.rp_count && S.rp_step[S.rp_next] == step) {
        if (S.rp_action[S.rp_next] != opts[0])
            die("replay: step %ld: action not possible here", step);
        S.rp_next++;
    }
    if (idx != 0)
        trace_add(step, opts[idx]);
    if (S.log) {
        static const char *tn[] = {"point", "end", "next", "yield", "live?", "weak"};
        static const char *on[] = {"", "load", "store", "rmw", "cas", "cas-weak", "fence"};
        fprintf(S.log, "  step %5ld  actor %2d  %-5s", step, S.cur, tn[type]);
        if (type == D_POINT) {
            char where[40];
            if (S.describe)
                snprintf(where, sizeof where, "%s", S.describe((const volatile void *)S.last_addr));
            else
                snprintf(where, sizeof where, "+0x%05lx", (unsigned long)(S.last_addr - S.shared_lo));
            fprintf(S.log, " %-8s %-28s", on[S.last_op], where);
        }
        int a = opts[idx];
        if (IS_RUN(a))
            fprintf(S.log, "  -> run %d%s\n", a, idx ? "  *" : "");
        else if (IS_KILL(a))
            fprintf(S.log, "  -> KILL %d  *\n", a - 16);
        else
            fprintf(S.log, "  -> %s\n", a == ACT_FAIL ? "spurious failure  *" : "no");
    }
    return opts[idx];
}

static void switch_to(int next)
{
    int prev = S.cur;
    S.cur = next;
    if (next >= 0 && S.hook)
        S.hook(next);
    struct ctx *from = prev >= 0 ? &S.a[prev].ctx : &S.main_ctx;
    struct ctx *to = next >= 0 ? &S.a[next].ctx : &S.main_ctx;
    if (from != to)
        ctx_swap(from, to);
}

/* Runnable actors other than `me`, in round-robin order after `me`. */
static int others_runnable(int me, int *opts)
{
    int n = 0;
    for (int k = 1; k <= S.nactors; k++) {
        int j = ((me < 0 ? -1 : me) + k) % S.nactors;
        if (j < 0)
            j += S.nactors;
        if (j != me && S.a[j].state == A_RUNNABLE)
            opts[n++] = ACT_RUN(j);
    }
    return n;
}

static void check_overrun(void)
{
    if (S.cfg.max_steps > 0 && S.step > S.cfg.max_steps && !S.overrun) {
        S.overrun = 1;
        S.active = 0;
        switch_to(SCHED_MAIN); /* never resumed */
    }
}

/* F: the running actor cannot go on; pick the next one (free), or go back to main. */
static void run_next(void)
{
    int opts[SCHED_MAX_ACTORS];
    int n = others_runnable(S.cur, opts);
    if (n == 0) {
        S.active = 0;
        switch_to(SCHED_MAIN);
        return;
    }
    int action = decide(D_NEXT, opts, n);
    check_overrun();
    switch_to(action);
}

static int mortal(int x) { return S.cfg.mortal == 0 || (S.cfg.mortal >> x & 1u); }
static int kill_mode(int m) { return S.cfg.kill_modes == 0 || (S.cfg.kill_modes & m); }

static void kill_actor(int x)
{
    S.a[x].state = A_DEAD;
    S.kills++;
}

static void solo_point(void)
{
    if (++S.solo_points > S.solo_max && !S.solo_overrun) {
        S.solo_overrun = 1;
        ctx_swap(&S.solo_actor.ctx, &S.main_ctx); /* never resumed */
    }
}

void sched_point(int op, const volatile void *addr)
{
    if (!S.active) {
        if (S.solo && addr)
            solo_point();
        return;
    }
    uintptr_t p = (uintptr_t)addr;
    if (p < S.shared_lo || p >= S.shared_hi)
        return; /* process-local, or a fence */
    for (int i = 0; i < S.nquiet; i++)
        if (p >= S.quiet_lo[i] && p < S.quiet_hi[i])
            return;
    int me = S.cur;
    int opts[SCHED_MAX_ACTORS + 2];
    int n = 1;
    S.last_op = op;
    S.last_addr = p;
    opts[0] = ACT_RUN(me);
    if ((S.preempts < S.cfg.max_preempt || S.cfg.strategy != SCHED_DFS) &&
        (S.cfg.preemptible == 0 || (S.cfg.preemptible >> me & 1u) || S.cfg.strategy == SCHED_REPLAY))
        n += others_runnable(me, opts + 1);
    if (S.kills < S.cfg.max_kills && op != SCHED_OP_LOAD && mortal(me) && kill_mode(SCHED_KILL_SELF))
        opts[n++] = ACT_KILL(me);
    int action = decide(D_POINT, opts, n);
    check_overrun();
    if (IS_KILL(action)) {
        kill_actor(me);
        run_next(); /* never returns */
        die("a killed actor ran again");
    }
    if (action != ACT_RUN(me)) {
        S.preempts++;
        switch_to(action);
        check_overrun();
    }
}

int sched_weak_cas_fails(const volatile void *addr)
{
    if (!S.active)
        return 0;
    uintptr_t p = (uintptr_t)addr;
    if (p < S.shared_lo || p >= S.shared_hi)
        return 0;
    for (int i = 0; i < S.nquiet; i++)
        if (p >= S.quiet_lo[i] && p < S.quiet_hi[i])
            return 0;
    /* Always a step (numbering must not depend on budgets); an option only within one. */
    int opts[2] = {ACT_NONE, ACT_FAIL};
    if (decide(D_WEAK, opts, S.spurious < S.cfg.max_spurious ? 2 : 1) == ACT_FAIL) {
        S.spurious++;
        return 1;
    }
    return 0;
}

int sched_yield(void)
{
    S.now += SCHED_YIELD_NS;
    if (!S.active) {
        if (S.solo)
            solo_point();
        return 0;
    }
    int opts[SCHED_MAX_ACTORS];
    int n = others_runnable(S.cur, opts);
    if (n == 0) {
        ++S.step; /* still a step, so traces stay aligned */
        check_overrun();
        return 0;
    }
    int action = decide(D_YIELD, opts, n);
    check_overrun();
    switch_to(action);
    check_overrun();
    return 0;
}

/* Sleeping is yielding too, for the time asked (the core's patience loops, back-offs). */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!S.active && !S.solo) {
        /* outside simulated processes: really sleep */
        return (int)syscall(SYS_nanosleep, req, rem);
    }
    uint64_t ns = req ? (uint64_t)req->tv_sec * 1000000000u + (uint64_t)req->tv_nsec : 0;
    S.now += ns > SCHED_YIELD_NS ? ns - SCHED_YIELD_NS : 0;
    if (rem)
        rem->tv_sec = rem->tv_nsec = 0;
    return sched_yield();
}

int sched_liveness_query(int x)
{
    if (x < 0 || x >= S.nactors || S.a[x].state == A_UNUSED)
        return 0;
    if (S.a[x].state == A_DEAD)
        return 1;
    if (!S.active || x == S.cur)
        return 0;
    int opts[2] = {ACT_NONE, ACT_KILL(x)};
    if (decide(D_LIVE, opts, S.kills < S.cfg.max_kills && mortal(x) && kill_mode(SCHED_KILL_AT_QUERY) ? 2 : 1) ==
        ACT_KILL(x)) {
        kill_actor(x);
        return 1;
    }
    check_overrun();
    return 0;
}

int sched_is_dead(int x) { return x >= 0 && x < S.nactors && S.a[x].state == A_DEAD; }
int sched_current(void) { return S.cur; }
int sched_exploring(void) { return S.active; }
uint64_t sched_now_ns(void) { return S.now; }

void sched_enter_as(int identity)
{
    S.cur = identity;
    if (S.hook)
        S.hook(identity);
}

void sched_set_shared(const void *lo, size_t len)
{
    S.shared_lo = (uintptr_t)lo;
    S.shared_hi = (uintptr_t)lo + len;
}
void sched_add_quiet(const void *lo, size_t len)
{
    if (S.nquiet == MAX_QUIET)
        die("too many quiet ranges");
    S.quiet_lo[S.nquiet] = (uintptr_t)lo;
    S.quiet_hi[S.nquiet++] = (uintptr_t)lo + len;
}
void sched_clear_quiet(void) { S.nquiet = 0; }
void sched_set_switch_hook(void (*hook)(int)) { S.hook = hook; }
void sched_set_log(FILE *f) { S.log = f; }
void sched_set_describe(const char *(*describe)(const volatile void *)) { S.describe = describe; }

/* ---- PCT ---- */

static int pct_pick(int type, const int *opts, int nopts)
{
    int me = S.cur;
    long step = S.step;
    switch (type) {
    case D_WEAK:
        return rng_below(32) == 0 ? ACT_FAIL : ACT_NONE;
    case D_LIVE:
        /* a planned kill that is due may fall on a paused actor */
        if (S.kill_next < S.nkill_plan && step >= S.kill_at[S.kill_next] && rng_below(2) == 0) {
            S.kill_next++;
            return opts[1];
        }
        return ACT_NONE;
    case D_POINT:
    case D_END: {
        for (int i = 0; i < S.nchange; i++)
            if (S.change_at[i] == step && me >= 0)
                S.prio[me] = S.nchange - 1 - i; /* below every initial priority */
        for (int i = 0; i < nopts; i++)
            if (IS_KILL(opts[i]) && S.kill_next < S.nkill_plan && step >= S.kill_at[S.kill_next]) {
                S.kill_next++;
                return opts[i];
            }
        break;
    }
    case D_YIELD:
        if (me >= 0)
            S.prio[me] = --S.low_water; /* let the others run */
        break;
    default:
        break;
    }
    int best = opts[0];
    long best_prio = LONG_MIN;
    for (int i = 0; i < nopts; i++)
        if (IS_RUN(opts[i]) && S.prio[opts[i]] > best_prio) {
            best = opts[i];
            best_prio = S.prio[opts[i]];
        }
    return best;
}

static void pct_prepare(void)
{
    S.rng = S.cfg.seed * 0x9e3779b97f4a7c15ull + S.schedules * 0xd1b54a32d192ed03ull + 1;
    int d = S.cfg.pct_depth > 0 ? S.cfg.pct_depth : 3;
    if (d > 16)
        d = 16;
    long k = S.est_steps > 8 ? S.est_steps : 64;
    int perm[SCHED_MAX_ACTORS];
    for (int i = 0; i < SCHED_MAX_ACTORS; i++)
        perm[i] = i;
    for (int i = SCHED_MAX_ACTORS - 1; i > 0; i--) {
        int j = (int)rng_below((uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < SCHED_MAX_ACTORS; i++)
        S.prio[i] = d + perm[i];
    S.nchange = d - 1;
    for (int i = 0; i < S.nchange; i++)
        S.change_at[i] = 1 + (long)rng_below((uint64_t)k);
    S.nkill_plan = S.cfg.max_kills > 0 ? (int)rng_below((uint64_t)S.cfg.max_kills + 1) : 0;
    if (S.nkill_plan > 8)
        S.nkill_plan = 8;
    for (int i = 0; i < S.nkill_plan; i++)
        S.kill_at[i] = 1 + (long)rng_below((uint64_t)k);
    /* sorted, so kill_next walks them in order */
    for (int i = 1; i < S.nkill_plan; i++)
        for (int j = i; j > 0 && S.kill_at[j - 1] > S.kill_at[j]; j--) {
            long t = S.kill_at[j];
            S.kill_at[j] = S.kill_at[j - 1];
            S.kill_at[j - 1] = t;
        }
    S.kill_next = 0;
    S.low_water = 0;
}

/* ---- driver ---- */

void sched_begin(const struct sched_config *cfg)
{
    S.cfg = *cfg;
    if (S.cfg.max_steps <= 0)
        S.cfg.max_steps = 2000000;
    S.ncps = S.committed = 0;
    S.dfs_started = S.exhausted = 0;
    S.schedules = S.total_steps = 0;
    S.est_steps = 0;
    S.replay_done = 0;
    if (S.cfg.strategy == SCHED_REPLAY)
        parse_trace(S.cfg.trace);
}

int sched_next(void)
{
    switch (S.cfg.strategy) {
    case SCHED_DFS:
        if (!S.dfs_started) {
            S.dfs_started = 1;
            S.committed = 0;
            return 1;
        }
        /* backtrack: the deepest choice point with an untried option */
        while (S.ncps > 0 && S.cps[S.ncps - 1].chosen + 1 >= S.cps[S.ncps - 1].nopts)
            S.ncps--;
        if (S.ncps == 0) {
            S.exhausted = 1;
            return 0;
        }
        S.cps[S.ncps - 1].chosen++;
        S.committed = S.ncps;
        return 1;
    case SCHED_PCT:
        pct_prepare();
        return 1;
    case SCHED_REPLAY:
        if (S.replay_done)
            return 0;
        S.replay_done = 1;
        S.rp_next = 0;
        return 1;
    }
    return 0;
}

static void trampoline(void)
{
    int me = S.cur;
    S.fn(me, S.arg);
    /* E: the script is over; the actor may still die (holding what it holds). */
    {
        int opts[2] = {ACT_RUN(me), ACT_KILL(me)};
        if (decide(D_END, opts, S.kills < S.cfg.max_kills && mortal(me) && kill_mode(SCHED_KILL_SELF) ? 2 : 1) ==
            ACT_KILL(me))
            kill_actor(me);
        check_overrun();
    }
    if (S.a[me].state != A_DEAD)
        S.a[me].state = A_FINISHED;
    run_next();
    die("a finished actor ran again");
}

int sched_run(int nactors, sched_actor_fn fn, void *arg)
{
    if (nactors < 1 || nactors > SCHED_MAX_ACTORS)
        die("bad actor count %d", nactors);
    S.nactors = nactors;
    S.fn = fn;
    S.arg = arg;
    S.step = 0;
    S.now = 1000000000000ull;
    S.preempts = S.kills = S.spurious = 0;
    S.overrun = 0;
    S.trace_len = 0;
    S.trace[0] = 0;
    S.trace_truncated = 0;
    S.cp_index = 0;
    S.nallocs = 0;
    for (int i = 0; i < SCHED_MAX_ACTORS; i++)
        S.a[i].state = A_UNUSED;
    for (int i = 0; i < nactors; i++) {
        if (!S.a[i].stack) {
            void *m = mmap(NULL, STACK_SIZE + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED)
                die("cannot map a stack");
            mprotect(m, 4096, PROT_NONE); /* guard page */
            S.a[i].stack = (char *)m + 4096;
        }
        ctx_make(&S.a[i].ctx, S.a[i].stack, STACK_SIZE, trampoline);
        S.a[i].state = A_RUNNABLE;
    }
    S.cur = SCHED_MAIN;
    S.active = 1;
    run_next(); /* F: who starts; returns when every actor is done */
    S.active = 0;
    S.cur = SCHED_MAIN;
    /* What killed (or abandoned) actors allocated is theirs no more. */
    for (int i = 0; i < S.nallocs; i++) {
        int o = S.allocs[i].owner;
        if (S.overrun || (o >= 0 && o < nactors && S.a[o].state == A_DEAD))
            __real_free(S.allocs[i].p);
    }
    S.nallocs = 0;
    S.schedules++;
    S.total_steps += (uint64_t)S.step;
    if (S.step > S.est_steps)
        S.est_steps = S.step;
    if (S.cfg.strategy == SCHED_DFS && S.cp_index < S.committed)
        die("nondeterminism: the schedule ended after %ld of %ld committed choices", S.cp_index, S.committed);
    return S.overrun ? -1 : 0;
}

static void solo_trampoline(void)
{
    S.solo_fn(S.solo_arg);
    ctx_swap(&S.solo_actor.ctx, &S.main_ctx); /* never resumed */
}

int sched_run_solo(int identity, void (*fn)(void *), void *arg, long max_points)
{
    if (!S.solo_actor.stack) {
        void *m = mmap(NULL, STACK_SIZE + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            die("cannot map a stack");
        mprotect(m, 4096, PROT_NONE);
        S.solo_actor.stack = (char *)m + 4096;
    }
    ctx_make(&S.solo_actor.ctx, S.solo_actor.stack, STACK_SIZE, solo_trampoline);
    S.solo_fn = fn;
    S.solo_arg = arg;
    S.solo_points = 0;
    S.solo_max = max_points;
    S.solo_overrun = 0;
    S.nallocs = 0;
    int saved = S.cur;
    sched_enter_as(identity);
    S.solo = 1;
    ctx_swap(&S.main_ctx, &S.solo_actor.ctx);
    S.solo = 0;
    for (int i = 0; i < S.nallocs; i++)
        if (S.solo_overrun)
            __real_free(S.allocs[i].p);
    S.nallocs = 0;
    sched_enter_as(saved);
    return S.solo_overrun ? -1 : 0;
}

const char *sched_trace(void) { return S.trace_truncated ? "(trace truncated)" : S.trace; }

void sched_get_stats(struct sched_stats *out)
{
    out->schedules = S.schedules;
    out->steps = S.total_steps;
    out->last_steps = S.step;
    out->last_kills = S.kills;
    out->last_preempts = S.preempts;
    out->dfs_depth = S.ncps;
}
