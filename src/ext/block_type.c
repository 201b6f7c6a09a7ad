/*
 * block_type.c - the exporter behind every block view.
 *
 * get() and dequeue() hand out a plain memoryview whose exporter is a Block. The Block
 * holds the region (so the memory stays mapped while the view lives), which block of
 * which pool it is, and the generation this process holds it at. put() and enqueue()
 * accept only the very memoryview that was handed out, and only while nothing else in
 * this process (a slice, memoryview(view), a numpy array) still shares its buffer.
 *
 * A view dropped without put() or enqueue() does not leak its block: when the Block
 * goes, if this process still holds the block at the generation it was handed out at,
 * the block goes back to its pool, with a ResourceWarning (as for an unclosed file),
 * or quietly once _release_when_dropped() said that is how this block is meant to go
 * back (pyshm.Queue hands out arrays that view a message's block: the last one gone
 * frees it).
 */
#include "pyshm_ext.h"

/*
 * The view handed out carries this bit in its flags word. CPython's memoryview code
 * tests only its own low bits, and copies and slices compute their flags afresh, so the
 * bit marks the original even if a copy is later allocated at the original's address.
 */
#define HANDED_OUT_FLAG (1 << 30)

/* How long a dropped view's block may wait for room in its free queue. A queue that
 * refused one after that wait is likely still blocked (a get() stopped midway, or
 * garbage): the drops into the same pool within GIVE_BACK_HOPELESS_NS after that only try
 * (until one gets in), so that releasing many views costs this wait once, not once a
 * view. */
#define GIVE_BACK_PATIENCE_NS UINT64_C(10000000)
#define GIVE_BACK_HOPELESS_NS UINT64_C(1000000000)

static int block_getbuffer(BlockObject *self, Py_buffer *view, int flags)
{
    if (self->exported) {
        PyErr_SetString(PyExc_BufferError, "a pyshm block is exported through its one memoryview only");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->length, 0, flags) < 0)
        return -1;
    self->exported = 1; /* once: after its view is released the Block is spent */
    self->shm->exports++;
    return 0;
}

static void block_releasebuffer(BlockObject *self, Py_buffer *Py_UNUSED(view))
{
    self->view = NULL;
    self->shm->exports--;
}

/* The view was dropped without put() or enqueue(): give the block back if this process
 * still holds it as the view says (not a fork child's copy, not a block that moved on). */
