/* mempool_type.c - Mempool: fixed-size blocks of a region, handed out as memoryviews. */
#include "pyshm_ext.h"

#include <time.h>

#include "repair.h"

/* How long a put waits for a get that holds a slot of the free queue it needs. */


static int mempool_open_at(CarvedObject *base)
{
    MempoolObject *self = (MempoolObject *)base;
    struct pyshm_space *space = &base->shm->space;
    int rc = pyshm_pool_table_add(&space->pools, &space->region, base->offset, &self->pool);
    if (rc == -PYSHM_ECORRUPT)
        PyErr_Format(base->state->CorruptionError, "no valid Mempool at offset %llu of this ShareMem",
                     (unsigned long long)base->offset);
    else if (rc < 0)
        pyshm_raise(base->state, rc, "Mempool");
    return rc < 0 ? -1 : 0;
}

static void mempool_wake(CarvedObject *base)
{
    pyshm_wait_wake_all(&((MempoolObject *)base)->pool->free_queue.shared->not_empty);
}

static struct pyshm_waitpoint *mempool_waitpoint(CarvedObject *base, int side)
{
    return side == 0 ? &((MempoolObject *)base)->pool->free_queue.shared->not_empty : NULL;
}

const struct pyshm_carved_kind pyshm_mempool_kind = {"Mempool", PYSHM_KIND_POOL, mempool_open_at, mempool_wake,
                                                     mempool_waitpoint};

static PyObject *mempool_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "elt_size", "flags", "shm", "name", NULL};
    PyObject *count_obj, *elt_obj, *flags_obj = NULL, *shm_obj = Py_None, *name_obj = Py_None;
    uint64_t count, elt_size, footprint, offset;
    uint32_t flags = 0;
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OO$O:Mempool", kwlist, &count_obj, &elt_obj, &flags_obj,
                                     &shm_obj, &name_obj) ||
        pyshm_arg_u64(count_obj, "Mempool count", 1, PYSHM_MAX_COUNT, &count) < 0 ||
        pyshm_arg_u64(elt_obj, "Mempool elt_size", 1, PYSHM_MAX_ELT_SIZE, &elt_size) < 0 ||
        (flags_obj && pyshm_arg_flags(flags_obj, "Mempool flags", PYSHM_MEMPOOL_FLAGS,
                                      "MEMPOOL_F_SP_PUT, MEMPOOL_F_SC_GET, MEMPOOL_F_RETURN_PAGES", &flags) < 0) ||
        pyshm_arg_name(name_obj, &name) < 0)
        return NULL;
    if (pyshm_pool_footprint(count, elt_size, &footprint) < 0 || footprint > PYSHM_MAX_REGION_SIZE) {
        PyErr_Format(PyExc_ValueError, "Mempool(count=%llu, elt_size=%llu) is too large", (unsigned long long)count,
                     (unsigned long long)elt_size);
        return NULL;
    }
    pyshm_state *st = pyshm_state_of_type(type);
    ShareMemObject *shm = pyshm_shm_resolve(st, shm_obj);
    if (!shm && !PyErr_Occurred())
        /* No region given and no default one: a region of its own, sized to fit (sparse:
         * only the blocks used ever take memory). */
        shm = pyshm_shm_create(st, footprint < PYSHM_MIN_REGION_SIZE ? PYSHM_MIN_REGION_SIZE : footprint);
    if (!shm || pyshm_shm_check_open(shm, "Mempool") < 0) {
        Py_XDECREF(shm);
        return NULL;
    }
    int rc = pyshm_pool_create(&shm->space.region, count, elt_size, flags, name, &offset);
    if (rc < 0) {
        char what[96];
        PyOS_snprintf(what, sizeof(what), "Mempool(count=%llu, elt_size=%llu)", (unsigned long long)count,
                      (unsigned long long)elt_size);
        pyshm_shm_raise_carve(shm, rc, what, footprint, name_obj);
        Py_DECREF(shm);
        return NULL;
    }
    return pyshm_carved_open(type, shm, offset);
}

