/*
 * pyshm_ext.h - what the binding files share: module state, object layouts, and the one
 * function per concern that more than one file needs, grouped by the file defining it.
 *
 * Ownership between the objects (strong references):
 *
 *   memoryview -> Block -> ShareMem        a live block view keeps its region mapped
 *   Mempool / Ring / RawBuffer -> ShareMem (until dealloc; cleanup() only marks closed)
 *
 * ShareMem counts the buffers it has exported in this process (memoryview(shm), block
 * views, raw buffers) and the calls asleep on it, and refuses to unmap while any is
 * there, as mmap does.
 */
#ifndef PYSHM_EXT_H
#define PYSHM_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "block_ring.h"
#include "errors.h"
#include "mempool.h"
#include "rawbuf.h"
#include "space.h"

#define PYSHM_SPARE_BLOCKS 64

typedef struct {
    PyTypeObject *ShareMemType;
    PyTypeObject *CarvedType; /* the base of the three below */
    PyTypeObject *MempoolType;
    PyTypeObject *RingType;
    PyTypeObject *RawBufferType;
    PyTypeObject *BlockType;
    PyTypeObject *QueueBaseType; /* message.c */
    PyTypeObject *CollectorType;
    PyObject *PyshmError;
    PyObject *ShareMemError;
    PyObject *MempoolError;
    PyObject *RingError;
    PyObject *EmptyError;
    PyObject *FullError;
    PyObject *CorruptionError;
    PyObject *ShutDown;
    PyObject *default_shm;             /* ShareMem.instance(), or NULL */
    PyObject *aio;                     /* the pyshm._aio module, imported at first use */
    PyObject *str_block, *str_timeout; /* interned keyword names, for the fast parser */
    PyObject *str_release;
    PyCFunction memoryview_release; /* memoryview.release's C function, if METH_NOARGS */
    /* Spent Block objects kept for reuse: one is needed for every get and dequeue. */
    PyObject *spare_blocks[PYSHM_SPARE_BLOCKS];
    int spare_block_count;
} pyshm_state;

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    struct pyshm_space space;
    Py_ssize_t exports;     /* buffers exported in this process */
    Py_ssize_t waits;       /* calls asleep on this region in this process ... */
    uint64_t waits_fork_gen; /* ... counted in this fork generation (a child has none of them) */
    int closed;
    PyObject *name;         /* str, or None for an unnamed region */
    PyObject *weakreflist;  /* the package maps each region to one object per process */
    uint64_t next_repair_ns; /* when a waiter next looks for dead processes (waiting.c) */
    /* The pool (region offset) whose free queue last refused a dropped view's block after
     * waiting for room, and when; 0: none. Drops into it soon after try, not wait
     * (block_type.c). */
    uint64_t give_back_refused;
    uint64_t give_back_refused_ns;
} ShareMemObject;

struct pyshm_carved_kind;

/* The common head of Mempool, Ring and RawBuffer objects (carved.c). */
typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    ShareMemObject *shm; /* held until dealloc: a call waiting in another thread may use it */
    const struct pyshm_carved_kind *kind;
    uint64_t offset; /* of the object in the region */
    PyObject *name;  /* str or None */
    int closed;      /* set by cleanup() */
    int waits;       /* calls of this handle asleep right now */
} CarvedObject;

/* What the shared base needs to know of each carved type. */
struct pyshm_carved_kind {
    const char *name;     /* "Mempool" */
    uint32_t object_kind; /* PYSHM_KIND_POOL */
    /* Validate the object at self->offset and fill the type's own handle: 0, or -1 with
     * an exception set. */
    int (*open_at)(CarvedObject *self);
    /* Wake this handle's sleepers (cleanup() while a call waits), or NULL. */
    void (*wake)(CarvedObject *self);
    /* The waitpoint of a side (0: not empty, 1: not full), or NULL if it has none: for
     * the asyncio methods (aio.c). */
    struct pyshm_waitpoint *(*waitpoint)(CarvedObject *self, int side);
};

typedef struct {
    CarvedObject base;
    const struct pyshm_pool *pool; /* the pool table's copy (pool_table.h) */
    uint32_t get_spin_ns;          /* adaptive spin before a get() sleeps */
    uint32_t get_pace_skip;        /* gets that need not look before pacing (pyshm_pace) */
} MempoolObject;

