/* module.c - the pyshm._pyshm module: state, exceptions, and multi-phase init. */
#include "pyshm_ext.h"

static struct PyModuleDef pyshm_module;

pyshm_state *pyshm_state_of_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &pyshm_module);
    return module ? (pyshm_state *)PyModule_GetState(module) : NULL;
}

void pyshm_raise(pyshm_state *st, int rc, const char *what)
{
    if (rc == PYSHM_INTERRUPTED)
        return; /* the signal handler's exception is set */
    switch (-rc) {
    case ESHUTDOWN:
        PyErr_Format(st->ShutDown, "%s: the ring was shut down", what);
        break;
    case PYSHM_ENOTREGION:
        PyErr_Format(st->ShareMemError, "%s: not a pyshm region", what);
        break;
    case PYSHM_EVERSION:
        PyErr_Format(st->ShareMemError, "%s: the region has another layout version (this pyshm reads version %u)",
                     what, PYSHM_LAYOUT_VERSION);
        break;
    case PYSHM_ECORRUPT:
        PyErr_Format(st->CorruptionError, "%s: shared memory holds a value no correct process writes", what);
        break;
    case PYSHM_ESTALE:
        PyErr_Format(PyExc_ValueError,
                     "%s: this block was already put back or enqueued (its state in shared memory says so)",
                     what);
        break;
    case ENOMEM:
        PyErr_NoMemory();
        break;
    case EINVAL:
        PyErr_Format(PyExc_ValueError, "%s: invalid argument", what);
        break;
    case EAGAIN:
        PyErr_Format(st->PyshmError,
                     "%s: the free queue is blocked by a get() that never finished (did a process die "
                     "mid-call?); the block is still yours",
                     what);
        break;
    default:
        errno = -rc;
        PyErr_SetFromErrno(st->PyshmError);
        break;
    }
}

int pyshm_uint64_arg(PyObject *obj, const char *name, uint64_t minimum, uint64_t *out)
{
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *value = PyNumber_Index(obj);
    if (!value)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(value);
        return -1;
    }
    if (overflow == 0 && v >= 0 && (uint64_t)v >= minimum) {
        Py_DECREF(value);
        *out = (uint64_t)v;
        return 0;
    }
    if (overflow > 0)
        PyErr_Format(PyExc_ValueError, "%s is too large: %R", name, value);
    else
        PyErr_Format(PyExc_ValueError, "%s must be >= %llu, got %R", name, (unsigned long long)minimum, value);
    Py_DECREF(value);
    return -1;
}

int pyshm_name_arg(PyObject *obj, const char **out)
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

PyObject *pyshm_enter(PyObject *self, PyObject *Py_UNUSED(unused)) { return Py_NewRef(self); }

PyObject *pyshm_exit(PyObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    PyObject *res = PyObject_CallMethod(self, "cleanup", NULL);
    if (!res)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_FALSE;
}

/* exceptions ------------------------------------------------------------------------ */

