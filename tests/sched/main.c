/*
 * main.c - the exploration driver: picks scenarios, runs schedules under a strategy
 * within a time budget, runs the checks after each, reports violations with a schedule
 * that replays them.
 *
 *   sched_test [--scenario NAME[,NAME...]] [--defects] [--strategy dfs|pct]
 *              [--seconds N] [--max-schedules N] [--preempt P] [--kills K]
 *              [--spurious S] [--depth D] [--seed S] [--keep-going|--tally] [--expect]
 *              [--no-deepening]
 *   sched_test --replay NAME@TRACE [--log]
 *   sched_test --list
 *
 * Exit status: 0 no violation (with --expect: every selected scenario found a violation
 * of an expected kind), 1 otherwise, 2 usage or set-up error.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scenarios.h"
#include "sched.h"
#include "sim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct options {
    const char *names[64];
    int nnames;
    int defects_only;
    int strategy; /* -1: the scenario's */
    double seconds;
    long max_schedules;
    int preempt, kills, spurious, depth; /* -1: the scenario's */
    uint64_t seed;
    int keep_going, expect, log, no_deepening, tally;
    const char *replay;
};

#define MAX_KINDS 24
struct kind_tally {
    char code[32];
    uint64_t count, first_at;
    char schedule[4096];
};

struct outcome {
    struct kind_tally kinds[MAX_KINDS];
    int nkinds;
    uint64_t violating;
    int found;
    int expected; /* the violation's code is one the scenario expects */
    uint64_t schedules;
    double seconds;
    int exhausted;
    char code[32];
    char text[2048];
    char schedule[4096];
    char complete[128]; /* DFS: the largest bounds explored completely */
};

