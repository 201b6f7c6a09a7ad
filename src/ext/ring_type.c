/* ring_type.c - Ring: passes blocks between processes by offset, no copy. */
#include "pyshm_ext.h"

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    ShareMemObject *shm; /* NULL once this handle is cleaned up */
    struct pyshm_block_ring ring;
} RingObject;

static int ring_check_open(RingObject *self)
{
    if (!self->shm) {
        PyErr_SetString(PyExc_ValueError, "Ring is closed");
        return -1;
    }
    return pyshm_shm_check_open(self->shm, "Ring");
}

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "flags", "shm", NULL};
    PyObject *count_obj, *flags_obj = NULL, *shm_obj = Py_None;
    uint64_t count, flags = 0, footprint;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:Ring", kwlist, &count_obj, &flags_obj, &shm_obj))
        return NULL;
    if (pyshm_uint64_arg(count_obj, "Ring count", 1, &count) < 0 ||
        (flags_obj && pyshm_uint64_arg(flags_obj, "Ring flags", 0, &flags) < 0))
        return NULL;
    if (flags & ~(uint64_t)PYSHM_RING_FLAGS) {
        PyErr_Format(PyExc_ValueError, "Ring flags: unknown bits 0x%llx (use RING_F_SP_ENQ, RING_F_SC_DEQ)",
                     (unsigned long long)(flags & ~(uint64_t)PYSHM_RING_FLAGS));
        return NULL;
    }
    if (pyshm_block_ring_footprint(count, &footprint) < 0) {
        PyErr_Format(PyExc_ValueError, "Ring(count=%llu) is too large", (unsigned long long)count);
        return NULL;
    }
    pyshm_state *st = pyshm_state_of_type(type);
    ShareMemObject *shm = pyshm_shm_resolve(st, shm_obj);
    if (!shm) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "Ring needs the ShareMem its blocks' pools live in: pass shm=..., or call "
                            "init_shm(size) first to set a default one");
        return NULL;
    }
    if (pyshm_shm_check_open(shm, "Ring") < 0) {
        Py_DECREF(shm);
        return NULL;
    }
    RingObject *self = (RingObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(shm);
        return NULL;
    }
    self->state = st;
    self->shm = shm;
    int rc = pyshm_block_ring_create(&shm->region, count, (uint32_t)flags, &self->ring);
    if (rc < 0) {
        char what[64];
        PyOS_snprintf(what, sizeof(what), "Ring(count=%llu)", (unsigned long long)count);
        if (rc == -ENOSPC)
            pyshm_shm_raise_no_room(shm, what, footprint);
        else
            pyshm_raise(st, rc, what);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void ring_dealloc(RingObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->shm);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *ring_enqueue(RingObject *self, PyObject *view)
{
    if (ring_check_open(self) < 0)
        return NULL;
    BlockObject *block = pyshm_block_from_view(self->state, self->shm, view, "enqueue");
    if (!block)
        return NULL;
    const struct pyshm_pool *pool = &self->shm->region.pools[block->pool_slot];
    int rc = pyshm_block_ring_enqueue(&self->ring, pool, block->index, &block->gen);
    if (rc < 0) {
        if (rc == -PYSHM_EFULL)
            PyErr_Format(self->state->FullError, "Ring is full (%llu entries)",
                         (unsigned long long)self->ring.ring.capacity);
        else
            pyshm_raise(self->state, rc, "Ring.enqueue");
        return NULL;
    }
    if (pyshm_block_release_view(self->state, block) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ring_dequeue(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    /* Hand-parsed: this is the hot path, and its one argument is optional. */
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "size") != 0)) {
        PyErr_SetString(PyExc_TypeError, "dequeue() takes one optional argument: size");
        return NULL;
    }
    PyObject *size_obj = nargs + nkw ? args[0] : NULL;
    if (ring_check_open(self) < 0)
        return NULL;
    uint64_t size = 0;
    if (size_obj && size_obj != Py_None && pyshm_uint64_arg(size_obj, "dequeue size", 1, &size) < 0)
        return NULL;
    struct pyshm_taken_block taken;
    int rc = pyshm_block_ring_dequeue(&self->ring, &self->shm->region, size, &taken);
    if (rc < 0) {
        if (rc == -PYSHM_EEMPTY)
            PyErr_SetString(self->state->EmptyError, "Ring is empty");
        else if (rc == -PYSHM_ETOOBIG)
            PyErr_Format(PyExc_ValueError, "dequeue(size=%llu): the next block has fewer bytes",
                         (unsigned long long)size);
        else
            pyshm_raise(self->state, rc, "Ring.dequeue");
        return NULL;
    }
    size_t slot = (size_t)(taken.pool - self->shm->region.pools);
    Py_ssize_t length = (Py_ssize_t)(size ? size : taken.pool->elt_size);
    return pyshm_block_view_new(self->state, self->shm, slot, taken.index, taken.gen, length);
}

