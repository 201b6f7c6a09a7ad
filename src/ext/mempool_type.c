/* mempool_type.c - Mempool: fixed-size blocks of a region, handed out as memoryviews. */
#include "pyshm_ext.h"

#include <time.h>

#include "repair.h"

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    ShareMemObject *shm; /* held until dealloc: a call waiting in another thread may use it */
    int closed;          /* set by cleanup() */
    struct pyshm_pool pool;
    size_t pool_slot;
    PyObject *name; /* str or None */
    uint32_t get_spin_ns; /* adaptive spin before a get() sleeps */
} MempoolObject;

static int pool_check_open(MempoolObject *self)
{
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "Mempool is closed");
        return -1;
    }
    return pyshm_shm_check_open(self->shm, "Mempool");
}

/* A handle on the pool at `offset` of shm (created or validated by the caller). Steals
 * the reference to shm. */
static PyObject *mempool_wrap(PyTypeObject *type, pyshm_state *st, ShareMemObject *shm,
                              const struct pyshm_pool *pool)
{
    MempoolObject *self = (MempoolObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(shm);
        return NULL;
    }
    self->state = st;
    self->shm = shm;
    self->pool = *pool;
    int rc = pyshm_region_add_pool(&shm->region, pool);
    if (rc < 0) {
        pyshm_raise(st, rc, "Mempool");
        Py_DECREF(self);
        return NULL;
    }
    self->pool_slot = (size_t)pyshm_region_pool_slot(&shm->region, pool->offset);
    self->pool.slot = self->pool_slot;
    self->name = pyshm_object_name(&shm->region, pool->offset);
    if (!self->name) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *mempool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "elt_size", "flags", "shm", "name", NULL};
    PyObject *count_obj, *elt_obj, *flags_obj = NULL, *shm_obj = Py_None, *name_obj = Py_None;
    uint64_t count, elt_size, flags = 0, footprint;
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OO$O:Mempool", kwlist, &count_obj, &elt_obj, &flags_obj,
                                     &shm_obj, &name_obj))
        return NULL;
    if (pyshm_uint64_arg(count_obj, "Mempool count", 1, &count) < 0 ||
        pyshm_uint64_arg(elt_obj, "Mempool elt_size", 1, &elt_size) < 0 ||
        (flags_obj && pyshm_uint64_arg(flags_obj, "Mempool flags", 0, &flags) < 0) ||
        pyshm_name_arg(name_obj, &name) < 0)
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
    struct pyshm_pool pool;
    int rc = pyshm_pool_create(&shm->region, count, elt_size, (uint32_t)flags, name, &pool);
    if (rc < 0) {
        char what[96];
        PyOS_snprintf(what, sizeof(what), "Mempool(count=%llu, elt_size=%llu)", (unsigned long long)count,
                      (unsigned long long)elt_size);
        if (rc == -ENOSPC)
            pyshm_shm_raise_no_room(shm, what, footprint);
        else if (rc == -EEXIST)
            PyErr_Format(PyExc_ValueError, "this ShareMem already has an object named %R", name_obj);
        else
            pyshm_raise(st, rc, what);
        Py_DECREF(shm);
        return NULL;
    }
    return mempool_wrap(type, st, shm, &pool);
}

/* A handle on the pool at a region offset, validated. */
static PyObject *mempool_at(PyTypeObject *type, ShareMemObject *shm, uint64_t offset)
{
    /* A pool this process already validated keeps the geometry it had then: the header
     * in shared memory may have been rewritten since. */
    long known = pyshm_region_pool_slot(&shm->region, offset);
    if (known >= 0)
        return mempool_wrap(type, shm->state, (ShareMemObject *)Py_NewRef(shm), shm->region.pools[known]);
    struct pyshm_pool pool;
    if (pyshm_pool_attach(&shm->region, offset, &pool) < 0) {
        PyErr_Format(shm->state->CorruptionError, "no valid Mempool at offset %llu of this ShareMem",
                     (unsigned long long)offset);
        return NULL;
    }
    return mempool_wrap(type, shm->state, (ShareMemObject *)Py_NewRef(shm), &pool);
}

