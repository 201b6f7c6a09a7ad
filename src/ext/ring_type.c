/* ring_type.c - Ring: passes blocks between processes by offset, no copy. */
#include "pyshm_ext.h"


static int ring_open_at(CarvedObject *base)
{
    RingObject *self = (RingObject *)base;
    if (pyshm_block_ring_attach(&base->shm->space.region, base->offset, &self->ring) == 0)
        return 0;
    PyErr_Format(base->state->CorruptionError, "no valid Ring at offset %llu of this ShareMem",
                 (unsigned long long)base->offset);
    return -1;
}

static void ring_wake(CarvedObject *base)
{
    struct pyshm_queue_shared *q = ((RingObject *)base)->ring.queue.shared;
    pyshm_wait_wake_all(&q->not_empty);
    pyshm_wait_wake_all(&q->not_full);
}

static struct pyshm_waitpoint *ring_waitpoint(CarvedObject *base, int side)
{
    struct pyshm_queue_shared *q = ((RingObject *)base)->ring.queue.shared;
    return side == 0 ? &q->not_empty : &q->not_full;
}

const struct pyshm_carved_kind pyshm_ring_kind = {"Ring", PYSHM_KIND_RING, ring_open_at, ring_wake, ring_waitpoint};

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"count", "flags", "shm", "name", NULL};
    PyObject *count_obj, *flags_obj = NULL, *shm_obj = Py_None, *name_obj = Py_None;
    uint64_t count, footprint, offset;
    uint32_t flags = 0;
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO$O:Ring", kwlist, &count_obj, &flags_obj, &shm_obj,
                                     &name_obj) ||
        pyshm_arg_u64(count_obj, "Ring count", 1, PYSHM_MAX_RING_CAPACITY, &count) < 0 ||
        (flags_obj && pyshm_arg_flags(flags_obj, "Ring flags", PYSHM_BLOCK_RING_FLAGS, "RING_F_SP_ENQ, RING_F_SC_DEQ",
                                      &flags) < 0) ||
        pyshm_arg_name(name_obj, &name) < 0)
        return NULL;
    pyshm_block_ring_footprint(count, &footprint);
    ShareMemObject *shm = pyshm_carved_region(
        pyshm_state_of_type(type), shm_obj, "Ring",
        "pass shm=... (the ShareMem its blocks' pools live in), or call init_shm(size) first to set a default one");
    if (!shm)
        return NULL;
    int rc = pyshm_block_ring_create(&shm->space.region, count, flags, name, &offset);
    if (rc < 0) {
        char what[64];
        PyOS_snprintf(what, sizeof(what), "Ring(count=%llu)", (unsigned long long)count);
        pyshm_shm_raise_carve(shm, rc, what, footprint, name_obj);
        Py_DECREF(shm);
        return NULL;
    }
    return pyshm_carved_open(type, shm, offset);
}

/* Raise the exception for a failed enqueue or dequeue. */
static void ring_raise(RingObject *self, int64_t rc, const char *what)
{
    if (rc == -PYSHM_EFULL)
        PyErr_Format(self->base.state->FullError, "Ring is full (%llu entries)",
                     (unsigned long long)self->ring.queue.ring.capacity);
    else if (rc == -PYSHM_EEMPTY)
        PyErr_SetString(self->base.state->EmptyError, "Ring is empty");
    else
        pyshm_raise(self->base.state, (int)rc, what);
}

struct enqueue_attempt {
    const struct pyshm_block_ring *ring;
    struct pyshm_member *member;
    const struct pyshm_block *blocks;
    uint64_t n;
    BlockObject **pinned; /* waiting: the views, each with one export of ours, else NULL */
    const char *what;
};

static int64_t try_enqueue(void *ctx)
{
    struct enqueue_attempt *a = ctx;
    /* While the call slept, a signal handler or another thread may have made a new view
     * of a block: the block must not leave with it. */
    if (a->pinned)
        for (uint64_t i = 0; i < a->n; i++)
            if (pyshm_block_check_alone(a->pinned[i], 1, a->what, a->n > 1 ? (Py_ssize_t)i : -1) < 0)
                return PYSHM_RAISED;
    return pyshm_block_ring_enqueue(a->ring, a->member, a->blocks, a->n);
}

