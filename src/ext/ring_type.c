/* ring_type.c - Ring: passes blocks between processes by offset, no copy. */
#include "pyshm_ext.h"

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    ShareMemObject *shm; /* held until dealloc: a call waiting in another thread may use it */
    int closed;          /* set by cleanup() */
    struct pyshm_block_ring ring;
    PyObject *name; /* str or None */
    uint32_t enqueue_spin_ns; /* adaptive spins before enqueue and dequeue sleep */
    uint32_t dequeue_spin_ns;
} RingObject;

static int ring_check_open(RingObject *self)
{
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "Ring is closed");
        return -1;
    }
    return pyshm_shm_check_open(self->shm, "Ring");
}

/* A handle on a ring created or validated by the caller. Steals the reference to shm. */
static PyObject *ring_wrap(PyTypeObject *type, ShareMemObject *shm, const struct pyshm_block_ring *ring)
{
    RingObject *self = (RingObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(shm);
        return NULL;
    }
    self->state = shm->state;
    self->shm = shm;
    self->ring = *ring;
    self->name = pyshm_object_name(&shm->region, ring->offset);
    if (!self->name) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "flags", "shm", "name", NULL};
    PyObject *count_obj, *flags_obj = NULL, *shm_obj = Py_None, *name_obj = Py_None;
    uint64_t count, flags = 0, footprint;
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO$O:Ring", kwlist, &count_obj, &flags_obj, &shm_obj,
                                     &name_obj))
        return NULL;
    if (pyshm_uint64_arg(count_obj, "Ring count", 1, &count) < 0 ||
        (flags_obj && pyshm_uint64_arg(flags_obj, "Ring flags", 0, &flags) < 0) ||
        pyshm_name_arg(name_obj, &name) < 0)
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
    struct pyshm_block_ring ring;
    int rc = pyshm_block_ring_create(&shm->region, count, (uint32_t)flags, name, &ring);
    if (rc < 0) {
        char what[64];
        PyOS_snprintf(what, sizeof(what), "Ring(count=%llu)", (unsigned long long)count);
        if (rc == -ENOSPC)
            pyshm_shm_raise_no_room(shm, what, footprint);
        else if (rc == -EEXIST)
            PyErr_Format(PyExc_ValueError, "this ShareMem already has an object named %R", name_obj);
        else
            pyshm_raise(st, rc, what);
        Py_DECREF(shm);
        return NULL;
    }
    return ring_wrap(type, shm, &ring);
}

static PyObject *ring_at(PyTypeObject *type, ShareMemObject *shm, uint64_t offset)
{
    struct pyshm_block_ring ring;
    if (pyshm_block_ring_attach(&shm->region, offset, &ring) < 0) {
        PyErr_Format(shm->state->CorruptionError, "no valid Ring at offset %llu of this ShareMem",
                     (unsigned long long)offset);
        return NULL;
    }
    return ring_wrap(type, (ShareMemObject *)Py_NewRef(shm), &ring);
}

static PyObject *ring_attach(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs)
{
    pyshm_state *st = pyshm_state_of_type(type);
    if (nargs != 2 || !Py_IS_TYPE(args[0], st->ShareMemType)) {
        PyErr_SetString(PyExc_TypeError, "Ring.attach(shm, name) takes a ShareMem and a name");
        return NULL;
    }
    uint64_t offset;
    if (pyshm_find_named((ShareMemObject *)args[0], args[1], PYSHM_KIND_RING, &offset) < 0)
        return NULL;
    return ring_at(type, (ShareMemObject *)args[0], offset);
}

static PyObject *ring_from_offset(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs)
{
    pyshm_state *st = pyshm_state_of_type(type);
    uint64_t offset;
    if (nargs != 2 || !Py_IS_TYPE(args[0], st->ShareMemType)) {
        PyErr_SetString(PyExc_TypeError, "Ring._from_offset(shm, offset)");
        return NULL;
    }
    if (pyshm_uint64_arg(args[1], "offset", 0, &offset) < 0 ||
        pyshm_shm_check_open((ShareMemObject *)args[0], "Ring") < 0)
        return NULL;
    return ring_at(type, (ShareMemObject *)args[0], offset);
}

static PyObject *ring_reduce(RingObject *self, PyObject *Py_UNUSED(unused))
{
    if (ring_check_open(self) < 0)
        return NULL;
    PyObject *rebuild = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_from_offset");
    if (!rebuild)
        return NULL;
    return Py_BuildValue("N(OK)", rebuild, self->shm, (unsigned long long)self->ring.offset);
}

