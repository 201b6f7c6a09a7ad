/* mempool_type.c - Mempool: fixed-size blocks of a region, handed out as memoryviews. */
#include "pyshm_ext.h"

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    ShareMemObject *shm; /* NULL once this handle is cleaned up */
    struct pyshm_pool pool;
    size_t pool_slot;
} MempoolObject;

static int pool_check_open(MempoolObject *self)
{
    if (!self->shm) {
        PyErr_SetString(PyExc_ValueError, "Mempool is closed");
        return -1;
    }
    return pyshm_shm_check_open(self->shm, "Mempool");
}

static PyObject *mempool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "elt_size", "flags", "shm", NULL};
    PyObject *count_obj, *elt_obj, *flags_obj = NULL, *shm_obj = Py_None;
    uint64_t count, elt_size, flags = 0, footprint;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OO:Mempool", kwlist, &count_obj, &elt_obj, &flags_obj,
                                     &shm_obj))
        return NULL;
    if (pyshm_uint64_arg(count_obj, "Mempool count", 1, &count) < 0 ||
        pyshm_uint64_arg(elt_obj, "Mempool elt_size", 1, &elt_size) < 0 ||
        (flags_obj && pyshm_uint64_arg(flags_obj, "Mempool flags", 0, &flags) < 0))
        return NULL;
    if (flags & ~(uint64_t)PYSHM_MEMPOOL_FLAGS) {
        PyErr_Format(PyExc_ValueError, "Mempool flags: unknown bits 0x%llx (use MEMPOOL_F_SP_PUT, MEMPOOL_F_SC_GET)",
                     (unsigned long long)(flags & ~(uint64_t)PYSHM_MEMPOOL_FLAGS));
        return NULL;
    }
    if (pyshm_pool_footprint(count, elt_size, &footprint) < 0) {
        PyErr_Format(PyExc_ValueError, "Mempool(count=%llu, elt_size=%llu) is too large",
                     (unsigned long long)count, (unsigned long long)elt_size);
        return NULL;
    }
    pyshm_state *st = pyshm_state_of_type(type);
    ShareMemObject *shm = pyshm_shm_resolve(st, shm_obj);
    if (!shm) {
        if (PyErr_Occurred())
            return NULL;
        /* No region given and no default one: a region of its own, sized to fit. */
        shm = pyshm_shm_create(st, pyshm_region_size_for(footprint));
        if (!shm)
            return NULL;
    }
    if (pyshm_shm_check_open(shm, "Mempool") < 0) {
        Py_DECREF(shm);
        return NULL;
    }
    MempoolObject *self = (MempoolObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(shm);
        return NULL;
    }
    self->state = st;
    self->shm = shm;
    int rc = pyshm_pool_create(&shm->region, count, elt_size, (uint32_t)flags, &self->pool);
    if (rc < 0) {
        char what[96];
        PyOS_snprintf(what, sizeof(what), "Mempool(count=%llu, elt_size=%llu)", (unsigned long long)count,
                      (unsigned long long)elt_size);
        if (rc == -ENOSPC)
            pyshm_shm_raise_no_room(shm, what, footprint);
        else
            pyshm_raise(st, rc, what);
        Py_DECREF(self);
        return NULL;
    }
    self->pool_slot = (size_t)pyshm_region_pool_slot(&shm->region, self->pool.offset);
    return (PyObject *)self;
}

static void mempool_dealloc(MempoolObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->shm);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *mempool_get(MempoolObject *self, PyObject *Py_UNUSED(unused))
{
    if (pool_check_open(self) < 0)
        return NULL;
    uint64_t index, gen;
    int rc = pyshm_pool_get(&self->pool, &index, &gen);
    if (rc < 0) {
        if (rc == -PYSHM_EEMPTY)
            PyErr_Format(self->state->EmptyError, "Mempool is empty: all %llu blocks are in use",
                         (unsigned long long)self->pool.count);
        else
            pyshm_raise(self->state, rc, "Mempool.get");
        return NULL;
    }
    return pyshm_block_view_new(self->state, self->shm, self->pool_slot, index, gen,
                                (Py_ssize_t)self->pool.elt_size);
}

