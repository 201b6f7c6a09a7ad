/*
 * message.c - the hot path of pyshm.Queue: a Python object in, one block out, and back.
 *
 * A message is one block of one size class (pools of 128 B, 256 B, ... carved by
 * pyshm/queue.py), moved through one Ring: nothing here adds a shared-memory protocol;
 * taking, handing over and giving back are the pools' and the ring's, with their repair.
 *
 * Block layout (little-endian, as written by this machine):
 *
 *   0   u32 magic, u32 number of out-of-band buffers n, u64 pickle length p
 *   16  n entries: u64 offset in the block, u64 length
 *   16 + 16n         the pickle (protocol 5)
 *   then each out-of-band buffer at a 64-byte boundary
 *
 * Everything read back from a block is copied out first and checked against the block's
 * size before it is used: another process could have written anything there.
 *
 * Out-of-band buffers (pickle protocol 5: numpy arrays, PickleBuffer) of at least
 * oob_min bytes are copied once into the block by the sender; the receiver gets views of
 * the block (no copy) and the block goes back to its pool when the last of them is gone.
 * A buffer lent by this queue (_lend: an array allocated in the queue's memory) travels
 * without any copy: the block it lives in is the message.
 */
#include "pyshm_ext.h"

#include <string.h>

#define MSG_MAGIC UINT32_C(0x51485950)
#define MSG_HEAD 16u
#define MSG_ENTRY 16u
#define MSG_ALIGN UINT64_C(64)
#define MSG_MIN_CLASS_SHIFT 7 /* the smallest class: 128 bytes */
#define MSG_MAX_CLASSES 48
/* Room kept in front of a lent buffer for the header and pickle of the message it
 * travels in. */
#define MSG_LEND_ROOM 4096u
/* A message without out-of-band buffers and a pickle up to this size is copied out of
 * its block before it is unpickled (the block goes back at once); a larger one is
 * unpickled from a view of the block. */
#define MSG_COPY_MAX 65536u

#define ALIGN_UP(x) (((x) + MSG_ALIGN - 1) & ~(MSG_ALIGN - 1))

/* The buffer_callback given to pickle.dumps: large contiguous buffers out of band. The
 * queue's own Pickler also writes its output here (write()). */
typedef struct {
    PyObject_HEAD
    PyObject *list; /* the PickleBuffers kept out of band, made at the first */
    Py_ssize_t min;
    PyObject *out;  /* what the Pickler wrote: its one bytes object, or a list of them */
} CollectorObject;

typedef struct {
    PyObject_HEAD
    ShareMemObject *shm;
    RingObject *ring;
    PyObject *pools; /* tuple: pools[i] has blocks of 128 << i bytes */
    Py_ssize_t nclasses;
    uint64_t capacity;
    Py_ssize_t oob_min;
    int closed;
    PyObject *dumps, *loads, *kw_buffer_callback, *kw_buffers, *protocol;
    PyObject *dumps_again; /* (obj, buffer_callback) -> bytes: multiprocessing's pickler */
    PyObject *retry_on;    /* the exception after which dumps_again is tried */
    CollectorObject *spare; /* reused by one put at a time */
    PyObject *pickler;      /* the queue's own pickle.Pickler, writing into `own` */
    PyObject *pickler_dump, *pickler_clear;
    CollectorObject *own;   /* its file and its buffer_callback */
    int pickler_busy;
} QueueBaseObject;

static PyTypeObject *collector_type(PyObject *any_module_object);

/* -- the collector ------------------------------------------------------------------- */

static PyObject *collector_call(CollectorObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *pb;
    if (kwargs || !PyArg_UnpackTuple(args, "buffer_callback", 1, 1, &pb))
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(pb, &b, PyBUF_ANY_CONTIGUOUS) < 0) {
        PyErr_Clear(); /* not contiguous: pickle copies it in band */
        Py_RETURN_TRUE;
    }
    Py_ssize_t len = b.len;
    PyBuffer_Release(&b);
    if (len < self->min)
        Py_RETURN_TRUE;
    if (!self->list && !(self->list = PyList_New(0)))
        return NULL;
    if (PyList_Append(self->list, pb) < 0)
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *collector_write(CollectorObject *self, PyObject *arg)
{
    /* Large payloads come as the object itself (a bytearray, a memoryview): copied here,
     * as pickle.dumps would. */
    PyObject *data = PyBytes_Check(arg) ? Py_NewRef(arg) : PyBytes_FromObject(arg);
    if (!data)
        return NULL;
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    if (!self->out)
        self->out = data;
    else {
        if (PyBytes_Check(self->out)) {
            PyObject *list = PyList_New(1);
            if (!list) {
                Py_DECREF(data);
                return NULL;
            }
            PyList_SET_ITEM(list, 0, self->out);
            self->out = list;
        }
        int rc = PyList_Append(self->out, data);
        Py_DECREF(data);
        if (rc < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(len);
}

/* The Pickler's output as one bytes object (new reference), the collector emptied. */
static PyObject *collector_output(CollectorObject *self)
{
    PyObject *out = self->out;
    self->out = NULL;
    if (!out)
        return PyBytes_FromStringAndSize(NULL, 0);
    if (PyBytes_Check(out))
        return out;
    Py_ssize_t total = 0, n = PyList_GET_SIZE(out);
    for (Py_ssize_t i = 0; i < n; i++)
        total += PyBytes_GET_SIZE(PyList_GET_ITEM(out, i));
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined) {
        char *to = PyBytes_AS_STRING(joined);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *chunk = PyList_GET_ITEM(out, i);
            memcpy(to, PyBytes_AS_STRING(chunk), (size_t)PyBytes_GET_SIZE(chunk));
            to += PyBytes_GET_SIZE(chunk);
        }
    }
    Py_DECREF(out);
    return joined;
}