static PyObject *ring_cleanup(RingObject *self, PyObject *Py_UNUSED(unused))
{
    Py_CLEAR(self->shm);
    Py_RETURN_NONE;
}

static Py_ssize_t ring_length(RingObject *self)
{
    if (ring_check_open(self) < 0)
        return -1;
    return (Py_ssize_t)pyshm_block_ring_count(&self->ring);
}

static PyObject *ring_get_used_count(RingObject *self, void *Py_UNUSED(closure))
{
    Py_ssize_t n = ring_length(self);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *ring_get_free_count(RingObject *self, void *Py_UNUSED(closure))
{
    Py_ssize_t n = ring_length(self);
    return n < 0 ? NULL : PyLong_FromUnsignedLongLong(self->ring.ring.capacity - (uint64_t)n);
}

static PyObject *ring_get_count(RingObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->ring.ring.capacity);
}

static PyObject *ring_get_flags(RingObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(self->ring.flags);
}

static PyObject *ring_get_closed(RingObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(!self->shm || self->shm->closed);
}

static PyObject *ring_get_shm(RingObject *self, void *Py_UNUSED(closure))
{
    if (!self->shm)
        Py_RETURN_NONE;
    return Py_NewRef(self->shm);
}

static PyObject *ring_repr(RingObject *self)
{
    return PyUnicode_FromFormat("<pyshm.Ring count=%llu%s>", (unsigned long long)self->ring.ring.capacity,
                                self->shm ? "" : " closed");
}

static PyMethodDef ring_methods[] = {
    {"enqueue", (PyCFunction)ring_enqueue, METH_O,
     "enqueue(view): hand a block to the ring; the view is released. FullError if the ring is full."},
    {"dequeue", (PyCFunction)(void (*)(void))ring_dequeue, METH_FASTCALL | METH_KEYWORDS,
     "dequeue(size=None) -> memoryview: the oldest block, now yours. EmptyError if the ring is empty."},
    {"cleanup", (PyCFunction)ring_cleanup, METH_NOARGS, "Close this process's handle."},
    {"close", (PyCFunction)ring_cleanup, METH_NOARGS, "Alias of cleanup()."},
    {"__enter__", pyshm_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pyshm_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ring_getset[] = {
    {"count", (getter)ring_get_count, NULL, "Entries the ring holds when full.", NULL},
    {"flags", (getter)ring_get_flags, NULL, "RING_F_* flags given at creation.", NULL},
    {"used_count", (getter)ring_get_used_count, NULL, "Entries in the ring right now.", NULL},
    {"free_count", (getter)ring_get_free_count, NULL, "Room left right now.", NULL},
    {"closed", (getter)ring_get_closed, NULL, "True after cleanup() here or of its ShareMem.", NULL},
    {"shm", (getter)ring_get_shm, NULL, "The ShareMem the ring lives in (None once closed).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ring_slots[] = {
    {Py_tp_new, ring_new},
    {Py_tp_dealloc, ring_dealloc},
    {Py_tp_repr, ring_repr},
    {Py_tp_methods, ring_methods},
    {Py_tp_getset, ring_getset},
    {Py_sq_length, ring_length},
    {Py_tp_doc, "Ring(count, flags=0, shm=None): a lock-free FIFO of blocks between processes."},
    {0, NULL},
};

static PyType_Spec ring_spec = {
    .name = "pyshm.Ring",
    .basicsize = sizeof(RingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ring_slots,
};

int pyshm_ring_module_init(PyObject *module, pyshm_state *st)
{
    st->RingType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ring_spec, NULL);
    if (!st->RingType)
        return -1;
    return PyModule_AddType(module, st->RingType);
}