static int code_expected(const struct scenario *sc, const char *code)
{
    if (!sc->expect)
        return 0;
    const char *p = sc->expect;
    size_t n = strlen(code);
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, code, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static void describe(const struct scenario *sc)
{
    const struct sim_shape *s = &sc->shape;
    printf("== %s%s%s%s: %s\n", sc->name, sc->defect ? " (defect " : "", sc->defect ? sc->defect : "",
           sc->defect ? ")" : "", sc->about);
    printf("   %d actor(s): ", s->actors);
    for (int a = 0; a < s->actors; a++)
        printf("%s[%d] \"%s\"", a ? ", " : "", a, sc->script[a]);
    printf("\n   %d pool(s) x %d blocks%s, %d ring(s) of %d\n", s->pools, s->blocks,
           s->pool_flags & SIM_POOL_SP_PUT ? " (F_SP_PUT)" : "", s->rings, s->ring_capacity);
}

/* One exploration of one scenario under one configuration, until a violation (unless
 * keep_going), exhaustion, the deadline or the schedule limit. */
static int run_config(const struct scenario *sc, const struct sched_config *cfg, double deadline, long max_schedules,
                      int keep_going, struct outcome *out)
{
    sched_begin(cfg);
    int n = sc->shape.actors;
    while (now_s() < deadline && (max_schedules <= 0 || (long)out->schedules < max_schedules)) {
        if (!sched_next()) {
            if (cfg->strategy == SCHED_DFS)
                out->exhausted = 1;
            return 0;
        }
        sim_world_reset();
        scenario_reset();
        int rc = sched_run(n, scenario_actor, NULL);
        int v = scenario_final(rc < 0);
        out->schedules++;
        if (v) {
            out->violating++;
            int k;
            for (k = 0; k < out->nkinds && strcmp(out->kinds[k].code, violation_code()) != 0; k++)
                ;
            if (k == out->nkinds && k < MAX_KINDS) {
                out->nkinds++;
                snprintf(out->kinds[k].code, sizeof out->kinds[k].code, "%s", violation_code());
                snprintf(out->kinds[k].schedule, sizeof out->kinds[k].schedule, "%s@%s", sc->name, sched_trace());
                out->kinds[k].first_at = out->schedules;
            }
            if (k < MAX_KINDS)
                out->kinds[k].count++;
        }
        if (v && !out->found) {
            out->found = 1;
            snprintf(out->code, sizeof out->code, "%s", violation_code());
            snprintf(out->text, sizeof out->text, "%s", violation_text());
            snprintf(out->schedule, sizeof out->schedule, "%s@%s", sc->name, sched_trace());
            out->expected = code_expected(sc, out->code);
            out->seconds = 0;
            if (!keep_going)
                return 1;
        }
    }
    return 0;
}

static int explore(const struct scenario *sc, const struct options *o, double budget, struct outcome *out)
{
    memset(out, 0, sizeof *out);
    describe(sc);
    if (scenario_prepare(sc) < 0 || sim_world_create(&sc->shape) < 0)
        return -1;
    int strategy = o->strategy >= 0 ? o->strategy : sc->strategy;
    int P = o->preempt >= 0 ? o->preempt : sc->max_preempt;
    int K = o->kills >= 0 ? o->kills : sc->max_kills;
    int Sp = o->spurious >= 0 ? o->spurious : sc->max_spurious;
    double t0 = now_s(), deadline = t0 + budget;
    struct sched_config cfg = {.strategy = strategy, .max_steps = 200000, .mortal = sc->mortal,
                               .kill_modes = sc->kill_modes, .preemptible = sc->preemptible};
    char bounds[128] = "";
    if (strategy == SCHED_DFS) {
        /* Iterative deepening over (preemptions + kills), then spurious failures last:
         * small bounds are cheap and find most bugs; each level is exhaustive. */
        printf("   DFS, bounds: preemptions <= %d, kills <= %d, spurious CAS failures <= %d\n", P, K, Sp);
        int done = 0;
        int deepen = !(o->no_deepening || sc->no_deepening);
        for (int total = deepen ? 0 : P + K; total <= P + K && !done; total++)
            for (int k = total < K ? total : K; k >= 0 && total - k <= P && !done; k--) {
                cfg.max_preempt = total - k;
                cfg.max_kills = k;
                cfg.max_spurious = 0;
                out->exhausted = 0;
                done = run_config(sc, &cfg, deadline, o->max_schedules, o->keep_going, out);
                snprintf(bounds, sizeof bounds, "preempt<=%d kills<=%d", cfg.max_preempt, cfg.max_kills);
                if (out->exhausted)
                    snprintf(out->complete, sizeof out->complete, "%s", bounds);
                if (!out->exhausted)
                    done = 1; /* out of time */
            }
        if (!out->found && out->exhausted && Sp > 0) {
            cfg.max_preempt = P;
            cfg.max_kills = K;
            cfg.max_spurious = Sp;
            out->exhausted = 0;
            run_config(sc, &cfg, deadline, o->max_schedules, o->keep_going, out);
            snprintf(bounds, sizeof bounds, "preempt<=%d kills<=%d spurious<=%d", P, K, Sp);
            if (out->exhausted)
                snprintf(out->complete, sizeof out->complete, "%s", bounds);
        }
    } else {
        cfg.max_kills = K;
        cfg.max_spurious = Sp;
        cfg.pct_depth = o->depth >= 0 ? o->depth : (sc->pct_depth ? sc->pct_depth : 3);
        cfg.seed = o->seed;
        printf("   PCT, depth %d, kills <= %d, spurious CAS failures <= %d, seed %llu\n", cfg.pct_depth, K, Sp,
               (unsigned long long)o->seed);
        run_config(sc, &cfg, deadline, o->max_schedules, o->keep_going, out);
        snprintf(bounds, sizeof bounds, "pct depth %d kills<=%d", cfg.pct_depth, K);
    }
    out->seconds = now_s() - t0;
    double rate = out->seconds > 0 ? (double)out->schedules / out->seconds : 0;
    if (o->keep_going && out->violating) {
        printf("   %llu of %llu schedules violated an invariant; by the kind of the first violation:\n",
               (unsigned long long)out->violating, (unsigned long long)out->schedules);
        for (int k = 0; k < out->nkinds; k++)
            printf("     %-16s %8llu  first at schedule %llu: %s\n", out->kinds[k].code,
                   (unsigned long long)out->kinds[k].count, (unsigned long long)out->kinds[k].first_at,
                   out->kinds[k].schedule);
    }
    if (out->found) {
        printf("   VIOLATION %s\n", out->text);
        printf("   schedule: %s\n", out->schedule);
        printf("   found after %llu schedules in %.2f s (%s)\n", (unsigned long long)out->schedules, out->seconds, bounds);
        printf("RESULT name=%s status=found code=%s expected=%s schedules=%llu seconds=%.2f rate=%.0f schedule=%s\n",
               sc->name, out->code, out->expected ? "yes" : "no", (unsigned long long)out->schedules, out->seconds, rate,
               out->schedule);
    } else {
        printf("   no violation: %llu schedules in %.2f s (%.0f/s)", (unsigned long long)out->schedules, out->seconds,
               rate);
        if (strategy == SCHED_DFS)
            printf("; every schedule with %s explored%s\n", out->complete[0] ? out->complete : "(no level completed)",
                   out->exhausted ? "" : ", then the time budget ran out");
        else
            printf("\n");
        printf("RESULT name=%s status=pass schedules=%llu seconds=%.2f rate=%.0f exhausted=%s\n", sc->name,
               (unsigned long long)out->schedules, out->seconds, rate, out->exhausted ? "yes" : "no");
    }
    fflush(stdout);
    sim_world_destroy();
    return 0;
}

static int replay(const char *spec, int log)
{
    const char *at = strchr(spec, '@');
    if (!at) {
        fprintf(stderr, "--replay wants NAME@TRACE\n");
        return 2;
    }
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(at - spec), spec);
    const struct scenario *sc = scenario_find(name);
    if (!sc) {
        fprintf(stderr, "no scenario %s\n", name);
        return 2;
    }
    describe(sc);
    if (scenario_prepare(sc) < 0 || sim_world_create(&sc->shape) < 0)
        return 2;
    struct sched_config cfg = {.strategy = SCHED_REPLAY, .max_preempt = 1 << 30, .max_kills = SCHED_MAX_ACTORS,
                               .max_spurious = 1 << 30, .max_steps = 200000, .trace = at + 1, .mortal = 0};
    sched_begin(&cfg);
    sched_next();
    sim_world_reset();
    scenario_reset();
    if (log)
        sched_set_log(stdout);
    int rc = sched_run(sc->shape.actors, scenario_actor, NULL);
    sched_set_log(NULL);
    int v = scenario_final(rc < 0);
    struct sched_stats st;
    sched_get_stats(&st);
    printf("   replayed %ld steps, %d preemption(s), %d kill(s)\n", st.last_steps, st.last_preempts, st.last_kills);
    if (v) {
        printf("   VIOLATION %s\n", violation_text());
        printf("RESULT name=%s status=found code=%s expected=%s schedules=1\n", sc->name, violation_code(),
               code_expected(sc, violation_code()) ? "yes" : "no");
    } else {
        printf("   no violation\nRESULT name=%s status=pass schedules=1\n", sc->name);
    }
    sim_world_destroy();
    return v ? 1 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: sched_test [--scenario NAME[,NAME..]] [--defects] [--strategy dfs|pct] [--seconds N]\n"
                    "                  [--max-schedules N] [--preempt P] [--kills K] [--spurious S] [--depth D]\n"
                    "                  [--seed S] [--keep-going|--tally] [--expect] [--no-deepening]\n"
                    "       sched_test --replay NAME@TRACE [--log]\n"
                    "       sched_test --list\n");
}