static PyMethodDef collector_methods[] = {
    {"write", (PyCFunction)collector_write, METH_O, "Keep what the Pickler writes."},
    {NULL, NULL, 0, NULL},
};

static void collector_dealloc(CollectorObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->list);
    Py_XDECREF(self->out);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyType_Slot collector_slots[] = {
    {Py_tp_call, collector_call},
    {Py_tp_methods, collector_methods},
    {Py_tp_dealloc, collector_dealloc},
    {Py_tp_doc, "pickle's buffer_callback for pyshm.Queue (internal)."},
    {0, NULL},
};

static PyType_Spec collector_spec = {
    .name = "pyshm._pyshm._Collector",
    .basicsize = sizeof(CollectorObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = collector_slots,
};

/* -- helpers ------------------------------------------------------------------------- */

static int check_usable(QueueBaseObject *self)
{
    if (!self->ring) {
        PyErr_SetString(PyExc_ValueError, "this queue was not set up");
        return -1;
    }
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "the queue is closed (close() was called on this handle)");
        return -1;
    }
    if (pyshm_carved_check_open(&self->ring->base) < 0)
        return -1;
    return 0;
}

/* put(obj, block=True, timeout=None), get(block=True, timeout=None), _lend(nbytes, ...):
 * blocking by default, as multiprocessing.Queue. npos: 1 with a first argument, else 0. */
static int parse_wait(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, Py_ssize_t npos,
                      const char *first, PyObject **obj, struct pyshm_wait_options *opts)
{
    if (!kwnames && nargs == npos) {
        if (npos)
            *obj = args[0];
        opts->block = 1;
        opts->deadline_ns = UINT64_MAX;
        return 0;
    }
    PyObject *pos[3] = {NULL, NULL, NULL};
    char *with_first[] = {(char *)first, "block", "timeout", NULL};
    char *without[] = {"block", "timeout", NULL};
    int rc = npos ? pyshm_parse_call(args, nargs, kwnames, "O|OO", with_first, &pos[0], &pos[1], &pos[2])
                  : pyshm_parse_call(args, nargs, kwnames, "|OO", without, &pos[1], &pos[2]);
    if (rc < 0)
        return -1;
    if (npos)
        *obj = pos[0];
    return pyshm_arg_wait(pos[1] ? pos[1] : Py_True, pos[2], opts);
}

static MempoolObject *pool_at(QueueBaseObject *self, Py_ssize_t i)
{
    return (MempoolObject *)PyTuple_GET_ITEM(self->pools, i);
}

/* The class whose blocks hold `size` bytes, or -1 with ValueError if none ever will. */
static Py_ssize_t class_for(QueueBaseObject *self, uint64_t size)
{
    if (size > self->capacity) {
        char what[40] = "more";
        if (size != UINT64_MAX) /* UINT64_MAX: too large to count */
            PyOS_snprintf(what, sizeof(what), "%llu", (unsigned long long)size);
        PyErr_Format(PyExc_ValueError,
                     "a message of %s bytes (pickle and buffers) can never fit in this queue: its capacity is "
                     "%llu bytes (Queue(capacity=...))",
                     what, (unsigned long long)self->capacity);
        return -1;
    }
    Py_ssize_t i = 0;
    while (i < self->nclasses - 1 && (UINT64_C(128) << i) < size)
        i++;
    return i;
}

struct take_attempt {
    const struct pyshm_pool *pool;
    const struct pyshm_block_ring *ring;
    struct pyshm_member *m;
    struct pyshm_block *out;
};

/* A put waiting for a block of its class ends when the queue is shut down, as one
 * waiting for room in the ring does. */
static int64_t try_take(void *ctx)
{
    struct take_attempt *a = ctx;
    if (pyshm_block_ring_shutdown_state(a->ring) != PYSHM_BLOCK_RING_OPEN)
        return -ESHUTDOWN;
    return pyshm_pool_get(a->pool, a->m, a->out, 1);
}

/* One block of class i, waiting as opts allow: 0, or -1 with queue.Full (the class's
 * blocks are all in flight) or another exception. */