static void ring_dealloc(RingObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->shm);
    Py_XDECREF(self->name);
    type->tp_free(self);
    Py_DECREF(type);
}

/* Raise the exception for a failed enqueue or dequeue. */
static void ring_raise(RingObject *self, int rc, const char *what)
{
    if (rc == -PYSHM_EFULL)
        PyErr_Format(self->state->FullError, "Ring is full (%llu entries)",
                     (unsigned long long)self->ring.ring.capacity);
    else if (rc == -PYSHM_EEMPTY)
        PyErr_SetString(self->state->EmptyError, "Ring is empty");
    else
        pyshm_raise(self->state, rc, what);
}

struct enqueue_attempt {
    const struct pyshm_block_ring *ring;
    struct pyshm_held_block *blocks;
    uint64_t n;
};

static int try_enqueue(void *ctx)
{
    struct enqueue_attempt *a = ctx;
    return pyshm_block_ring_enqueue_burst(a->ring, a->blocks, a->n);
}

/* Hand blocks[0..n) to the ring, waiting for room as opts allow; release their views. */
static PyObject *enqueue_blocks(RingObject *self, BlockObject **blocks, Py_ssize_t n,
                                const struct pyshm_wait_options *opts, const char *what)
{
    struct pyshm_held_block one, *held = n == 1 ? &one : PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*held));
    /* While the call sleeps without the GIL, another thread could release a view or drop
     * the last reference to it: hold an export of each view until the wait is over. */
    Py_buffer pinned_one, *pinned = NULL;
    Py_ssize_t pinned_count = 0;
    PyObject *result = NULL;
    if (!held)
        return PyErr_NoMemory();
    if (opts->block) {
        pinned = n == 1 ? &pinned_one : PyMem_Malloc((size_t)n * sizeof(*pinned));
        if (!pinned) {
            PyErr_NoMemory();
            goto done;
        }
        for (; pinned_count < n; pinned_count++)
            if (PyObject_GetBuffer(blocks[pinned_count]->view, &pinned[pinned_count], PyBUF_SIMPLE) < 0)
                goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        held[i] = (struct pyshm_held_block){self->shm->region.pools[blocks[i]->pool_slot], blocks[i]->index,
                                            blocks[i]->gen};
    struct enqueue_attempt a = {&self->ring, held, (uint64_t)n};
    int rc = n ? pyshm_wait_until(self->shm, &self->ring.ring.counters->not_full, &self->enqueue_spin_ns,
                                  -PYSHM_EFULL, try_enqueue, &a, opts)
               : 0;
    for (Py_ssize_t i = 0; i < n; i++)
        blocks[i]->gen = held[i].gen;
    for (; pinned_count > 0; pinned_count--)
        PyBuffer_Release(&pinned[pinned_count - 1]);
    if (rc < 0)
        ring_raise(self, rc, what);
    else if (pyshm_block_release_views(self->state, blocks, n) == 0)
        result = Py_NewRef(Py_None);
done:
    for (; pinned_count > 0; pinned_count--)
        PyBuffer_Release(&pinned[pinned_count - 1]);
    if (pinned && pinned != &pinned_one)
        PyMem_Free(pinned);
    if (held != &one)
        PyMem_Free(held);
    return result;
}

static PyObject *ring_enqueue(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"buf", "block", "timeout", NULL};
    struct pyshm_wait_options opts = {0, UINT64_MAX};
    PyObject *view = NULL;
    int fast = pyshm_parse_wait_fast(self->state, args, nargs, kwnames, 1, &view, &opts);
    if (fast < 0)
        return NULL;
    if (fast == 0 || !view) {
        PyObject *block = NULL, *timeout = NULL;
        if (pyshm_parse_call(args, nargs, kwnames, "O|$OO:enqueue", kwlist, &view, &block, &timeout) < 0 ||
            pyshm_wait_options(block, timeout, &opts) < 0)
            return NULL;
    }
    if (ring_check_open(self) < 0)
        return NULL;
    BlockObject *block = pyshm_block_from_view(self->state, self->shm, view, "enqueue");
    if (!block)
        return NULL;
    return enqueue_blocks(self, &block, 1, &opts, "Ring.enqueue");
}