int main(int argc, char **argv)
{
    struct options o = {.strategy = -1, .seconds = 20, .preempt = -1, .kills = -1, .spurious = -1, .depth = -1, .seed = 1};
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                                                   \
    do {                                                                                                               \
        if (!v) {                                                                                                      \
            usage();                                                                                                   \
            return 2;                                                                                                  \
        }                                                                                                              \
        i++;                                                                                                           \
    } while (0)
        if (!strcmp(a, "--list")) {
            for (int s = 0; s < scenario_count; s++)
                printf("%-34s %-9s %s\n", scenarios[s].name, scenarios[s].defect ? scenarios[s].defect : "-",
                       scenarios[s].about);
            return 0;
        } else if (!strcmp(a, "--scenario")) {
            NEED_VALUE();
            char *copy = strdup(v), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && o.nnames < 64; t = strtok_r(NULL, ",", &save))
                o.names[o.nnames++] = t;
        } else if (!strcmp(a, "--defects")) {
            o.defects_only = 1;
        } else if (!strcmp(a, "--strategy")) {
            NEED_VALUE();
            o.strategy = !strcmp(v, "dfs") ? SCHED_DFS : !strcmp(v, "pct") ? SCHED_PCT : -2;
            if (o.strategy == -2) {
                usage();
                return 2;
            }
        } else if (!strcmp(a, "--seconds")) {
            NEED_VALUE();
            o.seconds = atof(v);
        } else if (!strcmp(a, "--max-schedules")) {
            NEED_VALUE();
            o.max_schedules = atol(v);
        } else if (!strcmp(a, "--preempt")) {
            NEED_VALUE();
            o.preempt = atoi(v);
        } else if (!strcmp(a, "--kills")) {
            NEED_VALUE();
            o.kills = atoi(v);
        } else if (!strcmp(a, "--spurious")) {
            NEED_VALUE();
            o.spurious = atoi(v);
        } else if (!strcmp(a, "--depth")) {
            NEED_VALUE();
            o.depth = atoi(v);
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            o.seed = strtoull(v, NULL, 0);
        } else if (!strcmp(a, "--keep-going") || !strcmp(a, "--tally")) {
            o.keep_going = 1;
        } else if (!strcmp(a, "--expect")) {
            o.expect = 1;
        } else if (!strcmp(a, "--replay")) {
            NEED_VALUE();
            o.replay = v;
        } else if (!strcmp(a, "--no-deepening")) {
            o.no_deepening = 1;
        } else if (!strcmp(a, "--log")) {
            o.log = 1;
        } else {
            usage();
            return 2;
        }
    }
    printf("core: %s\n", sim_core_name());
    if (o.replay)
        return replay(o.replay, o.log);

    const struct scenario *chosen[128];
    int n = 0;
    if (o.nnames) {
        for (int i = 0; i < o.nnames; i++) {
            const struct scenario *sc = scenario_find(o.names[i]);
            if (!sc) {
                fprintf(stderr, "no scenario %s (see --list)\n", o.names[i]);
                return 2;
            }
            chosen[n++] = sc;
        }
    } else {
        for (int s = 0; s < scenario_count; s++)
            if (!o.defects_only || scenarios[s].defect)
                chosen[n++] = &scenarios[s];
    }
    double start = now_s();
    int violations = 0, missing = 0;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        double left = o.seconds - (now_s() - start);
        double budget = left / (n - i);
        if (budget < 0.05)
            budget = 0.05;
        struct outcome out;
        if (explore(chosen[i], &o, budget, &out) < 0)
            return 2;
        total += out.schedules;
        violations += out.found;
        if (o.expect && !(out.found && out.expected)) {
            missing++;
            printf("   NOT FOUND: scenario %s did not report a violation of kind %s\n", chosen[i]->name,
                   chosen[i]->expect ? chosen[i]->expect : "(none expected)");
        }
    }
    double el = now_s() - start;
    printf("== %d scenario(s), %llu schedules in %.1f s (%.0f/s), %d with a violation\n", n, (unsigned long long)total,
           el, el > 0 ? (double)total / el : 0, violations);
    if (o.expect)
        return missing ? 1 : 0;
    return violations ? 1 : 0;
}
