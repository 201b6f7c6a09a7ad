/*
 * block_type.c - the exporter behind every block view.
 *
 * get() and dequeue() hand out a plain memoryview whose exporter is a Block. The Block
 * holds the region (so the memory stays mapped while the view lives), which block of
 * which pool it is, and the generation this process holds it at. put() and enqueue()
 * accept only the very memoryview that was handed out, and only while nothing else in
 * this process (a slice, memoryview(view), a numpy array) still shares its buffer.
 */
#include "pyshm_ext.h"

/*
 * The view handed out carries this bit in its flags word. CPython's memoryview code
 * tests only its own low bits, and copies and slices compute their flags afresh, so the
 * bit marks the original even if a copy is later allocated at the original's address.
 */
#define HANDED_OUT_FLAG (1 << 30)

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

static void block_dealloc(BlockObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
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

PyObject *pyshm_block_view_new(pyshm_state *st, ShareMemObject *shm, size_t pool_slot, uint64_t index,
                               uint64_t gen, Py_ssize_t length)
{
    const struct pyshm_pool *pool = shm->region.pools[pool_slot];
    BlockObject *block = block_alloc(st);
    PyObject *view = NULL;
    if (block) {
        block->shm = (ShareMemObject *)Py_NewRef(shm);
        block->pool_slot = pool_slot;
        block->index = index;
        block->gen = gen;
        block->data = (char *)pool->data + index * pool->stride;
        block->length = length;
        block->view = NULL;
        block->exported = 0;
        block->marked = 0;
        view = PyMemoryView_FromObject((PyObject *)block);
        Py_DECREF(block);
    }
    if (!view) {
        /* Nobody will ever hold this block: give it back rather than lose it. */
        uint64_t held_gen = gen;
        pyshm_pool_put(pool, index, &held_gen);
        return NULL;
    }
    ((PyMemoryViewObject *)view)->flags |= HANDED_OUT_FLAG;
    block->view = view;
    return view;
}

BlockObject *pyshm_block_from_view(pyshm_state *st, ShareMemObject *shm, PyObject *view, const char *op)
{
    if (!PyMemoryView_Check(view)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a block view handed out by get() or dequeue(), not %.100s", op,
                     Py_TYPE(view)->tp_name);
        return NULL;
    }
    PyMemoryViewObject *mv = (PyMemoryViewObject *)view;
    if (mv->flags & _Py_MEMORYVIEW_RELEASED) {
        PyErr_Format(PyExc_ValueError, "%s(): this view was released (already put back or enqueued?)", op);
        return NULL;
    }
    PyObject *base = mv->mbuf->master.obj;
    if (!base || !Py_IS_TYPE(base, st->BlockType)) {
        PyErr_Format(PyExc_ValueError, "%s(): this memoryview is not a pyshm block view (it views other memory)",
                     op);
        return NULL;
    }
    BlockObject *block = (BlockObject *)base;
    if (block->view != view || !(mv->flags & HANDED_OUT_FLAG)) {
        PyErr_Format(PyExc_ValueError,
                     "%s(): this is a slice or copy of a block view; pass the view that get() or dequeue() "
                     "returned",
                     op);
        return NULL;
    }
    if (block->shm != shm) {
        PyErr_Format(PyExc_ValueError, "%s(): this block belongs to another ShareMem", op);
        return NULL;
    }
    Py_ssize_t others = mv->exports + (mv->mbuf->exports - 1);
    if (others > 0) {
        PyErr_Format(PyExc_BufferError,
                     "%s(): %zd other view(s) or array(s) still use this block; delete them first (the block "
                     "stays yours)",
                     op, others);
        return NULL;
    }
    return block;
}

int pyshm_block_release_view(pyshm_state *st, BlockObject *block)
{
    /* The view holds the last reference to the block: releasing it may free the block. */
    PyObject *res = st->memoryview_release ? st->memoryview_release(block->view, NULL)
                                           : PyObject_CallMethodNoArgs(block->view, st->str_release);
    if (!res)
        return -1;
    Py_DECREF(res);
    return 0;
}

PyObject *pyshm_views_tuple(PyObject *views, const char *op)
{
    if (!PyList_Check(views) && !PyTuple_Check(views)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a list or tuple of block views, not %.100s", op,
                     Py_TYPE(views)->tp_name);
        return NULL;
    }
    return PySequence_Tuple(views);
}

int pyshm_blocks_from_views(pyshm_state *st, ShareMemObject *shm, PyObject *views, const char *op,
                            BlockObject **blocks)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(views);
    Py_ssize_t i = 0;
    int rc = 0;
    for (; i < n; i++) {
        blocks[i] = pyshm_block_from_view(st, shm, PySequence_Fast_GET_ITEM(views, i), op);
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
    }
    for (Py_ssize_t j = 0; j < i; j++)
        blocks[j]->marked = 0;
    return rc;
}

PyObject *pyshm_block_view_list(pyshm_state *st, ShareMemObject *shm, const struct pyshm_taken_block *taken,
                                Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *view = list ? pyshm_block_view_new(st, shm, taken[i].pool->slot, taken[i].index, taken[i].gen,
                                                     (Py_ssize_t)taken[i].pool->elt_size)
                              : NULL;
        if (!view) {
            /* Give every other block back (view_new gave back block i); the views made
             * so far were never seen by the caller and die with the list. */
            for (Py_ssize_t j = 0; j < n; j++) {
                uint64_t gen = taken[j].gen;
                if (j != i || !list)
                    pyshm_pool_put(taken[j].pool, taken[j].index, &gen);
            }
            Py_XDECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, view);
    }
    return list;
}

int pyshm_block_release_views(pyshm_state *st, BlockObject **blocks, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (pyshm_block_release_view(st, blocks[i]) < 0)
            return -1;
    return 0;
}

static PyType_Slot block_slots[] = {
    {Py_tp_dealloc, block_dealloc},
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