struct get_attempt {
    const struct pyshm_pool *pool;
    struct pyshm_member *member;
    struct pyshm_block *blocks;
    uint64_t max;
};

static int64_t try_get(void *ctx)
{
    struct get_attempt *a = ctx;
    return pyshm_pool_get(a->pool, a->member, a->blocks, a->max);
}

/* get() and get_many(): 1 to max blocks, waiting as opts allow; the views, as a list
 * unless `single`. */
static PyObject *get_blocks(MempoolObject *self, uint64_t max, const struct pyshm_wait_options *opts, int single)
{
    CarvedObject *base = &self->base;
    if (pyshm_carved_check_open(base) < 0)
        return NULL;
    struct pyshm_member *m = pyshm_shm_member(base->shm, "Mempool.get");
    if (!m)
        return NULL;
    if (max > self->pool->count)
        max = self->pool->count;
    struct pyshm_block one, *blocks = max == 1 ? &one : PyMem_Malloc(max * sizeof(*blocks));
    if (!blocks)
        return PyErr_NoMemory();
    struct get_attempt a = {self->pool, m, blocks, max};
    /* A waiting get() gathers blocks; a get() (not get_many()) that does not wait is
     * paced (pyshm_ext.h). */
    struct pyshm_gather gather = {&self->pool->free_queue.ring, PYSHM_RING_DEQ, 1};
    int64_t got = pyshm_wait_until(base->shm, base, &self->pool->free_queue.shared->not_empty, &self->get_spin_ns,
                                   -PYSHM_EEMPTY, try_get, &a, opts, &gather);
    if (got == 1 && single && !opts->block)
        pyshm_pace(&gather, &self->get_pace_skip);
    PyObject *result = NULL;
    if (got == -PYSHM_EEMPTY)
        PyErr_Format(base->state->EmptyError, "Mempool is empty: all %llu blocks are in use",
                     (unsigned long long)self->pool->count);
    else if (got < 0)
        pyshm_raise(base->state, (int)got, "Mempool.get");
    else
        result = single ? pyshm_block_view(base->state, base->shm, blocks, 0)
                        : pyshm_block_views(base->state, base->shm, blocks, (Py_ssize_t)got, 0, 0);
    if (blocks != &one)
        PyMem_Free(blocks);
    return result;
}

static PyObject *mempool_get(MempoolObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    struct pyshm_wait_options opts = {0, UINT64_MAX};
    if ((nargs || kwnames) &&
        pyshm_parse_waiting(self->base.state, args, nargs, kwnames, "get", kwlist, 0, 0, NULL, &opts) < 0)
        return NULL;
    return get_blocks(self, 1, &opts, 1);
}

static PyObject *mempool_get_many(MempoolObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"n", "block", "timeout", NULL};
    struct pyshm_wait_options opts;
    PyObject *n_obj;
    uint64_t n;
    if (pyshm_parse_waiting(self->base.state, args, nargs, kwnames, "get_many", kwlist, 1, 1, &n_obj, &opts) < 0 ||
        pyshm_arg_u64(n_obj, "get_many n", 1, PYSHM_MAX_COUNT, &n) < 0)
        return NULL;
    return get_blocks(self, n, &opts, 0);
}

/* Give blocks back. A free queue that stays blocked past the patience may have a slot
 * claimed by a process that died: repair if so, and try once more. */
