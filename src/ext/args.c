/*
 * args.c - every argument of every call is checked here, one way: integers are
 * operator.index objects but not bool (TypeError otherwise), out-of-range values are a
 * ValueError that names the argument and the value (never OverflowError), names are
 * checked once, and block=/timeout= follow queue.Queue.
 */
#include "pyshm_ext.h"

#include <math.h>

static int not_an_int(PyObject *obj, const char *name)
{
    PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(obj)->tp_name);
    return -1;
}

int pyshm_arg_u64(PyObject *obj, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    if (PyBool_Check(obj) || !PyIndex_Check(obj))
        return not_an_int(obj, name);
    PyObject *value = PyNumber_Index(obj);
    if (!value)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(value);
        return -1;
    }
    if (overflow == 0 && v >= 0 && (uint64_t)v >= min && (uint64_t)v <= max) {
        Py_DECREF(value);
        *out = (uint64_t)v;
        return 0;
    }
    if (max >= (uint64_t)LLONG_MAX)
        PyErr_Format(PyExc_ValueError, "%s must be >= %llu, got %R", name, (unsigned long long)min, value);
    else
        PyErr_Format(PyExc_ValueError, "%s must be between %llu and %llu, got %R", name, (unsigned long long)min,
                     (unsigned long long)max, value);
    Py_DECREF(value);
    return -1;
}

int pyshm_arg_flags(PyObject *obj, const char *name, uint32_t known, const char *hint, uint32_t *out)
{
    uint64_t flags;
    if (pyshm_arg_u64(obj, name, 0, UINT32_MAX, &flags) < 0)
        return -1;
    if (flags & ~(uint64_t)known) {
        /* (No %llx: CPython 3.11's formatter has no "ll" with "x".) */
        char bits[32];
        PyOS_snprintf(bits, sizeof(bits), "0x%llx", (unsigned long long)(flags & ~(uint64_t)known));
        PyErr_Format(PyExc_ValueError, "%s: unknown bits %s in %llu (use %s)", name, bits, (unsigned long long)flags,
                     hint);
        return -1;
    }
    *out = (uint32_t)flags;
    return 0;
}

int pyshm_arg_name(PyObject *obj, const char **out)
{
    *out = NULL;
    if (!obj || obj == Py_None)
        return 0;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "name must be a str, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(obj, &len);
    if (!utf8)
        return -1;
    if (len == 0 || len > PYSHM_NAME_MAX || memchr(utf8, 0, (size_t)len)) {
        PyErr_Format(PyExc_ValueError, "name must be 1 to %d bytes of UTF-8 without NUL, got %R", PYSHM_NAME_MAX, obj);
        return -1;
    }
    *out = utf8;
    return 0;
}

PyObject *pyshm_arg_region_name(PyObject *name)
{
    const char *utf8;
    if (pyshm_arg_name(name, &utf8) < 0)
        return NULL;
    if (!utf8) {
        PyErr_SetString(PyExc_TypeError, "name must be a str, not None");
        return NULL;
    }
    const char *bare = utf8[0] == '/' ? utf8 + 1 : utf8;
    if (!*bare || strchr(bare, '/') || strcmp(bare, ".") == 0 || strcmp(bare, "..") == 0) {
        PyErr_Format(PyExc_ValueError,
                     "region name %R: use letters, digits, '-', '_' and '.' (not '.' or '..' alone), no '/' after "
                     "an optional leading one",
                     name);
        return NULL;
    }
    return PyUnicode_FromFormat("/%s", bare);
}

int pyshm_arg_wait(PyObject *block, PyObject *timeout, struct pyshm_wait_options *out)
{
    out->block = 0;
    out->deadline_ns = UINT64_MAX;
    if (block) {
        int truth = PyObject_IsTrue(block);
        if (truth < 0)
            return -1;
        out->block = truth;
    }
    /* As queue.Queue: timeout means nothing unless the call may wait. */
    if (!timeout || timeout == Py_None || !out->block)
        return 0;
    if (PyBool_Check(timeout) || !(PyFloat_Check(timeout) || PyIndex_Check(timeout))) {
        PyErr_Format(PyExc_TypeError, "'timeout' must be a number of seconds or None, not %.100s",
                     Py_TYPE(timeout)->tp_name);
        return -1;
    }
    double seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* an int too large for a double: its sign is all that matters */
        PyObject *zero = PyLong_FromLong(0);
        int negative = zero ? PyObject_RichCompareBool(timeout, zero, Py_LT) : -1;
        Py_XDECREF(zero);
        if (negative < 0)
            return -1;
        seconds = negative ? -1.0 : INFINITY;
    }
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
    return pyshm_arg_wait(block, timeout, opts) < 0 ? -1 : 1;
}

int pyshm_parse_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *format, char **kwlist,
                     ...)
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

int pyshm_parse_waiting_slow(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                             const char *fname, char **kwlist, Py_ssize_t npos, Py_ssize_t required,
                             PyObject **pos, struct pyshm_wait_options *opts)
{
    int fast = pyshm_parse_wait_fast(st, args, nargs, kwnames, npos, pos, opts);
    if (fast < 0)
        return -1;
    if (fast == 1 && nargs >= required)
        return 0;
    /* "O|$OO:name", "OO|$OO:name", "|O$OO:name" ... */
    char format[64];
    size_t f = 0;
    for (Py_ssize_t i = 0; i < npos; i++) {
        if (i == required)
            format[f++] = '|';
        format[f++] = 'O';
    }
    if (required == npos)
        format[f++] = '|';
    PyOS_snprintf(format + f, sizeof(format) - f, "$OO:%s", fname);
    PyObject *block = NULL, *timeout = NULL;
    for (Py_ssize_t i = 0; i < npos; i++)
        pos[i] = NULL;
    int rc;
    switch (npos) {
    case 0:
        rc = pyshm_parse_call(args, nargs, kwnames, format, kwlist, &block, &timeout);
        break;
    case 1:
        rc = pyshm_parse_call(args, nargs, kwnames, format, kwlist, &pos[0], &block, &timeout);
        break;
    default:
        rc = pyshm_parse_call(args, nargs, kwnames, format, kwlist, &pos[0], &pos[1], &block, &timeout);
        break;
    }
    return rc < 0 ? -1 : pyshm_arg_wait(block, timeout, opts);
}