static PyObject *ring_enqueue_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"views", "block", "timeout", NULL};
    struct pyshm_wait_options opts;
    PyObject *views = NULL, *block = NULL, *timeout = NULL;
    int fast = pyshm_parse_wait_fast(self->state, args, nargs, kwnames, 1, &views, &opts);
    if (fast < 0)
        return NULL;
    if ((fast == 0 || !views) &&
        (pyshm_parse_call(args, nargs, kwnames, "O|$OO:enqueue_many", kwlist, &views, &block, &timeout) < 0 ||
         pyshm_wait_options(block, timeout, &opts) < 0))
        return NULL;
    if (ring_check_open(self) < 0)
        return NULL;
    PyObject *seq = pyshm_views_tuple(views, "enqueue_many");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = NULL;
    BlockObject **blocks = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*blocks));
    if (!blocks)
        PyErr_NoMemory();
    else if ((uint64_t)n > self->ring.ring.capacity)
        PyErr_Format(PyExc_ValueError, "enqueue_many(): %zd blocks can never fit a Ring of %llu entries", n,
                     (unsigned long long)self->ring.ring.capacity);
    else if (pyshm_blocks_from_views(self->state, self->shm, seq, "enqueue_many", blocks) == 0)
        result = enqueue_blocks(self, blocks, n, &opts, "Ring.enqueue_many");
    PyMem_Free(blocks);
    Py_DECREF(seq);
    return result;
}

struct dequeue_attempt {
    const struct pyshm_block_ring *ring;
    struct pyshm_region *region;
    uint64_t min_size;
    struct pyshm_taken_block *taken;
    uint64_t max; /* 0: one block through the single-block path */
};

static int try_dequeue(void *ctx)
{
    struct dequeue_attempt *a = ctx;
    if (a->max == 0)
        return pyshm_block_ring_dequeue(a->ring, a->region, a->min_size, a->taken);
    return (int)pyshm_block_ring_dequeue_burst(a->ring, a->region, a->taken, a->max);
}

static int dequeue_waiting(RingObject *self, struct dequeue_attempt *a, const struct pyshm_wait_options *opts,
                           const char *what)
{
    int rc = pyshm_wait_until(self->shm, &self->ring.ring.counters->not_empty, &self->dequeue_spin_ns, -PYSHM_EEMPTY, try_dequeue, a,
                              opts);
    if (rc == -PYSHM_ETOOBIG)
        PyErr_Format(PyExc_ValueError, "dequeue(size=%llu): the next block has fewer bytes",
                     (unsigned long long)a->min_size);
    else if (rc < 0)
        ring_raise(self, rc, what);
    return rc;
}

static PyObject *ring_dequeue(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"size", "block", "timeout", NULL};
    struct pyshm_wait_options opts = {0, UINT64_MAX};
    PyObject *size_obj = NULL;
    int fast = pyshm_parse_wait_fast(self->state, args, nargs, kwnames, 1, &size_obj, &opts);
    if (fast < 0)
        return NULL;
    if (fast == 0) {
        PyObject *block = NULL, *timeout = NULL;
        if (pyshm_parse_call(args, nargs, kwnames, "|O$OO:dequeue", kwlist, &size_obj, &block, &timeout) < 0 ||
            pyshm_wait_options(block, timeout, &opts) < 0)
            return NULL;
    }
    if (ring_check_open(self) < 0)
        return NULL;
    uint64_t size = 0;
    if (size_obj && size_obj != Py_None && pyshm_uint64_arg(size_obj, "dequeue size", 1, &size) < 0)
        return NULL;
    struct pyshm_taken_block taken;
    struct dequeue_attempt a = {&self->ring, &self->shm->region, size, &taken, 0};
    if (dequeue_waiting(self, &a, &opts, "Ring.dequeue") < 0)
        return NULL;
    Py_ssize_t length = (Py_ssize_t)(size ? size : taken.pool->elt_size);
    return pyshm_block_view_new(self->state, self->shm, taken.pool->slot, taken.index, taken.gen, length);
}

static PyObject *ring_dequeue_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"n", "block", "timeout", NULL};
    Py_ssize_t n;
    struct pyshm_wait_options opts;
    if (pyshm_parse_counted(self->state, args, nargs, kwnames, "n|$OO:dequeue_many", kwlist, &n, &opts) < 0 ||
        ring_check_open(self) < 0)
        return NULL;
    if (n < 1) {
        PyErr_Format(PyExc_ValueError, "dequeue_many(n): n must be >= 1, got %zd", n);
        return NULL;
    }
    if ((uint64_t)n > self->ring.ring.capacity)
        n = (Py_ssize_t)self->ring.ring.capacity;
    if (n > INT_MAX / 2)
        n = INT_MAX / 2; /* counts travel as int */
    struct pyshm_taken_block *taken = PyMem_Malloc((size_t)n * sizeof(*taken));
    if (!taken)
        return PyErr_NoMemory();
    struct dequeue_attempt a = {&self->ring, &self->shm->region, 0, taken, (uint64_t)n};
    int got = dequeue_waiting(self, &a, &opts, "Ring.dequeue_many");
    PyObject *list = got < 0 ? NULL : pyshm_block_view_list(self->state, self->shm, taken, got);
    PyMem_Free(taken);
    return list;
}