/* Hand blocks[0..n) to the ring, waiting for room as opts allow; release their views. */
static PyObject *enqueue_blocks(RingObject *self, BlockObject **blocks, const struct pyshm_block *core, Py_ssize_t n,
                                const struct pyshm_wait_options *opts, const char *what)
{
    CarvedObject *base = &self->base;
    struct pyshm_member *m = pyshm_shm_member(base->shm, what);
    if (!m)
        return NULL;
    Py_buffer pinned_one, *pinned = NULL;
    Py_ssize_t pinned_count = 0;
    PyObject *result = NULL;
    /* The first try needs no pins: until the call waits, nothing else runs in this
     * process (the views were checked when the call began). */
    struct enqueue_attempt a = {&self->ring, m, core, (uint64_t)n, NULL, what};
    int64_t rc = try_enqueue(&a);
    if (rc == -PYSHM_EFULL && opts->block) {
        /* While the call sleeps without the GIL, another thread could release a view or
         * drop the last reference to it: hold an export of each view until the wait is
         * over. */
        pinned = n == 1 ? &pinned_one : PyMem_Malloc((size_t)n * sizeof(*pinned));
        if (!pinned)
            return PyErr_NoMemory();
        for (; pinned_count < n; pinned_count++)
            if (PyObject_GetBuffer(blocks[pinned_count]->view, &pinned[pinned_count], PyBUF_SIMPLE) < 0)
                goto done;
        a.pinned = blocks;
        /* A waiting enqueue() gathers room (pyshm_ext.h). */
        struct pyshm_gather gather = {&self->ring.queue.ring, PYSHM_RING_ENQ, (uint64_t)n};
        rc = pyshm_wait_more(base->shm, base, &self->ring.queue.shared->not_full, &self->enqueue_spin_ns,
                             -PYSHM_EFULL, try_enqueue, &a, opts, &gather);
        for (; pinned_count > 0; pinned_count--)
            PyBuffer_Release(&pinned[pinned_count - 1]);
    }
    if (rc < 0)
        ring_raise(self, rc, what);
    else if (pyshm_blocks_given(base->state, blocks, n) == 0)
        result = Py_NewRef(Py_None);
done:
    for (; pinned_count > 0; pinned_count--)
        PyBuffer_Release(&pinned[pinned_count - 1]);
    if (pinned && pinned != &pinned_one)
        PyMem_Free(pinned);
    return result;
}

static PyObject *ring_enqueue(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"buf", "block", "timeout", NULL};
    struct pyshm_wait_options opts;
    PyObject *view;
    if (pyshm_parse_waiting(self->base.state, args, nargs, kwnames, "enqueue", kwlist, 1, 1, &view, &opts) < 0 ||
        pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    BlockObject *block = pyshm_block_from_view(self->base.state, self->base.shm, view, "enqueue", -1);
    if (!block)
        return NULL;
    struct pyshm_block core = {block->pool, block->index, block->gen};
    return enqueue_blocks(self, &block, &core, 1, &opts, "Ring.enqueue");
}

static PyObject *ring_enqueue_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"views", "block", "timeout", NULL};
    struct pyshm_wait_options opts;
    PyObject *views;
    BlockObject **blocks;
    struct pyshm_block *core;
    PyObject *keep;
    Py_ssize_t n;
    if (pyshm_parse_waiting(self->base.state, args, nargs, kwnames, "enqueue_many", kwlist, 1, 1, &views, &opts) < 0 ||
        pyshm_carved_check_open(&self->base) < 0 ||
        pyshm_blocks_from_views(self->base.state, self->base.shm, views, "enqueue_many", &blocks, &core, &keep, &n) < 0)
        return NULL;
    PyObject *result = NULL;
    if ((uint64_t)n > self->ring.queue.ring.capacity)
        PyErr_Format(PyExc_ValueError, "enqueue_many(): %zd blocks can never fit a Ring of %llu entries", n,
                     (unsigned long long)self->ring.queue.ring.capacity);
    else
        result = n ? enqueue_blocks(self, blocks, core, n, &opts, "Ring.enqueue_many") : Py_NewRef(Py_None);
    PyMem_Free(blocks);
    PyMem_Free(core);
    Py_DECREF(keep);
    return result;
}

struct dequeue_attempt {
    RingObject *self;
    struct pyshm_member *member;
    uint64_t min_size;
    struct pyshm_block *taken;
    uint64_t max;
};

static int64_t try_dequeue(void *ctx)
{
    struct dequeue_attempt *a = ctx;
    struct pyshm_space *space = &a->self->base.shm->space;
    return pyshm_block_ring_dequeue(&a->self->ring, a->member, &space->pools, &space->region, a->min_size, a->max,
                                    a->taken);
}

/* dequeue() and dequeue_many(): 1 to max blocks (of at least min_size bytes, as views of
 * min_size bytes, with max 1), waiting as opts allow. */