static PyObject *put_blocks(MempoolObject *self, BlockObject **blocks, const struct pyshm_block *core, Py_ssize_t n,
                            const char *what)
{
    CarvedObject *base = &self->base;
    for (Py_ssize_t i = 0; i < n; i++)
        if (blocks[i]->pool->offset != self->pool->offset) {
            PyErr_Format(PyExc_ValueError, "%s(): item %zd belongs to another Mempool", what, i);
            return NULL;
        }
    struct pyshm_member *m = pyshm_shm_member(base->shm, what);
    if (!m)
        return NULL;
    int rc = pyshm_shm_pool_put(base->shm, self->pool, m, core, (uint64_t)n);
    if (rc < 0) {
        pyshm_raise(base->state, rc, what);
        return NULL;
    }
    if (pyshm_blocks_given(base->state, blocks, n) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mempool_put(MempoolObject *self, PyObject *view)
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    BlockObject *block = pyshm_block_from_view(self->base.state, self->base.shm, view, "put", -1);
    if (!block)
        return NULL;
    struct pyshm_block core = {block->pool, block->index, block->gen};
    if (block->pool->offset != self->pool->offset) {
        PyErr_SetString(PyExc_ValueError, "put(): this block belongs to another Mempool");
        return NULL;
    }
    return put_blocks(self, &block, &core, 1, "Mempool.put");
}

static PyObject *mempool_put_many(MempoolObject *self, PyObject *views)
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    BlockObject **blocks;
    struct pyshm_block *core;
    PyObject *keep;
    Py_ssize_t n;
    if (pyshm_blocks_from_views(self->base.state, self->base.shm, views, "put_many", &blocks, &core, &keep, &n) < 0)
        return NULL;
    PyObject *result = n ? put_blocks(self, blocks, core, n, "Mempool.put_many") : Py_NewRef(Py_None);
    PyMem_Free(blocks);
    PyMem_Free(core);
    Py_DECREF(keep);
    return result;
}

static PyObject *mempool_reclaim(MempoolObject *self, PyObject *Py_UNUSED(unused))
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    /* With the GIL held: the repair reads and extends the region's pool table, which other
     * threads of this process use. It waits (without the GIL) only while another process
     * is repairing the same region, for up to a second. */
    struct pyshm_repair_report report;
    int rc = pyshm_repair(&self->base.shm->space, 0, &report);
    if (rc == -EBUSY) {
        /* The naps run without the GIL: counted as a wait, so that cleanup() of the region
         * in another thread refuses meanwhile (and cleanup() of this handle is noticed). */
        ShareMemObject *shm = (ShareMemObject *)Py_NewRef(self->base.shm);
        pyshm_waits_add(shm, &self->base, 1);
        for (int attempt = 1; attempt < 1000 && rc == -EBUSY; attempt++) {
            Py_BEGIN_ALLOW_THREADS
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            Py_END_ALLOW_THREADS
            if (self->base.closed) {
                rc = PYSHM_RAISED;
                PyErr_SetString(PyExc_ValueError,
                                "Mempool was closed (cleanup() in another thread) while reclaim() waited");
                break;
            }
            rc = pyshm_repair(&shm->space, 0, &report);
        }
        pyshm_waits_add(shm, &self->base, -1);
        Py_DECREF(shm);
        if (rc == PYSHM_RAISED)
            return NULL;
    }
    if (rc == -EBUSY)
        return PyLong_FromLong(0); /* another process is repairing right now */
    if (rc == -ENOTSUP) {
        PyErr_SetString(self->base.state->PyshmError,
                        "Mempool.reclaim: this process cannot repair the region: it could not open a private "
                        "description of the region's file to hold its lock (no /proc for an unnamed region)");
        return NULL;
    }
    if (rc < 0) {
        pyshm_raise(self->base.state, rc, "Mempool.reclaim");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(report.returned);
}

/* Getters that need the pool open: ValueError once it or its region is closed. */
static PyObject *mempool_get_free_count(MempoolObject *self, void *Py_UNUSED(closure))
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(pyshm_pool_free_count(self->pool));
}

static PyObject *mempool_get_used_count(MempoolObject *self, void *Py_UNUSED(closure))
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->pool->count - pyshm_pool_free_count(self->pool));
}