static PyObject *ring_shutdown(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"immediate", NULL};
    int immediate = 0;
    if (pyshm_parse_call(args, nargs, kwnames, "|p:shutdown", kwlist, &immediate) < 0 || ring_check_open(self) < 0)
        return NULL;
    pyshm_block_ring_shutdown(&self->ring, immediate);
    if (immediate && pyshm_block_ring_drain(&self->ring, &self->shm->region) < 0) {
        pyshm_raise(self->state, -PYSHM_ECORRUPT, "Ring.shutdown");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *ring_cleanup(RingObject *self, PyObject *Py_UNUSED(unused))
{
    self->closed = 1;
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
    return PyBool_FromLong(self->closed || self->shm->closed);
}

static PyObject *ring_get_shm(RingObject *self, void *Py_UNUSED(closure))
{
    if (self->closed)
        Py_RETURN_NONE;
    return Py_NewRef(self->shm);
}

static PyObject *ring_get_name(RingObject *self, void *Py_UNUSED(closure)) { return Py_NewRef(self->name); }

static PyObject *ring_get_is_shutdown(RingObject *self, void *Py_UNUSED(closure))
{
    if (ring_check_open(self) < 0)
        return NULL;
    return PyBool_FromLong(pyshm_block_ring_shutdown_state(&self->ring) != PYSHM_RING_OPEN);
}

static PyObject *ring_repr(RingObject *self)
{
    return PyUnicode_FromFormat("<pyshm.Ring count=%llu%s>", (unsigned long long)self->ring.ring.capacity,
                                self->closed ? " closed" : "");
}

static PyMethodDef ring_methods[] = {
    {"enqueue", (PyCFunction)(void (*)(void))ring_enqueue, METH_FASTCALL | METH_KEYWORDS,
     "enqueue(buf, *, block=False, timeout=None): hand a block to the ring; the view is released.\n"
     "FullError if the ring is full (after waiting, if block is true); ShutDown after shutdown()."},
    {"enqueue_many", (PyCFunction)(void (*)(void))ring_enqueue_many, METH_FASTCALL | METH_KEYWORDS,
     "enqueue_many(views, *, block=False, timeout=None): hand over all blocks, in order, or none."},
    {"dequeue", (PyCFunction)(void (*)(void))ring_dequeue, METH_FASTCALL | METH_KEYWORDS,
     "dequeue(size=None, *, block=False, timeout=None) -> memoryview: the oldest block, now yours.\n"
     "EmptyError if the ring is empty; ShutDown once it is shut down and drained."},
    {"dequeue_many", (PyCFunction)(void (*)(void))ring_dequeue_many, METH_FASTCALL | METH_KEYWORDS,
     "dequeue_many(n, *, block=False, timeout=None) -> list: 1 to n of the oldest blocks."},
    {"shutdown", (PyCFunction)(void (*)(void))ring_shutdown, METH_FASTCALL | METH_KEYWORDS,
     "shutdown(immediate=False): refuse new blocks, wake every waiter in every process; with\n"
     "immediate=True also return the blocks still queued to their pools."},
    {"attach", (PyCFunction)(void (*)(void))ring_attach, METH_FASTCALL | METH_CLASS,
     "attach(shm, name): the Ring created with this name in shm."},
    {"_from_offset", (PyCFunction)(void (*)(void))ring_from_offset, METH_FASTCALL | METH_CLASS,
     "The Ring at a region offset (used when unpickling)."},
    {"__reduce__", (PyCFunction)ring_reduce, METH_NOARGS, NULL},
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
    {"name", (getter)ring_get_name, NULL, "The ring's name in its ShareMem, or None.", NULL},
    {"is_shutdown", (getter)ring_get_is_shutdown, NULL, "True once shutdown() was called in any process.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ring_slots[] = {
    {Py_tp_new, ring_new},
    {Py_tp_dealloc, ring_dealloc},
    {Py_tp_repr, ring_repr},
    {Py_tp_methods, ring_methods},
    {Py_tp_getset, ring_getset},
    {Py_sq_length, ring_length},
    {Py_tp_doc, "Ring(count, flags=0, shm=None, *, name=None): a lock-free FIFO of blocks between processes."},
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