typedef struct {
    CarvedObject base;
    struct pyshm_block_ring ring;
    uint32_t enqueue_spin_ns; /* adaptive spins before enqueue and dequeue sleep */
    uint32_t dequeue_spin_ns;
} RingObject;

/* The exporter behind one block view. Not visible in the module namespace. */
typedef struct {
    PyObject_HEAD
    ShareMemObject *shm;
    const struct pyshm_pool *pool; /* the pool table's copy: lives as long as shm's space */
    uint64_t index;
    uint64_t gen; /* generation this process holds the block at */
    char *data;
    Py_ssize_t length;
    PyObject *view; /* borrowed: the memoryview handed out, NULL once released */
    int exported;   /* set by the one export; a Block is never exported again */
    int given;      /* the block was put back or enqueued through the view */
    int marked;     /* scratch flag: finds a block listed twice in one bulk call */
    int quiet;      /* dropped views give the block back without a warning */
    const void *lent_to;  /* the queue that lent this block (message.c), else NULL */
    Py_ssize_t lent_at;   /* ... and where the lent bytes start in it */
} BlockObject;

/* Save and restore the exception being handled around code that may raise (3.11 has no
 * PyErr_GetRaisedException). */
#if PY_VERSION_HEX >= 0x030C0000
#define PYSHM_SAVE_EXCEPTION(saved) PyObject *saved = PyErr_GetRaisedException()
#define PYSHM_RESTORE_EXCEPTION(saved) PyErr_SetRaisedException(saved)
#else
#define PYSHM_SAVE_EXCEPTION(saved)                                                                                \
    PyObject *saved##_type, *saved##_value, *saved##_tb;                                                           \
    PyErr_Fetch(&saved##_type, &saved##_value, &saved##_tb)
#define PYSHM_RESTORE_EXCEPTION(saved) PyErr_Restore(saved##_type, saved##_value, saved##_tb)
#endif

/* A code already turned into a Python exception (a signal handler raised, or the handle
 * was closed while the call waited). */
#define PYSHM_RAISED (-1000000)
/* How long a put waits for a free queue blocked by another process's unfinished get. */
#define PYSHM_PUT_PATIENCE_NS UINT64_C(200000000)

/* module.c ------------------------------------------------------------------------------ */
pyshm_state *pyshm_state_of_type(PyTypeObject *type);
PyObject *pyshm_enter(PyObject *self, PyObject *unused);
PyObject *pyshm_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* errors.c: the exceptions, and the one table from core codes to them ------------------ */
int pyshm_errors_init(PyObject *module, pyshm_state *st);
/* Raise the exception for a negative core code; `what` names the call ("Ring.dequeue"). */
void pyshm_raise(pyshm_state *st, int rc, const char *what);

/* args.c: every argument of every call is checked here ------------------------------- */
/* An int (operator.index, not bool) in [min, max]: 0, or -1 with TypeError / ValueError
 * naming the argument and the value. */
int pyshm_arg_u64(PyObject *obj, const char *name, uint64_t min, uint64_t max, uint64_t *out);
/* Flags: an int in [0, 2^32) with no bit outside `known` (named in `hint`). */
int pyshm_arg_flags(PyObject *obj, const char *name, uint32_t known, const char *hint, uint32_t *out);
/* An object's name: NULL (no error) for None, else a str of 1 to PYSHM_NAME_MAX UTF-8 bytes. */
int pyshm_arg_name(PyObject *obj, const char **out);
/* A region's name as shm_open wants it ("/name"), new reference; NULL with ValueError. */
PyObject *pyshm_arg_region_name(PyObject *name);

struct pyshm_wait_options {
    int block;
    uint64_t deadline_ns; /* UINT64_MAX: no deadline */
};
/* block= and timeout= (either may be NULL), as queue.Queue reads them. */
int pyshm_arg_wait(PyObject *block, PyObject *timeout, struct pyshm_wait_options *out);
/* Calls of the form f(<up to max_pos positionals>, *, block=..., timeout=...): fills pos[]
 * (NULL where not given) and *opts without building a tuple or a dict. 1 when done, 0
 * when the caller must parse the general way (another keyword, too many positionals),
 * -1 on error. */
int pyshm_parse_wait_fast(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                          Py_ssize_t max_pos, PyObject **pos, struct pyshm_wait_options *opts);
/* The general way: PyArg_ParseTupleAndKeywords for a METH_FASTCALL | METH_KEYWORDS call. */
int pyshm_parse_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *format,
                     char **kwlist, ...);
