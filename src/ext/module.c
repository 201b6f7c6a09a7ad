/* module.c - the pyshm._pyshm module: its state, and assembling the types and exceptions
 * that the other files define. */
#include "pyshm_ext.h"

static struct PyModuleDef pyshm_module;

pyshm_state *pyshm_state_of_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &pyshm_module);
    return module ? (pyshm_state *)PyModule_GetState(module) : NULL;
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

static int pyshm_exec(PyObject *module)
{
    pyshm_state *st = PyModule_GetState(module);
    if (!(st->str_block = PyUnicode_InternFromString("block")) ||
        !(st->str_timeout = PyUnicode_InternFromString("timeout")) ||
        !(st->str_release = PyUnicode_InternFromString("release")))
        return -1;
    /* Releasing a view is on every put and enqueue: call memoryview.release directly
     * rather than look the method up each time. */
    for (PyMethodDef *m = PyMemoryView_Type.tp_methods; m && m->ml_name; m++)
        if (strcmp(m->ml_name, "release") == 0 && m->ml_flags == METH_NOARGS)
            st->memoryview_release = m->ml_meth;
    if (pyshm_errors_init(module, st) < 0 || pyshm_shm_module_init(module, st) < 0 ||
        pyshm_block_module_init(module, st) < 0 || pyshm_carved_module_init(module, st) < 0 ||
        pyshm_mempool_module_init(module, st) < 0 || pyshm_ring_module_init(module, st) < 0 ||
        pyshm_rawbuf_module_init(module, st) < 0 || pyshm_message_module_init(module, st) < 0 || pyshm_aio_module_init(module) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "MEMPOOL_F_SP_PUT", PYSHM_MEMPOOL_F_SP_PUT) < 0 ||
        PyModule_AddIntConstant(module, "MEMPOOL_F_SC_GET", PYSHM_MEMPOOL_F_SC_GET) < 0 ||
        PyModule_AddIntConstant(module, "MEMPOOL_F_RETURN_PAGES", PYSHM_MEMPOOL_F_RETURN_PAGES) < 0 ||
        PyModule_AddIntConstant(module, "RING_F_SP_ENQ", PYSHM_BLOCK_RING_F_SP_ENQ) < 0 ||
        PyModule_AddIntConstant(module, "RING_F_SC_DEQ", PYSHM_BLOCK_RING_F_SC_DEQ) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_VERSION", PYSHM_LAYOUT_VERSION) < 0 ||
        PyModule_AddIntConstant(module, "MAX_MEMBERS", PYSHM_MEMBER_ENTRIES) < 0 ||
        PyModule_AddIntConstant(module, "REGION_OVERHEAD", (long)PYSHM_OBJECTS_OFFSET) < 0)
        return -1;
    return 0;
}

/* Every object the state holds, visited or cleared alike. */
#define PYSHM_STATE_OBJECTS(X)                                                                                      \
    X(ShareMemType) X(CarvedType) X(MempoolType) X(RingType) X(RawBufferType) X(BlockType) X(QueueBaseType) X(CollectorType) X(PyshmError)            \
        X(ShareMemError) X(MempoolError) X(RingError) X(EmptyError) X(FullError) X(CorruptionError) X(ShutDown)    \
            X(default_shm) X(aio) X(str_block) X(str_timeout) X(str_release)

static int pyshm_traverse(PyObject *module, visitproc visit, void *arg)
{
    pyshm_state *st = PyModule_GetState(module);
#define VISIT(field) Py_VISIT(st->field);
    PYSHM_STATE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int pyshm_clear(PyObject *module)
{
    pyshm_state *st = PyModule_GetState(module);
#define CLEAR(field) Py_CLEAR(st->field);
    PYSHM_STATE_OBJECTS(CLEAR)
#undef CLEAR
    pyshm_block_free_spares(st);
    return 0;
}

static void pyshm_free(void *module) { pyshm_clear((PyObject *)module); }

static PyModuleDef_Slot pyshm_slots[] = {
    {Py_mod_exec, pyshm_exec},
#ifdef Py_mod_multiple_interpreters
    /* Everything lives in the module state or in objects; the core's process-wide parts
     * (the fork registry of liveness.c) are thread-safe. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static PyMethodDef pyshm_functions[] = {
    {"_release_when_dropped", pyshm_block_release_when_dropped, METH_O,
     "Let a block view handed out by get() or dequeue() give its block back quietly once "
     "the last view or array of it is gone (pyshm.Queue's out-of-band buffers)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pyshm_module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = pyshm_functions,
    .m_name = "pyshm._pyshm",
    .m_doc = "C core of pyshm: shared regions, block pools, lock-free rings and raw buffers.",
    .m_size = sizeof(pyshm_state),
    .m_slots = pyshm_slots,
    .m_traverse = pyshm_traverse,
    .m_clear = pyshm_clear,
    .m_free = pyshm_free,
};

PyMODINIT_FUNC PyInit__pyshm(void) { return PyModuleDef_Init(&pyshm_module); }