static int take_block(QueueBaseObject *self, Py_ssize_t i, struct pyshm_member *m,
                      const struct pyshm_wait_options *opts, uint64_t size, struct pyshm_block *out)
{
    MempoolObject *pool = pool_at(self, i);
    struct take_attempt a = {pool->pool, &self->ring->ring, m, out};
    int64_t rc = pyshm_wait_until(self->shm, &pool->base, &pool->pool->free_queue.shared->not_empty,
                                  &pool->get_spin_ns, -PYSHM_EEMPTY, try_take, &a, opts, NULL);
    if (rc == 1)
        return 0;
    if (rc == -PYSHM_EEMPTY)
        PyErr_Format(self->shm->state->FullError,
                     "the queue is full: no room for a message of %llu bytes (its %llu-byte blocks are all in "
                     "flight, or held by arrays received earlier and still alive)",
                     (unsigned long long)size, (unsigned long long)pool->pool->elt_size);
    else if (rc == -ESHUTDOWN)
        PyErr_SetString(self->shm->state->ShutDown, "the queue was shut down");
    else
        pyshm_raise(self->shm->state, (int)(rc < 0 ? rc : -PYSHM_ECORRUPT), "Queue.put");
    return -1;
}

struct send_attempt {
    const struct pyshm_block_ring *ring;
    struct pyshm_member *m;
    const struct pyshm_block *block;
};

static int64_t try_send(void *ctx)
{
    struct send_attempt *a = ctx;
    return pyshm_block_ring_enqueue(a->ring, a->m, a->block, 1);
}

/* Hand a written block to the ring: 0, or -1 with the exception (the block stays ours). */
static int send_block(QueueBaseObject *self, struct pyshm_member *m, const struct pyshm_block *b,
                      const struct pyshm_wait_options *opts)
{
    struct send_attempt a = {&self->ring->ring, m, b};
    int64_t rc = pyshm_wait_until(self->shm, &self->ring->base, &self->ring->ring.queue.shared->not_full,
                                  &self->ring->enqueue_spin_ns, -PYSHM_EFULL, try_send, &a, opts, NULL);
    if (rc >= 0)
        return 0;
    if (rc == -PYSHM_EFULL)
        PyErr_Format(self->shm->state->FullError, "the queue is full (%llu messages)",
                     (unsigned long long)self->ring->ring.queue.ring.capacity);
    else if (rc == -ESHUTDOWN)
        PyErr_SetString(self->shm->state->ShutDown, "the queue was shut down");
    else
        pyshm_raise(self->shm->state, (int)rc, "Queue.put");
    return -1;
}

/* Give a block we hold back to its pool, as Mempool.put does (repairing a free queue
 * that a dead process blocks). */
static void give_back(QueueBaseObject *self, struct pyshm_member *m, const struct pyshm_block *b)
{
    pyshm_shm_pool_put(self->shm, b->pool, m, b, 1);
}

static uint8_t *block_data(const struct pyshm_block *b) { return b->pool->data + b->index * b->pool->stride; }

/* Whether b's memory lies in a block handed over already: -1 with ValueError if so,
 * else 0 with *lent set to the Block this queue lent (_lend) that b views from its lent
 * offset, or NULL. Follows memoryviews and numpy arrays' bases only (C getters: no
 * Python code runs), holding a reference at each step. */
static int find_lent(QueueBaseObject *self, const Py_buffer *b, BlockObject **lent)
{
    *lent = NULL;
    const struct pyshm_region *r = &self->shm->space.region;
    if ((const uint8_t *)b->buf < r->base || (const uint8_t *)b->buf >= r->base + r->map_size || !b->obj)
        return 0;
    PyObject *o = Py_NewRef(b->obj);
    for (int depth = 0; o && depth < 16; depth++) {
        if (Py_IS_TYPE(o, self->shm->state->BlockType)) {
            BlockObject *block = (BlockObject *)o;
            if (block->given) {
                Py_DECREF(o);
                PyErr_SetString(PyExc_ValueError,
                                "put(): this memory was put in a queue already (it belongs to its receiver now)");
                return -1;
            }
            if (block->lent_to == self && block->shm == self->shm &&
                (char *)b->buf == block->data + block->lent_at && b->len <= block->length - block->lent_at)
                *lent = block; /* alive: the buffer b holds it */
            Py_DECREF(o);
            return 0;
        }
        PyObject *next = NULL;
        if (PyMemoryView_Check(o))
            next = Py_XNewRef(((PyMemoryViewObject *)o)->mbuf->master.obj);
        else if (strcmp(Py_TYPE(o)->tp_name, "numpy.ndarray") == 0) {
            next = PyObject_GetAttrString(o, "base");
            if (!next)
                PyErr_Clear();
        }
        Py_DECREF(o);
        o = next == Py_None ? (Py_DECREF(next), NULL) : next;
    }
    Py_XDECREF(o);
    return 0;
}

/* -- put ----------------------------------------------------------------------------- */

static CollectorObject *new_collector(QueueBaseObject *self)
{
    CollectorObject *c = PyObject_New(CollectorObject, collector_type((PyObject *)self));
    if (c) {
        c->list = NULL;
        c->out = NULL;
        c->min = self->oob_min;
    }
    return c;
}

/* Pickle with the queue's own Pickler (pickle.dumps makes and frees one per call: a
 * quarter of a small put). One put at a time uses it: another thread's, or a put from
 * a __reduce__ of the object being pickled, goes through pickle.dumps. Returns the
 * pickle, NULL with an exception, or NULL without one when the Pickler is in use. */