static PyObject *mempool_attach(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs)
{
    pyshm_state *st = pyshm_state_of_type(type);
    if (nargs != 2 || !Py_IS_TYPE(args[0], st->ShareMemType)) {
        PyErr_SetString(PyExc_TypeError, "Mempool.attach(shm, name) takes a ShareMem and a name");
        return NULL;
    }
    uint64_t offset;
    if (pyshm_find_named((ShareMemObject *)args[0], args[1], PYSHM_KIND_POOL, &offset) < 0)
        return NULL;
    return mempool_at(type, (ShareMemObject *)args[0], offset);
}

static PyObject *mempool_from_offset(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs)
{
    pyshm_state *st = pyshm_state_of_type(type);
    uint64_t offset;
    if (nargs != 2 || !Py_IS_TYPE(args[0], st->ShareMemType)) {
        PyErr_SetString(PyExc_TypeError, "Mempool._from_offset(shm, offset)");
        return NULL;
    }
    if (pyshm_uint64_arg(args[1], "offset", 0, &offset) < 0 ||
        pyshm_shm_check_open((ShareMemObject *)args[0], "Mempool") < 0)
        return NULL;
    return mempool_at(type, (ShareMemObject *)args[0], offset);
}

static PyObject *mempool_reduce(MempoolObject *self, PyObject *Py_UNUSED(unused))
{
    if (pool_check_open(self) < 0)
        return NULL;
    PyObject *rebuild = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_from_offset");
    if (!rebuild)
        return NULL;
    return Py_BuildValue("N(OK)", rebuild, self->shm, (unsigned long long)self->pool.offset);
}

static void mempool_dealloc(MempoolObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->shm);
    Py_XDECREF(self->name);
    type->tp_free(self);
    Py_DECREF(type);
}

struct get_attempt {
    const struct pyshm_pool *pool;
    uint64_t *indices;
    uint64_t *gens;
    uint64_t max; /* 0: one block through the single-block path */
};

static int try_get(void *ctx)
{
    struct get_attempt *a = ctx;
    if (a->max == 0)
        return pyshm_pool_get(a->pool, a->indices, a->gens);
    return (int)pyshm_pool_get_burst(a->pool, a->indices, a->gens, a->max);
}

static int get_waiting(MempoolObject *self, struct get_attempt *a, const struct pyshm_wait_options *opts)
{
    int rc = pyshm_wait_until(self->shm, &self->pool.free_queue.counters->not_empty, &self->get_spin_ns, -PYSHM_EEMPTY, try_get, a,
                              opts);
    if (rc == -PYSHM_EEMPTY)
        PyErr_Format(self->state->EmptyError, "Mempool is empty: all %llu blocks are in use",
                     (unsigned long long)self->pool.count);
    else if (rc < 0)
        pyshm_raise(self->state, rc, "Mempool.get");
    return rc;
}

static PyObject *mempool_get(MempoolObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    struct pyshm_wait_options opts = {0, UINT64_MAX};
    if (nargs || kwnames) {
        int fast = pyshm_parse_wait_fast(self->state, args, nargs, kwnames, 0, NULL, &opts);
        PyObject *block = NULL, *timeout = NULL;
        if (fast < 0 || (fast == 0 && (pyshm_parse_call(args, nargs, kwnames, "|$OO:get", kwlist, &block, &timeout) < 0 ||
                                       pyshm_wait_options(block, timeout, &opts) < 0)))
            return NULL;
    }
    if (pool_check_open(self) < 0)
        return NULL;
    uint64_t index, gen;
    struct get_attempt a = {&self->pool, &index, &gen, 0};
    if (get_waiting(self, &a, &opts) < 0)
        return NULL;
    return pyshm_block_view_new(self->state, self->shm, self->pool_slot, index, gen,
                                (Py_ssize_t)self->pool.elt_size);
}