int pyshm_parse_waiting_slow(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                             const char *fname, char **kwlist, Py_ssize_t npos, Py_ssize_t required,
                             PyObject **pos, struct pyshm_wait_options *opts);
/* f(pos..., *, block=..., timeout=...) with positional names in kwlist (then "block",
 * "timeout"), `required` of them required (npos <= 2). The common calls, positionals
 * only or with block=True / block=False alone, are parsed right here; anything else the
 * general way. */
static inline int pyshm_parse_waiting(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                                      const char *fname, char **kwlist, Py_ssize_t npos, Py_ssize_t required,
                                      PyObject **pos, struct pyshm_wait_options *opts)
{
    if (nargs >= required && nargs <= npos) {
        int block = 0;
        /* The compiler interns keyword names, as the module does str_block. */
        if (kwnames && !(PyTuple_GET_SIZE(kwnames) == 1 && PyTuple_GET_ITEM(kwnames, 0) == st->str_block &&
                         ((block = args[nargs] == Py_True) || args[nargs] == Py_False)))
            return pyshm_parse_waiting_slow(st, args, nargs, kwnames, fname, kwlist, npos, required, pos, opts);
        for (Py_ssize_t i = 0; i < npos; i++)
            pos[i] = i < nargs ? args[i] : NULL;
        opts->block = block;
        opts->deadline_ns = UINT64_MAX;
        return 0;
    }
    return pyshm_parse_waiting_slow(st, args, nargs, kwnames, fname, kwlist, npos, required, pos, opts);
}

/* waiting.c ----------------------------------------------------------------------------- */
/* One try of an operation that may have to wait: its core return code. */
typedef int64_t (*pyshm_attempt_fn)(void *ctx);
/*
 * Gathering, for a call that waits for blocks (Mempool.get: the free queue's consumer
 * side) or for room (Ring.enqueue: the ring's producer side) under backpressure: having
 * found nothing, the waiter looks at the queue's k-th position (k a sixteenth of the
 * capacity, at most 64; more than `need`) and tries again only once that one is ready,
 * or 50 us after it started waiting. Taking each block, or each slot, the moment the
 * other side frees it keeps both processes on the same cache lines (the slot being
 * published or released, the block's words, the next slot of the other queue) and each
 * message then pays for transfers between cores; gathering leaves a gap instead
 * (docs/design.md, section 3). The look writes nothing.
 */
struct pyshm_gather {
    const struct pyshm_ring *ring;
    enum pyshm_ring_side side;
    uint64_t need; /* positions the call needs at once */
};
/* The position a gatherer waits for (and a paced call looks at, below); 0 when the call
 * neither gathers nor is paced: a queue under 32, or a call that needs k or more. */
#define PYSHM_GATHER_MAX 64u
static inline uint64_t pyshm_gather_k(const struct pyshm_gather *g)
{
    uint64_t k = g->ring->capacity / 16 < PYSHM_GATHER_MAX ? g->ring->capacity / 16 : PYSHM_GATHER_MAX;
    return k > g->need ? k : 0;
}
/* Try until attempt() returns something other than `again`, spinning for up to
 * *spin_budget ns (adapted here) then sleeping on `point`, as opts allow, gathering first
 * if `gather` is not NULL. Returns the last code, `again` after the deadline, or
 * PYSHM_RAISED (exception set: a signal handler raised, or `handle` was closed
 * meanwhile). attempt() runs with the GIL held. For a call whose first try found
 * nothing (wait_until makes that try). */
int64_t pyshm_wait_more(ShareMemObject *shm, CarvedObject *handle, struct pyshm_waitpoint *point,
                        uint32_t *spin_budget, int64_t again, pyshm_attempt_fn attempt, void *ctx,
                        const struct pyshm_wait_options *opts, const struct pyshm_gather *gather);
/* The first try here, inlined into the caller with its attempt function: a call that
 * need not wait costs no more than the attempt; pyshm_wait_more does the waiting. */