static PyObject *pickle_with_own(QueueBaseObject *self, PyObject *obj, PyObject **oob)
{
    if (!self->pickler || self->pickler_busy)
        return NULL;
    self->pickler_busy = 1;
    CollectorObject *c = self->own;
    PyObject *res = PyObject_CallOneArg(self->pickler_dump, obj);
    PyObject *data = res ? collector_output(c) : NULL;
    Py_XDECREF(res);
    Py_CLEAR(c->out);
    *oob = c->list;
    c->list = NULL;
    /* The memo holds every object pickled: let them go now. */
    PYSHM_SAVE_EXCEPTION(exc);
    PyObject *cleared = PyObject_CallNoArgs(self->pickler_clear);
    if (!cleared)
        PyErr_WriteUnraisable(self->pickler);
    Py_XDECREF(cleared);
    PYSHM_RESTORE_EXCEPTION(exc);
    self->pickler_busy = 0;
    if (!data) {
        Py_CLEAR(*oob);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "the queue's Pickler failed without an exception");
    }
    return data;
}

static PyObject *pickle_obj(QueueBaseObject *self, PyObject *obj, PyObject **oob)
{
    CollectorObject *c = self->spare;
    self->spare = NULL;
    if (!c) {
        c = new_collector(self);
        if (!c)
            return NULL;
    }
    c->min = self->oob_min;
    PyObject *data = pickle_with_own(self, obj, &c->list);
    if (!data && !PyErr_Occurred()) {
        PyObject *args[3] = {obj, self->protocol, (PyObject *)c};
        data = PyObject_Vectorcall(self->dumps, args, 2, self->kw_buffer_callback);
    }
    if (!data && PyErr_ExceptionMatches(self->retry_on)) {
        /* Objects only multiprocessing's pickler reduces (an unnamed ShareMem, a
         * pyshm.Queue): try it, and raise the first error if it fails too. */
        PYSHM_SAVE_EXCEPTION(first);
        Py_CLEAR(c->list);
        PyObject *again[2] = {obj, (PyObject *)c};
        data = PyObject_Vectorcall(self->dumps_again, again, 2, NULL);
        if (data) {
#if PY_VERSION_HEX >= 0x030C0000
            Py_XDECREF(first);
#else
            Py_XDECREF(first_type);
            Py_XDECREF(first_value);
            Py_XDECREF(first_tb);
#endif
        } else {
            PyErr_Clear();
            PYSHM_RESTORE_EXCEPTION(first);
        }
    }
    *oob = c->list;
    c->list = NULL;
    if (!self->spare)
        self->spare = c;
    else
        Py_DECREF(c);
    if (!data)
        Py_CLEAR(*oob);
    else if (!PyBytes_Check(data)) {
        Py_DECREF(data);
        Py_CLEAR(*oob);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps returned something other than bytes");
        return NULL;
    }
    return data;
}

/* Send a message whose only out-of-band buffer lives in a block this queue lent: the
 * header and pickle go in front of it, and that block is the message. 1 if sent, 0 if
 * this message does not qualify, -1 on error. */
static int send_lent(QueueBaseObject *self, struct pyshm_member *m, PyObject *data, BlockObject *block,
                     const Py_buffer *buf, const struct pyshm_wait_options *opts)
{
    Py_ssize_t plen = PyBytes_GET_SIZE(data);
    if ((uint64_t)plen + MSG_HEAD + MSG_ENTRY > (uint64_t)block->lent_at)
        return 0; /* a pickle this large travels in a block of its own */
    /* Only the process holding the block writes into it (not a fork child's copy). */
    if (pyshm_block_check_held(block->pool, block->index, block->gen, m->holder) != 0) {
        PyErr_SetString(PyExc_ValueError, "put(): this process does not hold the memory of this array (a fork "
                                          "child's copy?)");
        return -1;
    }
    struct pyshm_block b = {block->pool, block->index, block->gen};
    uint8_t *p = (uint8_t *)block->data;
    uint32_t head[2] = {MSG_MAGIC, 1};
    uint64_t len64 = (uint64_t)plen, entry[2] = {(uint64_t)((char *)buf->buf - block->data), (uint64_t)buf->len};
    /* Given from here: another thread's put of it, while this one waits, raises. */
    block->given = 1;
    memcpy(p, head, 8);
    memcpy(p + 8, &len64, 8);
    memcpy(p + MSG_HEAD, entry, MSG_ENTRY);
    memcpy(p + MSG_HEAD + MSG_ENTRY, PyBytes_AS_STRING(data), (size_t)plen);
    if (send_block(self, m, &b, opts) < 0) {
        block->given = 0; /* still ours */
        return -1;
    }
    return 1;
}

/* Send a pickled message: 0, or -1 with the exception. When the exception is queue.Full,
 * *full_at says what is full: -1 the ring (messages), else the size class with no block
 * free (bytes). */