static PyObject *mempool_put(MempoolObject *self, PyObject *view)
{
    if (pool_check_open(self) < 0)
        return NULL;
    BlockObject *block = pyshm_block_from_view(self->state, self->shm, view, "put");
    if (!block)
        return NULL;
    if (block->pool_slot != self->pool_slot) {
        PyErr_SetString(PyExc_ValueError, "put(): this block belongs to another Mempool");
        return NULL;
    }
    int rc = pyshm_pool_put(&self->pool, block->index, &block->gen);
    if (rc < 0) {
        pyshm_raise(self->state, rc, "Mempool.put");
        return NULL;
    }
    if (pyshm_block_release_view(self->state, block) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mempool_cleanup(MempoolObject *self, PyObject *Py_UNUSED(unused))
{
    /* Views already handed out keep their own reference to the region. */
    Py_CLEAR(self->shm);
    Py_RETURN_NONE;
}

static PyObject *mempool_get_free_count(MempoolObject *self, void *Py_UNUSED(closure))
{
    if (pool_check_open(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(pyshm_pool_free_count(&self->pool));
}

static PyObject *mempool_get_used_count(MempoolObject *self, void *Py_UNUSED(closure))
{
    if (pool_check_open(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->pool.count - pyshm_pool_free_count(&self->pool));
}

static PyObject *mempool_get_count(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->pool.count);
}

static PyObject *mempool_get_elt_size(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->pool.elt_size);
}

static PyObject *mempool_get_flags(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(self->pool.flags);
}

static PyObject *mempool_get_closed(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(!self->shm || self->shm->closed);
}

static PyObject *mempool_get_shm(MempoolObject *self, void *Py_UNUSED(closure))
{
    if (!self->shm)
        Py_RETURN_NONE;
    return Py_NewRef(self->shm);
}

static PyObject *mempool_repr(MempoolObject *self)
{
    return PyUnicode_FromFormat("<pyshm.Mempool count=%llu elt_size=%llu%s>", (unsigned long long)self->pool.count,
                                (unsigned long long)self->pool.elt_size, self->shm ? "" : " closed");
}

static PyMethodDef mempool_methods[] = {
    {"get", (PyCFunction)mempool_get, METH_NOARGS,
     "get() -> memoryview: the oldest free block, writable. EmptyError if none is free."},
    {"put", (PyCFunction)mempool_put, METH_O,
     "put(view): give a block back; the view is released. It must be the view get() or dequeue() "
     "returned."},
    {"cleanup", (PyCFunction)mempool_cleanup, METH_NOARGS,
     "Close this process's handle. Views already handed out stay valid until released."},
    {"close", (PyCFunction)mempool_cleanup, METH_NOARGS, "Alias of cleanup()."},
    {"__enter__", pyshm_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pyshm_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mempool_getset[] = {
    {"count", (getter)mempool_get_count, NULL, "Number of blocks.", NULL},
    {"max_count", (getter)mempool_get_count, NULL, "Alias of count.", NULL},
    {"elt_size", (getter)mempool_get_elt_size, NULL, "Bytes in each block.", NULL},
    {"flags", (getter)mempool_get_flags, NULL, "MEMPOOL_F_* flags given at creation.", NULL},
    {"free_count", (getter)mempool_get_free_count, NULL, "Blocks free right now.", NULL},
    {"used_count", (getter)mempool_get_used_count, NULL, "Blocks held or in rings right now.", NULL},
    {"closed", (getter)mempool_get_closed, NULL, "True after cleanup() here or of its ShareMem.", NULL},
    {"shm", (getter)mempool_get_shm, NULL, "The ShareMem the pool lives in (None once closed).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mempool_slots[] = {
    {Py_tp_new, mempool_new},
    {Py_tp_dealloc, mempool_dealloc},
    {Py_tp_repr, mempool_repr},
    {Py_tp_methods, mempool_methods},
    {Py_tp_getset, mempool_getset},
    {Py_tp_doc, "Mempool(count, elt_size, flags=0, shm=None): count blocks of elt_size bytes in shared memory."},
    {0, NULL},
};

static PyType_Spec mempool_spec = {
    .name = "pyshm.Mempool",
    .basicsize = sizeof(MempoolObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = mempool_slots,
};

int pyshm_mempool_module_init(PyObject *module, pyshm_state *st)
{
    st->MempoolType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &mempool_spec, NULL);
    if (!st->MempoolType)
        return -1;
    return PyModule_AddType(module, st->MempoolType);
}