static PyObject *dequeue_blocks(RingObject *self, uint64_t min_size, uint64_t max,
                                const struct pyshm_wait_options *opts, int single, const char *what)
{
    CarvedObject *base = &self->base;
    struct pyshm_member *m = pyshm_shm_member(base->shm, what);
    if (!m)
        return NULL;
    if (max > self->ring.queue.ring.capacity)
        max = self->ring.queue.ring.capacity;
    struct pyshm_block one, *taken = max == 1 ? &one : PyMem_Malloc(max * sizeof(*taken));
    if (!taken)
        return PyErr_NoMemory();
    struct dequeue_attempt a = {self, m, min_size, taken, max};
    int64_t got = pyshm_wait_until(base->shm, base, &self->ring.queue.shared->not_empty, &self->dequeue_spin_ns,
                                   -PYSHM_EEMPTY, try_dequeue, &a, opts, NULL);
    PyObject *result = NULL;
    if (got == -PYSHM_ETOOBIG)
        PyErr_Format(PyExc_ValueError, "dequeue(size=%llu): the next block has fewer bytes",
                     (unsigned long long)min_size);
    else if (got < 0)
        ring_raise(self, got, what);
    else if (single && min_size > taken->pool->elt_size) {
        /* The entry was checked at the head right before the claim, and a correct process
         * cannot change it there: only a process writing into the ring did. The block goes
         * back to its pool rather than out as a view longer than itself. */
        pyshm_pool_put(taken->pool, m, taken, 1, PYSHM_PUT_PATIENCE_NS);
        PyErr_Format(base->state->CorruptionError,
                     "%s: the ring's entry changed while it was dequeued (a process writes into the ring)", what);
    } else
        result = single ? pyshm_block_view(base->state, base->shm, taken, (Py_ssize_t)min_size)
                        : pyshm_block_views(base->state, base->shm, taken, (Py_ssize_t)got, 0, 0);
    if (taken != &one)
        PyMem_Free(taken);
    return result;
}

static PyObject *ring_dequeue(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"size", "block", "timeout", NULL};
    struct pyshm_wait_options opts;
    PyObject *size_obj;
    uint64_t size = 0;
    if (pyshm_parse_waiting(self->base.state, args, nargs, kwnames, "dequeue", kwlist, 1, 0, &size_obj, &opts) < 0 ||
        pyshm_carved_check_open(&self->base) < 0 ||
        (size_obj && size_obj != Py_None &&
         pyshm_arg_u64(size_obj, "dequeue size", 1, PYSHM_MAX_ELT_SIZE, &size) < 0))
        return NULL;
    return dequeue_blocks(self, size, 1, &opts, 1, "Ring.dequeue");
}

static PyObject *ring_dequeue_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"n", "block", "timeout", NULL};
    struct pyshm_wait_options opts;
    PyObject *n_obj;
    uint64_t n;
    if (pyshm_parse_waiting(self->base.state, args, nargs, kwnames, "dequeue_many", kwlist, 1, 1, &n_obj, &opts) < 0 ||
        pyshm_arg_u64(n_obj, "dequeue_many n", 1, PYSHM_MAX_RING_CAPACITY, &n) < 0 ||
        pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    return dequeue_blocks(self, 0, n, &opts, 0, "Ring.dequeue_many");
}

static PyObject *ring_shutdown(RingObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static char *kwlist[] = {"immediate", NULL};
    int immediate = 0;
    if (pyshm_parse_call(args, nargs, kwnames, "|p:shutdown", kwlist, &immediate) < 0 ||
        pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    pyshm_block_ring_shutdown(&self->ring, immediate);
    if (!immediate)
        Py_RETURN_NONE;
    struct pyshm_member *m = pyshm_shm_member(self->base.shm, "Ring.shutdown");
    if (!m)
        return NULL;
    struct pyshm_space *space = &self->base.shm->space;
    int64_t rc = pyshm_block_ring_drain(&self->ring, m, &space->pools, &space->region);
    if (rc < 0) {
        pyshm_raise(self->base.state, (int)rc, "Ring.shutdown");
        return NULL;
    }
    Py_RETURN_NONE;
}

static Py_ssize_t ring_length(RingObject *self)
{
    if (pyshm_carved_check_open(&self->base) < 0)
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
    return n < 0 ? NULL : PyLong_FromUnsignedLongLong(self->ring.queue.ring.capacity - (uint64_t)n);
}

static PyObject *ring_get_count(RingObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->ring.queue.ring.capacity);
}

static PyObject *ring_get_flags(RingObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(self->ring.flags);
}

static PyObject *ring_get_is_shutdown(RingObject *self, void *Py_UNUSED(closure))
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return NULL;
    return PyBool_FromLong(pyshm_block_ring_shutdown_state(&self->ring) != PYSHM_BLOCK_RING_OPEN);
}

static PyObject *ring_repr(RingObject *self)
{
    return PyUnicode_FromFormat("<pyshm.Ring count=%llu%s>", (unsigned long long)self->ring.queue.ring.capacity,
                                self->base.closed ? " closed" : "");
}