static int send_message(QueueBaseObject *self, PyObject *data, PyObject *oob, const struct pyshm_wait_options *opts,
                        Py_ssize_t *full_at)
{
    Py_ssize_t n = oob ? PyList_GET_SIZE(oob) : 0;
    Py_buffer one, *bufs = n <= 1 ? &one : PyMem_Calloc((size_t)n, sizeof(Py_buffer));
    Py_ssize_t got = 0;
    int rc = -1;
    *full_at = -1;
    if (!bufs) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(oob, got), &bufs[got], PyBUF_ANY_CONTIGUOUS) < 0)
            goto done;
    /* Everything that can run Python code (pickling, getting buffers) is done: the region
     * is checked now, and no Python code runs until the message is sent. */
    if (check_usable(self) < 0)
        goto done;
    struct pyshm_member *m = pyshm_shm_member(self->shm, "Queue.put");
    if (!m)
        goto done;
    BlockObject *lent = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        BlockObject *found;
        if (find_lent(self, &bufs[i], &found) < 0)
            goto done;
        if (!lent)
            lent = found;
    }
    if (n == 1 && lent) {
        int sent = send_lent(self, m, data, lent, &bufs[0], opts);
        if (sent != 0) {
            rc = sent > 0 ? 0 : -1;
            goto done;
        }
    }
    uint64_t plen = (uint64_t)PyBytes_GET_SIZE(data);
    uint64_t table = MSG_HEAD + MSG_ENTRY * (uint64_t)n, size = ALIGN_UP(table + plen);
    int too_big = (uint64_t)n > UINT32_MAX || size > self->capacity;
    for (Py_ssize_t i = 0; i < n && !too_big; i++) {
        too_big = (uint64_t)bufs[i].len > self->capacity - size;
        size = too_big ? size : ALIGN_UP(size + (uint64_t)bufs[i].len);
    }
    Py_ssize_t cls = class_for(self, too_big ? UINT64_MAX : size);
    if (cls < 0)
        goto done;
    struct pyshm_block b;
    if (take_block(self, cls, m, opts, size, &b) < 0) {
        *full_at = cls;
        goto done;
    }
    uint8_t *p = block_data(&b);
    uint32_t head[2] = {MSG_MAGIC, (uint32_t)n};
    memcpy(p, head, 8);
    memcpy(p + 8, &plen, 8);
    memcpy(p + table, PyBytes_AS_STRING(data), plen);
    uint64_t at = ALIGN_UP(table + plen);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t entry[2] = {at, (uint64_t)bufs[i].len};
        memcpy(p + MSG_HEAD + MSG_ENTRY * (uint64_t)i, entry, MSG_ENTRY);
        memcpy(p + at, bufs[i].buf, (size_t)bufs[i].len);
        at = ALIGN_UP(at + (uint64_t)bufs[i].len);
    }
    if (send_block(self, m, &b, opts) < 0)
        give_back(self, m, &b);
    else
        rc = 0;
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    if (bufs && bufs != &one)
        PyMem_Free(bufs);
    return rc;
}

static PyObject *queue_put(QueueBaseObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *obj;
    struct pyshm_wait_options opts;
    if (parse_wait(args, nargs, kwnames, 1, "obj", &obj, &opts) < 0 || check_usable(self) < 0)
        return NULL;
    PyObject *oob = NULL;
    PyObject *data = pickle_obj(self, obj, &oob);
    if (!data)
        return NULL;
    Py_ssize_t full_at;
    int rc = send_message(self, data, oob, &opts, &full_at);
    Py_XDECREF(oob);
    Py_DECREF(data);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* _pickle(obj) -> (pickle, out-of-band buffers or None): put's first half, for put_async
 * (which pickles once, then tries _try_send until there is room). */
static PyObject *queue_pickle(QueueBaseObject *self, PyObject *obj)
{
    if (check_usable(self) < 0)
        return NULL;
    PyObject *oob = NULL;
    PyObject *data = pickle_obj(self, obj, &oob);
    if (!data)
        return NULL;
    return Py_BuildValue("(NN)", data, oob ? oob : Py_NewRef(Py_None));
}

/* _try_send(pickle, buffers): put's second half, never waiting. None when sent; when
 * full, what to wait for: -1 the ring (a get), i >= 0 a block of size class i. */
static PyObject *queue_try_send(QueueBaseObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || (args[1] != Py_None && !PyList_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "_try_send(pickle: bytes, buffers: list | None)");
        return NULL;
    }
    struct pyshm_wait_options opts = {0, UINT64_MAX};
    Py_ssize_t full_at;
    if (send_message(self, args[0], args[1] == Py_None ? NULL : args[1], &opts, &full_at) == 0)
        Py_RETURN_NONE;
    if (!PyErr_ExceptionMatches(self->shm->state->FullError))
        return NULL;
    PyErr_Clear();
    return PyLong_FromSsize_t(full_at);
}

/* -- get ----------------------------------------------------------------------------- */

struct receive_attempt {
    QueueBaseObject *self;
    struct pyshm_member *m;
    struct pyshm_block *out;
};

static int64_t try_receive(void *ctx)
{
    struct receive_attempt *a = ctx;
    struct pyshm_space *space = &a->self->shm->space;
    return pyshm_block_ring_dequeue(&a->self->ring->ring, a->m, &space->pools, &space->region, 0, 1, a->out);
}