static inline int64_t pyshm_wait_until(ShareMemObject *shm, CarvedObject *handle, struct pyshm_waitpoint *point,
                                       uint32_t *spin_budget, int64_t again, pyshm_attempt_fn attempt, void *ctx,
                                       const struct pyshm_wait_options *opts, const struct pyshm_gather *gather)
{
    int64_t rc = attempt(ctx);
    if (rc != again || !opts->block)
        return rc;
    return pyshm_wait_more(shm, handle, point, spin_budget, again, attempt, ctx, opts, gather);
}
/*
 * Pacing, for a producer that outruns its consumers without waiting for them (a loop of
 * get() calls that do not wait): a get() of one block that leaves the pool with fewer
 * free blocks than a gatherer waits for (the free queue's k-th position not ready)
 * idles for about 40 ns before it returns. Such a producer would only have found the
 * pool empty again sooner; paced, it stays some k blocks behind its consumers' put()
 * instead of taking each block the moment it comes back (docs/design.md, section 3).
 * The look writes nothing; pools under 32 blocks are not paced. A get() that waits
 * gathers instead, and enqueue() is not paced: measured, that only slowed W1 down.
 */
void pyshm_pace_idle(void);
/* After a get() of one block from g's queue. *skip, the handle's: gets left before the
 * next look (a look that finds the k-th block free means at least k / 2 free for the
 * next k / 2 gets of this handle, unless other processes take some). */
static inline void pyshm_pace(const struct pyshm_gather *g, uint32_t *skip)
{
    if (*skip) {
        --*skip;
        return;
    }
    uint64_t k = pyshm_gather_k(g);
    if (!k)
        return;
    if (pyshm_ring_ready_at(g->ring, g->side, k))
        *skip = (uint32_t)(k / 2);
    else
        pyshm_pace_idle();
}
/* Count (delta 1) or uncount (-1) a call that runs without the GIL on `shm` (and on
 * `handle`, if not NULL): cleanup() of the region refuses while one is counted. */
void pyshm_waits_add(ShareMemObject *shm, CarvedObject *handle, int delta);

/* aio.c: what the asyncio methods need from C ------------------------------------------ */
int pyshm_aio_module_init(PyObject *module);
/* Call pyshm._aio.<fname>(self, *args, **kwargs): the coroutine of an *_async method. */
PyObject *pyshm_aio_call(const char *fname, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames);

/* shm_type.c ---------------------------------------------------------------------------- */
int pyshm_shm_module_init(PyObject *module, pyshm_state *st);
/* New region object with `size` bytes for objects, registered (pyshm.shm). */
ShareMemObject *pyshm_shm_create(pyshm_state *st, uint64_t size);
/* The region to carve into: `shm` if given, else the default one; NULL (no error set)
 * when neither is there. New reference. */
ShareMemObject *pyshm_shm_resolve(pyshm_state *st, PyObject *shm);
int pyshm_shm_raise_closed(const char *what);
/* 0 if usable, else -1 with ValueError naming `what`. */
static inline int pyshm_shm_check_open(ShareMemObject *shm, const char *what)
{
    return shm->closed ? pyshm_shm_raise_closed(what) : 0;
}
struct pyshm_member *pyshm_shm_join(ShareMemObject *shm, const char *what);
/* This process's membership of the region, joining if needed: NULL with an exception. */
static inline struct pyshm_member *pyshm_shm_member(ShareMemObject *shm, const char *what)
{
    if (pyshm_member_is_current(&shm->space.self))
        return &shm->space.self;
    return pyshm_shm_join(shm, what);
}
/* pyshm_pool_put with Mempool.put's patience, for a member of shm's region. A free queue
 * that stays blocked past the patience may have a slot claimed by a process that died:
 * then repair, and try once more. 0 or the core's error (no exception set). */
int pyshm_shm_pool_put(ShareMemObject *shm, const struct pyshm_pool *p, struct pyshm_member *m,
                       const struct pyshm_block *blocks, uint64_t n);
/* Raise ValueError for a carve that did not fit. */
void pyshm_shm_raise_no_room(ShareMemObject *shm, const char *what, uint64_t needed);
/* A carve's failure as the exception a user expects. */
void pyshm_shm_raise_carve(ShareMemObject *shm, int rc, const char *what, uint64_t needed, PyObject *name);

/* inspect.c: ShareMem.info() and ShareMem.inspect(name), read-only ------------------- */
PyObject *pyshm_shm_info(PyObject *self, PyObject *unused);
PyObject *pyshm_shm_inspect(PyObject *type, PyObject *name);