static void block_finalize(BlockObject *self)
{
    ShareMemObject *shm = self->shm;
    if (self->given || !shm || shm->closed || !self->pool || !pyshm_member_is_current(&shm->space.self))
        return;
    PYSHM_SAVE_EXCEPTION(exc);
    struct pyshm_member *m = &shm->space.self;
    struct pyshm_block b = {self->pool, self->index, self->gen};
    int rc = pyshm_block_check_held(self->pool, self->index, self->gen, m->holder);
    if (rc == 0) {
        uint64_t offset = self->pool->offset;
        int hopeless = shm->give_back_refused == offset &&
                       pyshm_now_ns() - shm->give_back_refused_ns < GIVE_BACK_HOPELESS_NS;
        rc = pyshm_pool_put(self->pool, m, &b, 1, hopeless ? 0 : GIVE_BACK_PATIENCE_NS);
        if (rc == -EAGAIN && !hopeless) {
            shm->give_back_refused = offset;
            shm->give_back_refused_ns = pyshm_now_ns();
        } else if (rc == 0 && shm->give_back_refused == offset) {
            shm->give_back_refused = 0;
        }
    }
    if (rc == 0) {
        self->given = 1;
        if (!self->quiet && PyErr_WarnFormat(PyExc_ResourceWarning, 1,
                             "a pyshm block view (%zd bytes, block %llu of the pool at offset %llu) was dropped "
                             "without put() or enqueue(); its block went back to its pool",
                             self->length, (unsigned long long)self->index,
                             (unsigned long long)self->pool->offset) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
    }
    PYSHM_RESTORE_EXCEPTION(exc);
}

static void block_dealloc(BlockObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    /* Only a block not given back has anything to finalize (the common case skips it). */
    if (!self->given && PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0)
        return; /* resurrected */
    pyshm_state *st = PyType_GetModuleState(type);
    Py_CLEAR(self->shm);
    if (st && st->spare_block_count < PYSHM_SPARE_BLOCKS)
        st->spare_blocks[st->spare_block_count++] = (PyObject *)self; /* PyObject_Init revives it */
    else
        type->tp_free(self);
    Py_DECREF(type);
}

static BlockObject *block_alloc(pyshm_state *st)
{
    if (st->spare_block_count > 0)
        return (BlockObject *)PyObject_Init(st->spare_blocks[--st->spare_block_count], st->BlockType);
    return PyObject_New(BlockObject, st->BlockType);
}

void pyshm_block_free_spares(pyshm_state *st)
{
    while (st->spare_block_count > 0)
        PyObject_Free(st->spare_blocks[--st->spare_block_count]);
}

/* Wrap one held block in a new view; NULL (block untouched) on failure. */
static PyObject *view_of(pyshm_state *st, ShareMemObject *shm, const struct pyshm_block *b, Py_ssize_t length)
{
    BlockObject *block = block_alloc(st);
    if (!block)
        return NULL;
    /* PyObject_Init does not clear a spare: every field is set here. */
    block->shm = (ShareMemObject *)Py_NewRef(shm);
    block->pool = b->pool;
    block->index = b->index;
    block->gen = b->gen;
    block->data = (char *)b->pool->data + b->index * b->pool->stride;
    block->length = length ? length : (Py_ssize_t)b->pool->elt_size;
    block->view = NULL;
    block->exported = 0;
    block->given = 1; /* until the view exists: a failed wrap gives the block back itself */
    block->marked = 0;
    block->quiet = 0;
    block->lent_to = NULL;
    block->lent_at = 0;
    PyObject *view = PyMemoryView_FromObject((PyObject *)block);
    if (view) {
        ((PyMemoryViewObject *)view)->flags |= HANDED_OUT_FLAG;
        block->view = view;
        block->given = 0;
    }
    Py_DECREF(block);
    return view;
}

PyObject *pyshm_block_view(pyshm_state *st, ShareMemObject *shm, const struct pyshm_block *taken, Py_ssize_t length)
{
    PyObject *view = view_of(st, shm, taken, length);
    if (!view) {
        PYSHM_SAVE_EXCEPTION(exc);
        pyshm_pool_put(taken->pool, &shm->space.self, taken, 1, GIVE_BACK_PATIENCE_NS);
        PYSHM_RESTORE_EXCEPTION(exc);
    }
    return view;
}

PyObject *pyshm_block_views(pyshm_state *st, ShareMemObject *shm, const struct pyshm_block *taken, Py_ssize_t n,
                            Py_ssize_t length, int single)
{
    if (single && n == 1)
        return pyshm_block_view(st, shm, taken, length);
    PyObject *list = single ? NULL : PyList_New(n);
    PyObject *one = NULL;
    Py_ssize_t made = 0;
    if (single || list) {
        for (; made < n; made++) {
            PyObject *view = view_of(st, shm, &taken[made], length);
            if (!view)
                break;
            if (single)
                one = view;
            else
                PyList_SET_ITEM(list, made, view);
        }
    }
    if (made == n)
        return single ? one : list;
    /* Nobody will ever hold the blocks not wrapped: give them back rather than lose them
     * (the views made so far die with the list and give theirs back when finalized, but
     * quietly: mark them given and put them here). */
    for (Py_ssize_t j = 0; j < made && list; j++)
        ((BlockObject *)((PyMemoryViewObject *)PyList_GET_ITEM(list, j))->mbuf->master.obj)->given = 1;
    PYSHM_SAVE_EXCEPTION(exc);
    for (Py_ssize_t j = 0; j < n; j++)
        pyshm_pool_put(taken[j].pool, &shm->space.self, &taken[j], 1, GIVE_BACK_PATIENCE_NS);
    PYSHM_RESTORE_EXCEPTION(exc);
    Py_XDECREF(list);
    return NULL;
}

/* " item N:" for an error message about item N of a list (item >= 0), else "". Formatted
 * only when an error is raised: the bulk calls check every item. */
static const char *item_prefix(char where[48], Py_ssize_t item)
{
    where[0] = 0;
    if (item >= 0)
        PyOS_snprintf(where, 48, " item %zd:", item);
    return where;
}

/* The Block behind a view handed out by get() or dequeue(), other views of it allowed. */
static BlockObject *block_of_view(pyshm_state *st, ShareMemObject *shm, PyObject *view, const char *op,
                                  Py_ssize_t item)
{
    char where[48];
    if (!PyMemoryView_Check(view)) {
        PyErr_Format(PyExc_TypeError, "%s():%s takes a block view handed out by get() or dequeue(), not %.100s", op,
                     item_prefix(where, item), Py_TYPE(view)->tp_name);
        return NULL;
    }
    PyMemoryViewObject *mv = (PyMemoryViewObject *)view;
    if (mv->flags & _Py_MEMORYVIEW_RELEASED) {
        PyErr_Format(PyExc_ValueError, "%s():%s this view was released (already put back or enqueued?)", op,
                     item_prefix(where, item));
        return NULL;
    }
    PyObject *base = mv->mbuf->master.obj;
    if (!base || !Py_IS_TYPE(base, st->BlockType)) {
        PyErr_Format(PyExc_ValueError, "%s():%s this memoryview is not a pyshm block view (it views other memory)",
                     op, item_prefix(where, item));
        return NULL;
    }
    BlockObject *block = (BlockObject *)base;
    if (block->view != view || !(mv->flags & HANDED_OUT_FLAG)) {
        PyErr_Format(PyExc_ValueError,
                     "%s():%s this is a slice or copy of a block view; pass the view that get() or dequeue() "
                     "returned",
                     op, item_prefix(where, item));
        return NULL;
    }
    if (shm && block->shm != shm) {
        PyErr_Format(PyExc_ValueError, "%s():%s this block belongs to another ShareMem", op,
                     item_prefix(where, item));
        return NULL;
    }
    return block;
}

BlockObject *pyshm_block_from_view(pyshm_state *st, ShareMemObject *shm, PyObject *view, const char *op,
                                   Py_ssize_t item)
{
    BlockObject *block = block_of_view(st, shm, view, op, item);
    if (!block || pyshm_block_check_alone(block, 0, op, item) < 0)
        return NULL;
    return block;
}

BlockObject *pyshm_block_of_view(pyshm_state *st, PyObject *view, const char *op)
{
    return block_of_view(st, NULL, view, op, -1);
}

PyObject *pyshm_block_release_when_dropped(PyObject *module, PyObject *view)
{
    BlockObject *block = block_of_view(PyModule_GetState(module), NULL, view, "_release_when_dropped", -1);
    if (!block)
        return NULL;
    block->quiet = 1;
    Py_RETURN_NONE;
}

int pyshm_block_check_alone(BlockObject *block, Py_ssize_t pins, const char *op, Py_ssize_t item)
{
    PyMemoryViewObject *mv = (PyMemoryViewObject *)block->view;
    /* Exports of the view itself (numpy arrays, buffers taken from it) beyond our own pins,
     * and other memoryviews of the same buffer (slices, casts). */
    Py_ssize_t others = mv->exports - pins + (mv->mbuf->exports - 1);
    if (others <= 0)
        return 0;
    char where[48];
    PyErr_Format(PyExc_BufferError,
                 "%s():%s %zd other view(s) or array(s) still use this block; delete them first (the block "
                 "stays yours)",
                 op, item_prefix(where, item), others);
    return -1;
}

int pyshm_blocks_from_views(pyshm_state *st, ShareMemObject *shm, PyObject *views, const char *op,
                            BlockObject ***blocks_out, struct pyshm_block **core_out, PyObject **keep, Py_ssize_t *n_out)
{
    if (!PyList_Check(views) && !PyTuple_Check(views)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a list or tuple of block views, not %.100s", op,
                     Py_TYPE(views)->tp_name);
        return -1;
    }
    /* A tuple keeps every view alive for the whole call, even if another thread empties
     * the caller's list meanwhile. */
    PyObject *seq = PySequence_Tuple(views);
    if (!seq)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    BlockObject **blocks = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*blocks));
    struct pyshm_block *core = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*core));
    Py_ssize_t i = 0;
    int rc = blocks && core ? 0 : -1;
    if (rc < 0)
        PyErr_NoMemory();
    for (; rc == 0 && i < n; i++) {
        blocks[i] = pyshm_block_from_view(st, shm, PyTuple_GET_ITEM(seq, i), op, i);
        if (!blocks[i]) {
            rc = -1;
            break;
        }
        if (blocks[i]->marked) {
            PyErr_Format(PyExc_ValueError, "%s(): item %zd is a block listed twice", op, i);
            rc = -1;
            break;
        }
        blocks[i]->marked = 1;
        core[i] = (struct pyshm_block){blocks[i]->pool, blocks[i]->index, blocks[i]->gen};
    }
    for (Py_ssize_t j = 0; j < i; j++)
        blocks[j]->marked = 0;
    if (rc < 0) {
        PyMem_Free(blocks);
        PyMem_Free(core);
        Py_DECREF(seq);
        return -1;
    }
    *blocks_out = blocks;
    *core_out = core;
    *keep = seq;
    *n_out = n;
    return 0;
}

int pyshm_blocks_given(pyshm_state *st, BlockObject **blocks, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        BlockObject *block = blocks[i];
        block->given = 1;
        /* The view holds the last reference to the block: releasing it may free it. */
        PyObject *res = st->memoryview_release ? st->memoryview_release(block->view, NULL)
                                               : PyObject_CallMethodNoArgs(block->view, st->str_release);
        if (!res)
            return -1;
        Py_DECREF(res);
    }
    return 0;
}

static PyType_Slot block_slots[] = {
    {Py_tp_dealloc, block_dealloc},
    {Py_tp_finalize, block_finalize},
    {Py_bf_getbuffer, block_getbuffer},
    {Py_bf_releasebuffer, block_releasebuffer},
    {Py_tp_doc, "The exporter behind a pyshm block view (internal)."},
    {0, NULL},
};

static PyType_Spec block_spec = {
    .name = "pyshm._pyshm.Block",
    .basicsize = sizeof(BlockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = block_slots,
};

int pyshm_block_module_init(PyObject *module, pyshm_state *st)
{
    st->BlockType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &block_spec, NULL);
    return st->BlockType ? 0 : -1;
}