static PyObject *corrupt(QueueBaseObject *self, struct pyshm_member *m, const struct pyshm_block *b, const char *why)
{
    give_back(self, m, b);
    PyErr_Format(self->shm->state->CorruptionError, "Queue.get: %s (a process wrote into the queue's memory?)", why);
    return NULL;
}

/* Unpickle the message in block b (just dequeued, ours): the object, with the block
 * given back or, if the object views it, given back when the last view goes. */
static PyObject *open_message(QueueBaseObject *self, struct pyshm_member *m, const struct pyshm_block *b)
{
    Py_ssize_t cls = -1;
    for (Py_ssize_t i = 0; i < self->nclasses; i++)
        if (pool_at(self, i)->pool->offset == b->pool->offset)
            cls = i;
    if (cls < 0)
        return corrupt(self, m, b, "the ring held a block of no pool of this queue");
    uint64_t size = b->pool->elt_size;
    const uint8_t *p = block_data(b);
    uint32_t head[2];
    uint64_t plen;
    memcpy(head, p, 8);
    memcpy(&plen, p + 8, 8);
    uint64_t n = head[1];
    if (head[0] != MSG_MAGIC || n > (size - MSG_HEAD) / MSG_ENTRY)
        return corrupt(self, m, b, "a block holds no message");
    uint64_t table = MSG_HEAD + MSG_ENTRY * n;
    if (plen > size - table)
        return corrupt(self, m, b, "a message's pickle runs past its block");
    if (n == 0 && plen <= MSG_COPY_MAX) {
        /* A small message: copied out, the block back at once, then unpickled. */
        PyObject *pickled = PyBytes_FromStringAndSize((const char *)p + table, (Py_ssize_t)plen);
        give_back(self, m, b);
        if (!pickled)
            return NULL;
        PyObject *obj = PyObject_CallOneArg(self->loads, pickled);
        Py_DECREF(pickled);
        return obj;
    }
    uint64_t entries[2 * 64], *e = n <= 64 ? entries : PyMem_Malloc(n * MSG_ENTRY);
    if (!e) {
        give_back(self, m, b);
        return PyErr_NoMemory();
    }
    memcpy(e, p + MSG_HEAD, n * MSG_ENTRY);
    for (uint64_t i = 0; i < n; i++)
        if (e[2 * i] < table + plen || e[2 * i] > size || e[2 * i + 1] > size - e[2 * i]) {
            if (e != entries)
                PyMem_Free(e);
            return corrupt(self, m, b, "a message's buffer lies outside its block");
        }
    /* From here the block is the view's: it goes back when the last view of it (the
     * pickle's, the buffers', the arrays made on them) is gone. */
    PyObject *obj = NULL, *buffers = NULL, *pickled = NULL;
    PyObject *view = pyshm_block_view(self->shm->state, self->shm, b, 0);
    if (!view)
        goto done;
    BlockObject *block = pyshm_block_of_view(self->shm->state, view, "Queue.get");
    if (!block)
        goto done;
    block->quiet = 1;
    buffers = PyList_New((Py_ssize_t)n);
    if (!buffers)
        goto done;
    for (uint64_t i = 0; i < n; i++) {
        PyObject *slice = PySequence_GetSlice(view, (Py_ssize_t)e[2 * i], (Py_ssize_t)(e[2 * i] + e[2 * i + 1]));
        if (!slice)
            goto done;
        PyList_SET_ITEM(buffers, (Py_ssize_t)i, slice);
    }
    pickled = PySequence_GetSlice(view, (Py_ssize_t)table, (Py_ssize_t)(table + plen));
    if (!pickled)
        goto done;
    PyObject *args[2] = {pickled, buffers};
    obj = PyObject_Vectorcall(self->loads, args, 1, self->kw_buffers);
done:
    if (e != entries)
        PyMem_Free(e);
    Py_XDECREF(pickled);
    Py_XDECREF(buffers);
    Py_XDECREF(view); /* the last reference unless the object views the block */
    return obj;
}

static PyObject *queue_get(QueueBaseObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    struct pyshm_wait_options opts;
    if (parse_wait(args, nargs, kwnames, 0, NULL, NULL, &opts) < 0 ||
        check_usable(self) < 0)
        return NULL;
    struct pyshm_member *m = pyshm_shm_member(self->shm, "Queue.get");
    if (!m)
        return NULL;
    struct pyshm_block b;
    struct receive_attempt a = {self, m, &b};
    int64_t rc = pyshm_wait_until(self->shm, &self->ring->base, &self->ring->ring.queue.shared->not_empty,
                                  &self->ring->dequeue_spin_ns, -PYSHM_EEMPTY, try_receive, &a, &opts, NULL);
    if (rc == 1)
        return open_message(self, m, &b);
    if (rc == -PYSHM_EEMPTY)
        PyErr_SetString(self->shm->state->EmptyError, "the queue is empty");
    else if (rc == -ESHUTDOWN)
        PyErr_SetString(self->shm->state->ShutDown, "the queue was shut down");
    else
        pyshm_raise(self->shm->state, (int)(rc < 0 ? rc : -PYSHM_ECORRUPT), "Queue.get");
    return NULL;
}