static PyObject *mempool_get_count(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->pool->count);
}

static PyObject *mempool_get_elt_size(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->pool->elt_size);
}

static PyObject *mempool_get_flags(MempoolObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(self->pool->flags);
}

static PyObject *mempool_repr(MempoolObject *self)
{
    return PyUnicode_FromFormat("<pyshm.Mempool count=%llu elt_size=%llu%s>", (unsigned long long)self->pool->count,
                                (unsigned long long)self->pool->elt_size, self->base.closed ? " closed" : "");
}

static PyObject *mempool_get_async(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return pyshm_aio_call("mempool_get", self, args, nargs, kwnames);
}

static PyObject *mempool_get_many_async(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return pyshm_aio_call("mempool_get_many", self, args, nargs, kwnames);
}

static PyMethodDef mempool_methods[] = {
    {"get", (PyCFunction)(void (*)(void))mempool_get, METH_FASTCALL | METH_KEYWORDS,
     "get($self, /, *, block=False, timeout=None)\n--\n\n"
     "The block free longest, as a writable memoryview of elt_size bytes.\n"
     "EmptyError if none is free (after waiting, if block is true)."},
    {"get_many", (PyCFunction)(void (*)(void))mempool_get_many, METH_FASTCALL | METH_KEYWORDS,
     "get_many($self, /, n, *, block=False, timeout=None)\n--\n\n"
     "A list of 1 to n of the blocks free longest."},
    {"get_async", (PyCFunction)(void (*)(void))mempool_get_async, METH_FASTCALL | METH_KEYWORDS,
     "get_async($self, /, *, timeout=None)\n--\n\n"
     "Coroutine: get() for asyncio, always waiting (EmptyError after timeout seconds)."},
    {"get_many_async", (PyCFunction)(void (*)(void))mempool_get_many_async, METH_FASTCALL | METH_KEYWORDS,
     "get_many_async($self, /, n, *, timeout=None)\n--\n\nCoroutine: get_many() for asyncio, always waiting."},
    {"put", (PyCFunction)mempool_put, METH_O,
     "put($self, buf, /)\n--\n\nGive a block back; the view is released. It must be the view get() or "
     "dequeue() returned in this process."},
    {"put_many", (PyCFunction)mempool_put_many, METH_O,
     "put_many($self, views, /)\n--\n\nGive blocks back, all or none; their views are released."},
    {"reclaim", (PyCFunction)mempool_reclaim, METH_NOARGS,
     "reclaim($self, /)\n--\n\nRepair what processes that no longer exist left half done in this region, "
     "and return to their pools the blocks they held; blocks waiting in rings stay. Returns how many "
     "blocks came back."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mempool_getset[] = {
    {"count", (getter)mempool_get_count, NULL, "Number of blocks.", NULL},
    {"max_count", (getter)mempool_get_count, NULL, "Alias of count.", NULL},
    {"elt_size", (getter)mempool_get_elt_size, NULL, "Bytes in each block.", NULL},
    {"flags", (getter)mempool_get_flags, NULL, "MEMPOOL_F_* flags given at creation.", NULL},
    {"free_count", (getter)mempool_get_free_count, NULL, "Blocks in the free queue right now.", NULL},
    {"used_count", (getter)mempool_get_used_count, NULL, "Blocks held or in rings right now.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mempool_slots[] = {
    {Py_tp_new, mempool_new},
    {Py_tp_dealloc, pyshm_carved_dealloc},
    {Py_tp_repr, mempool_repr},
    {Py_tp_methods, mempool_methods},
    {Py_tp_getset, mempool_getset},
    {Py_tp_doc, "Mempool(count, elt_size, flags=0, shm=None, *, name=None)\n--\n\n"
                "count blocks of elt_size bytes in shared memory."},
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
    return (st->MempoolType = pyshm_carved_type(module, st, &mempool_spec)) ? 0 : -1;
}