static PyObject *mempool_get_many(MempoolObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static char *kwlist[] = {"n", "block", "timeout", NULL};
    Py_ssize_t n;
    struct pyshm_wait_options opts;
    if (pyshm_parse_counted(self->state, args, nargs, kwnames, "n|$OO:get_many", kwlist, &n, &opts) < 0 ||
        pool_check_open(self) < 0)
        return NULL;
    if (n < 1) {
        PyErr_Format(PyExc_ValueError, "get_many(n): n must be >= 1, got %zd", n);
        return NULL;
    }
    if ((uint64_t)n > self->pool.count)
        n = (Py_ssize_t)self->pool.count;
    if (n > INT_MAX / 2)
        n = INT_MAX / 2; /* counts travel as int */
    uint64_t *indices = PyMem_Malloc((size_t)n * 2 * sizeof(uint64_t));
    struct pyshm_taken_block *taken = PyMem_Malloc((size_t)n * sizeof(*taken));
    PyObject *list = NULL;
    if (!indices || !taken) {
        PyErr_NoMemory();
        goto done;
    }
    struct get_attempt a = {&self->pool, indices, indices + n, (uint64_t)n};
    int got = get_waiting(self, &a, &opts);
    if (got < 0)
        goto done;
    const struct pyshm_pool *pool = self->shm->region.pools[self->pool_slot];
    for (int i = 0; i < got; i++)
        taken[i] = (struct pyshm_taken_block){pool, indices[i], indices[n + i]};
    list = pyshm_block_view_list(self->state, self->shm, taken, got);
done:
    PyMem_Free(indices);
    PyMem_Free(taken);
    return list;
}

/* Put blocks back. A free queue that stays blocked past the core's patience (-EAGAIN)
 * may have a slot claimed by a process that died: repair if so, and try once more. */
static int put_repairing(MempoolObject *self, const uint64_t *indices, uint64_t *gens, uint64_t n)
{
    int rc = pyshm_pool_put_burst(&self->pool, indices, gens, n);
    if (rc == -EAGAIN) {
        struct pyshm_repair_report report;
        if (pyshm_region_repair(&self->shm->region, 1, &report) == 0 && report.entries > 0)
            rc = pyshm_pool_put_burst(&self->pool, indices, gens, n);
    }
    return rc;
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
    int rc = put_repairing(self, &block->index, &block->gen, 1);
    if (rc < 0) {
        pyshm_raise(self->state, rc, "Mempool.put");
        return NULL;
    }
    if (pyshm_block_release_view(self->state, block) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mempool_put_many(MempoolObject *self, PyObject *views)
{
    if (pool_check_open(self) < 0)
        return NULL;
    PyObject *seq = pyshm_views_tuple(views, "put_many");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    BlockObject **blocks = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*blocks));
    uint64_t *indices = PyMem_Malloc((size_t)(n ? n : 1) * 2 * sizeof(uint64_t));
    PyObject *result = NULL;
    if (!blocks || !indices) {
        PyErr_NoMemory();
        goto done;
    }
    if (pyshm_blocks_from_views(self->state, self->shm, seq, "put_many", blocks) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (blocks[i]->pool_slot != self->pool_slot) {
            PyErr_Format(PyExc_ValueError, "put_many(): item %zd belongs to another Mempool", i);
            goto done;
        }
        indices[i] = blocks[i]->index;
        indices[n + i] = blocks[i]->gen;
    }
    int rc = n ? put_repairing(self, indices, indices + n, (uint64_t)n) : 0;
    for (Py_ssize_t i = 0; i < n; i++)
        blocks[i]->gen = indices[n + i];
    if (rc < 0) {
        pyshm_raise(self->state, rc, "Mempool.put_many");
        goto done;
    }
    if (pyshm_block_release_views(self->state, blocks, n) == 0)
        result = Py_NewRef(Py_None);
done:
    PyMem_Free(blocks);
    PyMem_Free(indices);
    Py_DECREF(seq);
    return result;
}

