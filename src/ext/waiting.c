/*
 * waiting.c - block=/timeout= for every call that can wait, with queue.Queue semantics.
 *
 * The ordering protocol lives in src/core/wait.h; this file adds what only the binding
 * can: releasing the GIL while asleep, running signal handlers between sleeps (so
 * Ctrl-C raises KeyboardInterrupt within one sleep slice), and keeping the region
 * mapped while no lock protects it.
 */
#include "pyshm_ext.h"

#include <float.h>
#include <sched.h>

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

int pyshm_wait_options(PyObject *block, PyObject *timeout, struct pyshm_wait_options *out)
{
    out->block = 0;
    out->deadline_ns = UINT64_MAX;
    if (block) {
        int truth = PyObject_IsTrue(block);
        if (truth < 0)
            return -1;
        out->block = truth;
    }
    if (!timeout || timeout == Py_None || !out->block)
        return 0;
    double seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred())
        return -1;
    if (!(seconds >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return -1;
    }
    if (seconds < 1e9) /* longer is forever, for any practical purpose */
        out->deadline_ns = pyshm_now_ns() + (uint64_t)(seconds * 1e9);
    return 0;
}

/* Whether a keyword name is `want` (interned; the compiler interns keyword names). */
static int keyword_is(PyObject *name, PyObject *want)
{
    return name == want || PyUnicode_Compare(name, want) == 0;
}

int pyshm_parse_wait_fast(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                          Py_ssize_t max_pos, PyObject **pos, struct pyshm_wait_options *opts)
{
    if (nargs > max_pos)
        return 0;
    PyObject *block = NULL, *timeout = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (keyword_is(name, st->str_block) && !block)
            block = args[nargs + i];
        else if (keyword_is(name, st->str_timeout) && !timeout)
            timeout = args[nargs + i];
        else
            return 0; /* the general parser says what is wrong, or handles it */
    }
    for (Py_ssize_t i = 0; i < max_pos; i++)
        pos[i] = i < nargs ? args[i] : NULL;
    return pyshm_wait_options(block, timeout, opts) < 0 ? -1 : 1;
}

int pyshm_parse_counted(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                        const char *format, char **kwlist, Py_ssize_t *n, struct pyshm_wait_options *opts)
{
    PyObject *count = NULL;
    int fast = pyshm_parse_wait_fast(st, args, nargs, kwnames, 1, &count, opts);
    if (fast < 0)
        return -1;
    if (fast == 1 && count) {
        *n = PyNumber_AsSsize_t(count, PyExc_OverflowError);
        return *n == -1 && PyErr_Occurred() ? -1 : 0;
    }
    PyObject *block = NULL, *timeout = NULL;
    if (pyshm_parse_call(args, nargs, kwnames, format, kwlist, n, &block, &timeout) < 0)
        return -1;
    return pyshm_wait_options(block, timeout, opts);
}

int pyshm_parse_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *format,
                     char **kwlist, ...)
{
    PyObject *tuple = PyTuple_New(nargs);
    if (!tuple)
        return -1;
    for (Py_ssize_t i = 0; i < nargs; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    PyObject *dict = NULL;
    if (kwnames) {
        dict = PyDict_New();
        for (Py_ssize_t i = 0; dict && i < PyTuple_GET_SIZE(kwnames); i++)
            if (PyDict_SetItem(dict, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
                Py_CLEAR(dict);
        if (!dict) {
            Py_DECREF(tuple);
            return -1;
        }
    }
    va_list va;
    va_start(va, kwlist);
    int ok = PyArg_VaParseTupleAndKeywords(tuple, dict, format, kwlist, va);
    va_end(va);
    Py_DECREF(tuple);
    Py_XDECREF(dict);
    return ok ? 0 : -1;
}

int pyshm_wait_until(ShareMemObject *shm, struct pyshm_waitpoint *point, uint32_t *spin_budget, int again,
                     pyshm_attempt_fn attempt, void *ctx, const struct pyshm_wait_options *opts)
{
    int rc = attempt(ctx);
    if (rc != again || !opts->block)
        return rc;
    uint32_t budget = *spin_budget ? *spin_budget : SPIN_MAX_NS; /* 0: never waited yet */
    uint64_t spin_until = pyshm_now_ns() + budget;
    if (spin_until > opts->deadline_ns)
        spin_until = opts->deadline_ns;
    do {
        for (int i = 0; i < 16; i++) {
            pyshm_cpu_relax();
            rc = attempt(ctx);
            if (rc != again) {
                *spin_budget = SPIN_MAX_NS;
                return rc;
            }
        }
        /* Lets a peer that shares this CPU run; returns at once when none does. */
        sched_yield();
    } while (pyshm_now_ns() < spin_until);
    *spin_budget = budget - budget / 4 < SPIN_MIN_NS ? SPIN_MIN_NS : budget - budget / 4;
    /* Asleep without the GIL, another thread could try to clean up the region: count
     * this wait as an export so that cleanup() refuses instead of unmapping. */
    Py_INCREF(shm);
    shm->exports++;
    for (;;) {
        uint32_t epoch = pyshm_wait_prepare(point);
        rc = attempt(ctx);
        uint64_t now = pyshm_now_ns();
        if (rc != again || now >= opts->deadline_ns) {
            pyshm_wait_done(point);
            break;
        }
        uint64_t left = opts->deadline_ns - now;
        /* Wake now and then to look for a process that died mid-operation and left the
         * queue stuck (repair.h): then waiting would be in vain until someone repairs. */
        if (left > REPAIR_PERIOD_NS)
            left = REPAIR_PERIOD_NS;
        Py_BEGIN_ALLOW_THREADS
        pyshm_wait_sleep(point, epoch, left);
        Py_END_ALLOW_THREADS
        pyshm_wait_done(point);
        if (PyErr_CheckSignals() < 0) {
            rc = PYSHM_INTERRUPTED;
            break;
        }
        /* Once per period per region, across calls: short timeouts in a loop count too. */
        now = pyshm_now_ns();
        if (now >= shm->next_repair_ns) {
            struct pyshm_repair_report report;
            shm->next_repair_ns = now + REPAIR_PERIOD_NS;
            pyshm_region_repair(&shm->region, 1, &report); /* best effort: errors surface in the attempt */
        }
    }
    shm->exports--;
    Py_DECREF(shm);
    return rc;
}
