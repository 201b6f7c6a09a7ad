/*
 * aio.c - what the asyncio methods (pyshm/_aio.py) need from C.
 *
 * The coroutines themselves are Python: each *_async method of Mempool and Ring imports
 * pyshm._aio and returns its coroutine. An attempt there is one non-blocking call in the
 * event loop's thread; between attempts a task awaits a future that a watcher thread
 * resolves when the waitpoint's epoch moves. _Watch is that thread's sleep: futex_waitv
 * (waitmany.h) on the epochs its tasks await and on a private word of its own that the
 * loop threads bump (kick) when its set changes.
 */
#include "pyshm_ext.h"

#include <errno.h>

#include "waitmany.h"

PyObject *pyshm_aio_call(const char *fname, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    /* The module is imported once per interpreter and kept in the module state. */
    pyshm_state *st = ((CarvedObject *)self)->state;
    if (!st->aio && !(st->aio = PyImport_ImportModule("pyshm._aio")))
        return NULL;
    PyObject *func = PyObject_GetAttrString(st->aio, fname);
    if (!func)
        return NULL;
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **all = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
    PyObject *result = NULL;
    if (!all) {
        PyErr_NoMemory();
    } else {
        all[0] = self;
        for (Py_ssize_t i = 0; i < total; i++)
            all[i + 1] = args[i];
        result = PyObject_Vectorcall(func, all, (size_t)nargs + 1, kwnames);
        PyMem_Free(all);
    }
    Py_DECREF(func);
    return result;
}

typedef struct {
    PyObject_HEAD
    pyshm_atomic32 word; /* private: bumped by kick() */
} WatchObject;

static PyObject *watch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (!PyArg_ParseTuple(args, ":_Watch") || (kwds && PyDict_GET_SIZE(kwds))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "_Watch() takes no arguments");
        return NULL;
    }
    WatchObject *self = (WatchObject *)type->tp_alloc(type, 0);
    if (self)
        atomic_store_explicit(&self->word, 0, memory_order_relaxed);
    return (PyObject *)self;
}

static void watch_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *watch_seq(WatchObject *self, PyObject *Py_UNUSED(unused))
{
    return PyLong_FromUnsignedLong(atomic_load_explicit(&self->word, memory_order_seq_cst));
}

static PyObject *watch_kick(WatchObject *self, PyObject *Py_UNUSED(unused))
{
    atomic_fetch_add_explicit(&self->word, 1, memory_order_seq_cst);
    pyshm_waitmany_wake_private((uint32_t *)&self->word);
    Py_RETURN_NONE;
}

/* wait(addrs, expected, seq, timeout): sleep while each epoch word addrs[i] holds
 * expected[i] and the private word holds seq, for at most timeout seconds (None: no
 * limit). The words are those of counted waits (pyshm_waits_add): their regions stay
 * mapped; one unmapped meanwhile only makes the kernel return early. Returns the
 * system call's result: an index, or -errno. */
static PyObject *watch_wait(WatchObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1]) || PyList_GET_SIZE(args[0]) >= PYSHM_WAITMANY_MAX) {
        PyErr_Format(PyExc_TypeError, "_Watch.wait(addrs, expected, seq, timeout): two lists of under %d ints",
                     PYSHM_WAITMANY_MAX);
        return NULL;
    }
    struct pyshm_waitmany_word words[PYSHM_WAITMANY_MAX];
    uint32_t n = (uint32_t)PyList_GET_SIZE(args[0]);
    for (uint32_t i = 0; i < n; i++) {
        words[i].addr = PyLong_AsVoidPtr(PyList_GET_ITEM(args[0], i));
        words[i].expected = (uint32_t)PyLong_AsUnsignedLongMask(PyList_GET_ITEM(args[1], i));
        words[i].private_word = 0;
        if (PyErr_Occurred())
            return NULL;
    }
    words[n].addr = (const uint32_t *)&self->word;
    words[n].expected = (uint32_t)PyLong_AsUnsignedLongMask(args[2]);
    words[n].private_word = 1;
    uint64_t timeout_ns = UINT64_MAX;
    if (args[3] != Py_None) {
        double seconds = PyFloat_AsDouble(args[3]);
        if (seconds == -1.0 && PyErr_Occurred())
            return NULL;
        timeout_ns = seconds <= 0 ? 0 : seconds > 1e9 ? UINT64_MAX : (uint64_t)(seconds * 1e9);
    }
    if (PyErr_Occurred())
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pyshm_waitmany(words, n + 1, timeout_ns);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(rc);
}

static PyMethodDef watch_methods[] = {
    {"seq", (PyCFunction)watch_seq, METH_NOARGS, "seq($self, /)\n--\n\nThe private word."},
    {"kick", (PyCFunction)watch_kick, METH_NOARGS, "kick($self, /)\n--\n\nBump the private word and wake."},
    {"wait", (PyCFunction)(void (*)(void))watch_wait, METH_FASTCALL,
     "wait($self, addrs, expected, seq, timeout, /)\n--\n\n"
     "futex_waitv on the epoch words and the private word: an index, or -errno."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot watch_slots[] = {
    {Py_tp_new, watch_new},
    {Py_tp_dealloc, watch_dealloc},
    {Py_tp_methods, watch_methods},
    {Py_tp_doc, "The sleep of one asyncio watcher thread (internal)."},
    {0, NULL},
};

static PyType_Spec watch_spec = {
    .name = "pyshm._pyshm._Watch",
    .basicsize = sizeof(WatchObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = watch_slots,
};

int pyshm_aio_module_init(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &watch_spec, NULL);
    if (!type)
        return -1;
    int rc = PyModule_AddType(module, (PyTypeObject *)type);
    Py_DECREF(type);
    return rc;
}