/* carved.c: the shared base of Mempool, Ring and RawBuffer ------------------------------ */
int pyshm_carved_module_init(PyObject *module, pyshm_state *st);
/* Make a carved type, subclass of the base. */
PyTypeObject *pyshm_carved_type(PyObject *module, pyshm_state *st, PyType_Spec *spec);
/* A new handle of `type` on the object at `offset` of shm (validated by the kind's
 * open_at). Takes the reference to shm. */
PyObject *pyshm_carved_open(PyTypeObject *type, ShareMemObject *shm, uint64_t offset);
/* The region a constructor carves into (shm= or the default one), checked open; or
 * NULL with an exception (`missing` says what to do when there is neither). New
 * reference. */
ShareMemObject *pyshm_carved_region(pyshm_state *st, PyObject *shm, const char *what, const char *missing);
int pyshm_carved_raise_closed(CarvedObject *self);
/* 0 if the handle and its region are open, else -1 with ValueError. */
static inline int pyshm_carved_check_open(CarvedObject *self)
{
    return self->closed || self->shm->closed ? pyshm_carved_raise_closed(self) : 0;
}
/* The kind of a carved type. */
const struct pyshm_carved_kind *pyshm_carved_kind_of(pyshm_state *st, PyTypeObject *type);
void pyshm_carved_dealloc(PyObject *self);

/* mempool_type.c, ring_type.c, rawbuf_type.c ------------------------------------------------ */
int pyshm_mempool_module_init(PyObject *module, pyshm_state *st);
int pyshm_ring_module_init(PyObject *module, pyshm_state *st);
int pyshm_rawbuf_module_init(PyObject *module, pyshm_state *st);
extern const struct pyshm_carved_kind pyshm_mempool_kind, pyshm_ring_kind, pyshm_rawbuf_kind;

/* block_type.c -------------------------------------------------------------------------- */
int pyshm_block_module_init(PyObject *module, pyshm_state *st);
/* Free the spare Block objects (module teardown). */
void pyshm_block_free_spares(pyshm_state *st);
/* A view of one block just taken (length 0: its elt_size), or NULL with the block given
 * back. */
PyObject *pyshm_block_view(pyshm_state *st, ShareMemObject *shm, const struct pyshm_block *taken, Py_ssize_t length);
/* The views of blocks just taken (as a list, or the one view with `single`); blocks that
 * cannot be wrapped go back to their pools. `length`: bytes per view, 0 for the block's
 * elt_size. */
PyObject *pyshm_block_views(pyshm_state *st, ShareMemObject *shm, const struct pyshm_block *taken, Py_ssize_t n,
                            Py_ssize_t length, int single);
/* The Blocks behind the views in `views` (a list or tuple; a tuple of them is returned
 * in *keep, holding them alive for the call), each a live, unshared block view of `shm`
 * handed out by get()/dequeue(), none listed twice. `op` names the call. Fills blocks[]
 * (borrowed) and core[] (the blocks as the core wants them). -1 with an exception. */
int pyshm_blocks_from_views(pyshm_state *st, ShareMemObject *shm, PyObject *views, const char *op,
                            BlockObject ***blocks, struct pyshm_block **core, PyObject **keep, Py_ssize_t *n);
/* The one view of put(view) / enqueue(view), checked the same way. */
BlockObject *pyshm_block_from_view(pyshm_state *st, ShareMemObject *shm, PyObject *view, const char *op,
                                   Py_ssize_t item);
/* After a successful put or enqueue: mark the blocks given and release their views. */
/* 0 if nothing but the caller's view (and `pins` exports of it the caller took) uses the
 * block, else -1 with BufferError naming `op` (and `item` when >= 0). */
int pyshm_block_check_alone(BlockObject *block, Py_ssize_t pins, const char *op, Py_ssize_t item);
int pyshm_blocks_given(pyshm_state *st, BlockObject **blocks, Py_ssize_t n);
/* _release_when_dropped(view): the block of a handed-out view goes back quietly once its
 * last view or array is gone. */
PyObject *pyshm_block_release_when_dropped(PyObject *module, PyObject *view);
/* The Block behind a handed-out view (slices and arrays of it may exist), or NULL with
 * an exception. */
BlockObject *pyshm_block_of_view(pyshm_state *st, PyObject *view, const char *op);

/* message.c: the object queue's hot path (pyshm.Queue) -------------------------------- */
int pyshm_message_module_init(PyObject *module, pyshm_state *st);

#endif