static PyObject *queue_put_nowait(QueueBaseObject *self, PyObject *obj)
{
    PyObject *args[2] = {obj, Py_False};
    return queue_put(self, args, 2, NULL);
}

static PyObject *queue_get_nowait(QueueBaseObject *self, PyObject *Py_UNUSED(unused))
{
    PyObject *args[1] = {Py_False};
    return queue_get(self, args, 1, NULL);
}

/* -- lending ------------------------------------------------------------------------- */

/* _lend(nbytes, block=True, timeout=None): a writable memoryview of nbytes in a block of
 * this queue; putting an object whose one out-of-band buffer is exactly it (a numpy
 * array made on it) sends that block as the message, with no copy. */
static PyObject *queue_lend(QueueBaseObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *n_obj;
    struct pyshm_wait_options opts;
    uint64_t nbytes;
    if (parse_wait(args, nargs, kwnames, 1, "nbytes", &n_obj, &opts) < 0 ||
        check_usable(self) < 0 || pyshm_arg_u64(n_obj, "nbytes", 0, self->capacity, &nbytes) < 0)
        return NULL;
    struct pyshm_member *m = pyshm_shm_member(self->shm, "Queue._lend");
    if (!m)
        return NULL;
    Py_ssize_t cls = class_for(self, nbytes + MSG_LEND_ROOM);
    if (cls < 0)
        return NULL;
    struct pyshm_block b;
    if (take_block(self, cls, m, &opts, nbytes + MSG_LEND_ROOM, &b) < 0)
        return NULL;
    PyObject *view = pyshm_block_view(self->shm->state, self->shm, &b, 0);
    if (!view)
        return NULL;
    BlockObject *block = pyshm_block_of_view(self->shm->state, view, "Queue._lend");
    PyObject *slice = NULL;
    if (block) {
        block->quiet = 1; /* dropped unsent: back to its pool, nothing to warn about */
        block->lent_to = self;
        block->lent_at = MSG_LEND_ROOM;
        slice = PySequence_GetSlice(view, MSG_LEND_ROOM, (Py_ssize_t)(MSG_LEND_ROOM + nbytes));
    }
    Py_DECREF(view);
    return slice;
}

/* -- set-up -------------------------------------------------------------------------- */

/* _bind(ring, pools, capacity, oob_min, dumps_again, retry_on): the objects made or
 * found by pyshm/queue.py, and the pickling to try when pickle.dumps raises retry_on. */
static PyObject *queue_bind(QueueBaseObject *self, PyObject *args)
{
    PyObject *ring, *pools, *dumps_again, *retry_on;
    unsigned long long capacity;
    Py_ssize_t oob_min;
    if (!PyArg_ParseTuple(args, "OO!KnOO:_bind", &ring, &PyTuple_Type, &pools, &capacity, &oob_min, &dumps_again,
                          &retry_on))
        return NULL;
    if (self->ring) {
        PyErr_SetString(PyExc_ValueError, "_bind(): already set up");
        return NULL;
    }
    pyshm_state *st = pyshm_state_of_type(Py_TYPE(self));
    if (!st)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(pools);
    if (!PyObject_TypeCheck(ring, st->RingType) || n < 1 || n > MSG_MAX_CLASSES || oob_min < 1 ||
        !PyCallable_Check(dumps_again) || !PyExceptionClass_Check(retry_on)) {
        PyErr_SetString(PyExc_ValueError, "_bind(): a Ring, 1 to 48 Mempools, a capacity, oob_min >= 1, a callable, "
                                          "an exception class");
        return NULL;
    }
    ShareMemObject *shm = ((RingObject *)ring)->base.shm;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_GET_ITEM(pools, i);
        if (!PyObject_TypeCheck(p, st->MempoolType) || ((MempoolObject *)p)->base.shm != shm ||
            ((MempoolObject *)p)->pool->elt_size != (UINT64_C(128) << i)) {
            PyErr_Format(PyExc_ValueError, "_bind(): pools[%zd] must be a Mempool of %llu-byte blocks in the ring's "
                         "region", i, (unsigned long long)(UINT64_C(128) << i));
            return NULL;
        }
    }
    if (capacity > (UINT64_C(128) << (n - 1))) {
        PyErr_SetString(PyExc_ValueError, "_bind(): the largest class is smaller than the capacity");
        return NULL;
    }
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle)
        return NULL;
    self->dumps = PyObject_GetAttrString(pickle, "dumps");
    self->loads = PyObject_GetAttrString(pickle, "loads");
    self->oob_min = oob_min;
    self->own = new_collector(self);
    PyObject *pickler_type = PyObject_GetAttrString(pickle, "Pickler");
    Py_DECREF(pickle);
    if (self->own && pickler_type) {
        PyObject *args = Py_BuildValue("(Oi)", (PyObject *)self->own, 5);
        PyObject *kwargs = Py_BuildValue("{sO}", "buffer_callback", (PyObject *)self->own);
        if (args && kwargs)
            self->pickler = PyObject_Call(pickler_type, args, kwargs);
        Py_XDECREF(args);
        Py_XDECREF(kwargs);
    }
    Py_XDECREF(pickler_type);
    if (!self->pickler)
        return NULL;
    self->pickler_dump = PyObject_GetAttrString(self->pickler, "dump");
    self->pickler_clear = PyObject_GetAttrString(self->pickler, "clear_memo");
    if (!self->pickler_dump || !self->pickler_clear)
        return NULL;
    self->kw_buffer_callback = Py_BuildValue("(s)", "buffer_callback");
    self->kw_buffers = Py_BuildValue("(s)", "buffers");
    self->protocol = PyLong_FromLong(5);
    if (!self->dumps || !self->loads || !self->kw_buffer_callback || !self->kw_buffers || !self->protocol)
        return NULL;
    self->dumps_again = Py_NewRef(dumps_again);
    self->retry_on = Py_NewRef(retry_on);
    self->shm = (ShareMemObject *)Py_NewRef(shm);
    self->pools = Py_NewRef(pools);
    self->nclasses = n;
    self->capacity = capacity;
    self->oob_min = oob_min;
    self->ring = (RingObject *)Py_NewRef(ring);
    Py_RETURN_NONE;
}