static PyObject *mempool_reclaim(MempoolObject *self, PyObject *Py_UNUSED(unused))
{
    if (pool_check_open(self) < 0)
        return NULL;
    /* With the GIL held: the repair reads and extends the region handle's pool table,
     * which other threads of this process use. It waits (without the GIL) only while
     * another live process is repairing the same region, for up to a second. */
    struct pyshm_repair_report report;
    int rc = -EBUSY;
    for (int attempt = 0; attempt < 1000 && rc == -EBUSY; attempt++) {
        if (attempt > 0) {
            Py_BEGIN_ALLOW_THREADS
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            Py_END_ALLOW_THREADS
        }
        rc = pyshm_region_repair(&self->shm->region, 0, &report);
    }
    if (rc == -EBUSY)
        return PyLong_FromLong(0); /* another process is repairing right now */
    if (rc < 0) {
        pyshm_raise(self->state, rc, "Mempool.reclaim");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(report.returned);
}

static PyObject *mempool_cleanup(MempoolObject *self, PyObject *Py_UNUSED(unused))
{
    /* Views already handed out keep their own reference to the region. */
    self->closed = 1;
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
    return PyBool_FromLong(self->closed || self->shm->closed);
}

static PyObject *mempool_get_shm(MempoolObject *self, void *Py_UNUSED(closure))
{
    if (self->closed)
        Py_RETURN_NONE;
    return Py_NewRef(self->shm);
}

static PyObject *mempool_get_name(MempoolObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->name);
}

static PyObject *mempool_repr(MempoolObject *self)
{
    return PyUnicode_FromFormat("<pyshm.Mempool count=%llu elt_size=%llu%s>", (unsigned long long)self->pool.count,
                                (unsigned long long)self->pool.elt_size, self->closed ? " closed" : "");
}

static PyMethodDef mempool_methods[] = {
    {"get", (PyCFunction)(void (*)(void))mempool_get, METH_FASTCALL | METH_KEYWORDS,
     "get(*, block=False, timeout=None) -> memoryview: the oldest free block, writable.\n"
     "EmptyError if none is free (after waiting, if block is true)."},
    {"get_many", (PyCFunction)(void (*)(void))mempool_get_many, METH_FASTCALL | METH_KEYWORDS,
     "get_many(n, *, block=False, timeout=None) -> list: 1 to n free blocks."},
    {"reclaim", (PyCFunction)mempool_reclaim, METH_NOARGS,
     "reclaim() -> int: repair what processes that no longer exist left half done in this\n"
     "region's queues, and return to their pools the blocks those processes held or were\n"
     "queueing; blocks waiting in rings are left alone. Returns how many came back."},
    {"put_many", (PyCFunction)mempool_put_many, METH_O,
     "put_many(views): give blocks back, all or none; their views are released."},
    {"attach", (PyCFunction)(void (*)(void))mempool_attach, METH_FASTCALL | METH_CLASS,
     "attach(shm, name): the Mempool created with this name in shm."},
    {"_from_offset", (PyCFunction)(void (*)(void))mempool_from_offset, METH_FASTCALL | METH_CLASS,
     "The Mempool at a region offset (used when unpickling)."},
    {"__reduce__", (PyCFunction)mempool_reduce, METH_NOARGS, NULL},
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
    {"name", (getter)mempool_get_name, NULL, "The pool's name in its ShareMem, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mempool_slots[] = {
    {Py_tp_new, mempool_new},
    {Py_tp_dealloc, mempool_dealloc},
    {Py_tp_repr, mempool_repr},
    {Py_tp_methods, mempool_methods},
    {Py_tp_getset, mempool_getset},
    {Py_tp_doc, "Mempool(count, elt_size, flags=0, shm=None, *, name=None): count blocks of elt_size bytes in\n"
                "shared memory."},
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