/* The asyncio methods: coroutines of pyshm/_aio.py. */
#define RING_ASYNC(method, fname)                                                                                  \
    static PyObject *method(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)             \
    {                                                                                                              \
        return pyshm_aio_call(fname, self, args, nargs, kwnames);                                                  \
    }
RING_ASYNC(ring_enqueue_async, "ring_enqueue")
RING_ASYNC(ring_enqueue_many_async, "ring_enqueue_many")
RING_ASYNC(ring_dequeue_async, "ring_dequeue")
RING_ASYNC(ring_dequeue_many_async, "ring_dequeue_many")

static PyMethodDef ring_methods[] = {
    {"enqueue", (PyCFunction)(void (*)(void))ring_enqueue, METH_FASTCALL | METH_KEYWORDS,
     "enqueue($self, /, buf, *, block=False, timeout=None)\n--\n\n"
     "Hand a block to the ring; the view is released. FullError if the ring is full\n"
     "(after waiting, if block is true); ShutDown after shutdown()."},
    {"enqueue_many", (PyCFunction)(void (*)(void))ring_enqueue_many, METH_FASTCALL | METH_KEYWORDS,
     "enqueue_many($self, /, views, *, block=False, timeout=None)\n--\n\n"
     "Hand over all blocks, in order, or none."},
    {"dequeue", (PyCFunction)(void (*)(void))ring_dequeue, METH_FASTCALL | METH_KEYWORDS,
     "dequeue($self, /, size=None, *, block=False, timeout=None)\n--\n\n"
     "The oldest block, now yours, as a memoryview (of its first size bytes, if given).\n"
     "EmptyError if the ring is empty; ShutDown once it is shut down and drained."},
    {"dequeue_many", (PyCFunction)(void (*)(void))ring_dequeue_many, METH_FASTCALL | METH_KEYWORDS,
     "dequeue_many($self, /, n, *, block=False, timeout=None)\n--\n\nA list of 1 to n of the oldest blocks."},
    {"enqueue_async", (PyCFunction)(void (*)(void))ring_enqueue_async, METH_FASTCALL | METH_KEYWORDS,
     "enqueue_async($self, /, buf, *, timeout=None)\n--\n\n"
     "Coroutine: enqueue() for asyncio, always waiting (FullError after timeout seconds)."},
    {"enqueue_many_async", (PyCFunction)(void (*)(void))ring_enqueue_many_async, METH_FASTCALL | METH_KEYWORDS,
     "enqueue_many_async($self, /, views, *, timeout=None)\n--\n\nCoroutine: enqueue_many() for asyncio."},
    {"dequeue_async", (PyCFunction)(void (*)(void))ring_dequeue_async, METH_FASTCALL | METH_KEYWORDS,
     "dequeue_async($self, /, size=None, *, timeout=None)\n--\n\n"
     "Coroutine: dequeue() for asyncio, always waiting (EmptyError after timeout seconds)."},
    {"dequeue_many_async", (PyCFunction)(void (*)(void))ring_dequeue_many_async, METH_FASTCALL | METH_KEYWORDS,
     "dequeue_many_async($self, /, n, *, timeout=None)\n--\n\nCoroutine: dequeue_many() for asyncio."},
    {"shutdown", (PyCFunction)(void (*)(void))ring_shutdown, METH_FASTCALL | METH_KEYWORDS,
     "shutdown($self, /, immediate=False)\n--\n\n"
     "Refuse new blocks and wake every waiter in every process; with immediate=True\n"
     "also return the blocks still queued to their pools."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ring_getset[] = {
    {"count", (getter)ring_get_count, NULL, "Entries the ring holds when full.", NULL},
    {"flags", (getter)ring_get_flags, NULL, "RING_F_* flags given at creation.", NULL},
    {"used_count", (getter)ring_get_used_count, NULL, "Entries in the ring right now.", NULL},
    {"free_count", (getter)ring_get_free_count, NULL, "Room left right now.", NULL},
    {"is_shutdown", (getter)ring_get_is_shutdown, NULL, "True once shutdown() was called in any process.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ring_slots[] = {
    {Py_tp_new, ring_new},
    {Py_tp_dealloc, pyshm_carved_dealloc},
    {Py_tp_repr, ring_repr},
    {Py_tp_methods, ring_methods},
    {Py_tp_getset, ring_getset},
    {Py_sq_length, ring_length},
    {Py_tp_doc, "Ring(count, flags=0, shm=None, *, name=None)\n--\n\n"
                "A lock-free FIFO of blocks between processes."},
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
    return (st->RingType = pyshm_carved_type(module, st, &ring_spec)) ? 0 : -1;
}