static PyObject *new_exception(PyObject *module, const char *name, PyObject *bases, const char *doc)
{
    char qualified[64];
    PyOS_snprintf(qualified, sizeof(qualified), "pyshm.%s", name);
    PyObject *exc = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    if (!exc)
        return NULL;
    if (PyModule_AddObjectRef(module, name, exc) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

static int add_exceptions(PyObject *module, pyshm_state *st)
{
    PyObject *queue = PyImport_ImportModule("queue");
    if (!queue)
        return -1;
    PyObject *empty = PyObject_GetAttrString(queue, "Empty");
    PyObject *full = PyObject_GetAttrString(queue, "Full");
    int rc = -1;
    PyObject *bases = NULL;
    if (!empty || !full)
        goto done;
    if (!(st->PyshmError = new_exception(module, "PyshmError", PyExc_Exception, "Base of every pyshm error.")))
        goto done;
    if (!(st->ShareMemError = new_exception(module, "ShareMemError", st->PyshmError, "A region error.")) ||
        !(st->MempoolError = new_exception(module, "MempoolError", st->PyshmError, "A pool error.")) ||
        !(st->RingError = new_exception(module, "RingError", st->PyshmError, "A ring error.")) ||
        !(st->CorruptionError = new_exception(module, "CorruptionError", st->PyshmError,
                                              "Shared memory holds a value no correct process writes.")))
        goto done;
    if (!(bases = PyTuple_Pack(3, st->MempoolError, st->RingError, empty)) ||
        !(st->EmptyError = new_exception(module, "EmptyError", bases, "No free block, or nothing to dequeue.")))
        goto done;
    Py_SETREF(bases, PyTuple_Pack(3, st->MempoolError, st->RingError, full));
    if (!bases || !(st->FullError = new_exception(module, "FullError", bases, "No room to enqueue.")))
        goto done;
    /* queue.ShutDown exists from Python 3.13 on. */
    PyObject *shutdown = PyObject_GetAttrString(queue, "ShutDown");
    if (!shutdown)
        PyErr_Clear();
    Py_SETREF(bases, shutdown ? PyTuple_Pack(2, st->RingError, shutdown) : PyTuple_Pack(1, st->RingError));
    Py_XDECREF(shutdown);
    if (!bases || !(st->ShutDown = new_exception(module, "ShutDown", bases, "The ring was shut down.")))
        goto done;
    rc = 0;
done:
    Py_DECREF(queue);
    Py_XDECREF(bases);
    Py_XDECREF(empty);
    Py_XDECREF(full);
    return rc;
}

/* module ---------------------------------------------------------------------------- */

static int pyshm_exec(PyObject *module)
{
    pyshm_state *st = PyModule_GetState(module);
    if (add_exceptions(module, st) < 0)
        return -1;
    if (!(st->str_block = PyUnicode_InternFromString("block")) ||
        !(st->str_timeout = PyUnicode_InternFromString("timeout")))
        return -1;
    if (!(st->str_release = PyUnicode_InternFromString("release")))
        return -1;
    /* Releasing a view is on every put and enqueue: call memoryview.release directly
     * rather than look the method up each time. */
    for (PyMethodDef *m = PyMemoryView_Type.tp_methods; m && m->ml_name; m++)
        if (strcmp(m->ml_name, "release") == 0 && m->ml_flags == METH_NOARGS)
            st->memoryview_release = m->ml_meth;
    if (pyshm_shm_module_init(module, st) < 0 || pyshm_block_module_init(module, st) < 0 ||
        pyshm_mempool_module_init(module, st) < 0 || pyshm_ring_module_init(module, st) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "MEMPOOL_F_SP_PUT", PYSHM_MEMPOOL_F_SP_PUT) < 0 ||
        PyModule_AddIntConstant(module, "MEMPOOL_F_SC_GET", PYSHM_MEMPOOL_F_SC_GET) < 0 ||
        PyModule_AddIntConstant(module, "RING_F_SP_ENQ", PYSHM_RING_F_SP_ENQ) < 0 ||
        PyModule_AddIntConstant(module, "RING_F_SC_DEQ", PYSHM_RING_F_SC_DEQ) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_VERSION", PYSHM_LAYOUT_VERSION) < 0)
        return -1;
    return 0;
}

static int pyshm_traverse(PyObject *module, visitproc visit, void *arg)
{
    pyshm_state *st = PyModule_GetState(module);
    Py_VISIT(st->ShareMemType);
    Py_VISIT(st->MempoolType);
    Py_VISIT(st->RingType);
    Py_VISIT(st->BlockType);
    Py_VISIT(st->PyshmError);
    Py_VISIT(st->ShareMemError);
    Py_VISIT(st->MempoolError);
    Py_VISIT(st->RingError);
    Py_VISIT(st->EmptyError);
    Py_VISIT(st->FullError);
    Py_VISIT(st->CorruptionError);
    Py_VISIT(st->ShutDown);
    Py_VISIT(st->default_shm);
    return 0;
}

static int pyshm_clear(PyObject *module)
{
    pyshm_state *st = PyModule_GetState(module);
    Py_CLEAR(st->ShareMemType);
    Py_CLEAR(st->MempoolType);
    Py_CLEAR(st->RingType);
    Py_CLEAR(st->BlockType);
    Py_CLEAR(st->PyshmError);
    Py_CLEAR(st->ShareMemError);
    Py_CLEAR(st->MempoolError);
    Py_CLEAR(st->RingError);
    Py_CLEAR(st->EmptyError);
    Py_CLEAR(st->FullError);
    Py_CLEAR(st->CorruptionError);
    Py_CLEAR(st->ShutDown);
    Py_CLEAR(st->default_shm);
    Py_CLEAR(st->str_release);
    Py_CLEAR(st->str_block);
    Py_CLEAR(st->str_timeout);
    pyshm_block_free_spares(st);
    return 0;
}

static void pyshm_free(void *module) { pyshm_clear((PyObject *)module); }

static PyModuleDef_Slot pyshm_slots[] = {
    {Py_mod_exec, pyshm_exec},
    {0, NULL},
};

static struct PyModuleDef pyshm_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyshm._pyshm",
    .m_doc = "C core of pyshm: shared regions, block pools and lock-free rings.",
    .m_size = sizeof(pyshm_state),
    .m_slots = pyshm_slots,
    .m_traverse = pyshm_traverse,
    .m_clear = pyshm_clear,
    .m_free = pyshm_free,
};

PyMODINIT_FUNC PyInit__pyshm(void) { return PyModuleDef_Init(&pyshm_module); }