/* _wake_all(): wake every put waiting for a block of a size class (after shutdown, so
 * that they see it at once rather than at their next periodic look). */
static PyObject *queue_wake_all(QueueBaseObject *self, PyObject *Py_UNUSED(unused))
{
    if (check_usable(self) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < self->nclasses; i++)
        pyshm_wait_wake_all(&pool_at(self, i)->pool->free_queue.shared->not_empty);
    Py_RETURN_NONE;
}

static PyObject *queue_close(QueueBaseObject *self, PyObject *Py_UNUSED(unused))
{
    self->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *queue_get_closed(QueueBaseObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static int queue_traverse(QueueBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->shm);
    Py_VISIT(self->ring);
    Py_VISIT(self->pools);
    Py_VISIT(self->dumps);
    Py_VISIT(self->loads);
    Py_VISIT(self->dumps_again);
    Py_VISIT(self->retry_on);
    Py_VISIT(self->spare);
    Py_VISIT(self->pickler);
    Py_VISIT(self->pickler_dump);
    Py_VISIT(self->pickler_clear);
    Py_VISIT(self->own);
    return 0;
}

static int queue_clear(QueueBaseObject *self)
{
    Py_CLEAR(self->ring);
    Py_CLEAR(self->pools);
    Py_CLEAR(self->shm);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->dumps_again);
    Py_CLEAR(self->retry_on);
    Py_CLEAR(self->kw_buffer_callback);
    Py_CLEAR(self->kw_buffers);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->spare);
    Py_CLEAR(self->pickler_dump);
    Py_CLEAR(self->pickler_clear);
    Py_CLEAR(self->pickler);
    Py_CLEAR(self->own);
    return 0;
}

static void queue_dealloc(QueueBaseObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    queue_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_FASTCALL | METH_KEYWORDS,
     "put(obj, block=True, timeout=None): pickle obj now and queue it."},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None): remove and return the oldest object."},
    {"put_nowait", (PyCFunction)queue_put_nowait, METH_O, "put(obj, False)."},
    {"_pickle", (PyCFunction)queue_pickle, METH_O, "put's first half: (pickle, out-of-band buffers or None)."},
    {"_try_send", (PyCFunction)(void (*)(void))queue_try_send, METH_FASTCALL,
     "put's second half, never waiting: None when sent, else what is full (-1 the ring, i class i)."},
    {"get_nowait", (PyCFunction)queue_get_nowait, METH_NOARGS, "get(False)."},
    {"_lend", (PyCFunction)(void (*)(void))queue_lend, METH_FASTCALL | METH_KEYWORDS,
     "_lend(nbytes, block=True, timeout=None): nbytes of the queue's memory, sent without a copy by put()."},
    {"_bind", (PyCFunction)queue_bind, METH_VARARGS, "Set the queue up on its ring and pools (internal)."},
    {"close", (PyCFunction)queue_close, METH_NOARGS, "This handle puts and gets no more."},
    {"_wake_all", (PyCFunction)queue_wake_all, METH_NOARGS, "Wake every put waiting for a block (after shutdown)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"closed", (getter)queue_get_closed, NULL, "Whether close() was called on this handle.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot queue_slots[] = {
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {Py_tp_traverse, queue_traverse},
    {Py_tp_clear, queue_clear},
    {Py_tp_dealloc, queue_dealloc},
    {Py_tp_doc, "The C half of pyshm.Queue (internal): put and get of one message."},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "pyshm._pyshm._QueueBase",
    .basicsize = sizeof(QueueBaseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = queue_slots,
};

static PyTypeObject *collector_type(PyObject *any)
{
    pyshm_state *st = pyshm_state_of_type(Py_TYPE(any));
    return st ? st->CollectorType : NULL;
}

int pyshm_message_module_init(PyObject *module, pyshm_state *st)
{
    st->CollectorType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &collector_spec, NULL);
    if (!st->CollectorType)
        return -1;
    st->QueueBaseType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
    if (!st->QueueBaseType)
        return -1;
    return PyModule_AddType(module, st->QueueBaseType);
}
