/*
 * pyshm_ext.h - what the binding files share: module state, object layouts, and the
 * one function per concern that more than one Python type needs.
 *
 * Ownership between the objects (strong references):
 *
 *   memoryview -> Block -> ShareMem        a live block view keeps its region mapped
 *   Mempool -> ShareMem,  Ring -> ShareMem
 *
 * ShareMem counts the buffers it has exported in this process (memoryview(shm) and
 * every block view) and refuses to unmap while any is alive, as mmap does.
 */
#ifndef PYSHM_EXT_H
#define PYSHM_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "block_ring.h"
#include "mempool.h"
#include "region.h"

#define PYSHM_SPARE_BLOCKS 64

typedef struct {
    PyTypeObject *ShareMemType;
    PyTypeObject *MempoolType;
    PyTypeObject *RingType;
    PyTypeObject *BlockType;
    PyObject *PyshmError;
    PyObject *ShareMemError;
    PyObject *MempoolError;
    PyObject *RingError;
    PyObject *EmptyError;
    PyObject *FullError;
    PyObject *CorruptionError;
    PyObject *ShutDown;
    PyObject *default_shm; /* ShareMem.instance(), or NULL */
    PyObject *str_release;
    PyObject *str_block, *str_timeout; /* interned keyword names, for the fast parser */
    PyCFunction memoryview_release; /* memoryview.release's C function, if METH_NOARGS */
    /* Spent Block objects kept for reuse: one is needed for every get and dequeue. */
    PyObject *spare_blocks[PYSHM_SPARE_BLOCKS];
    int spare_block_count;
} pyshm_state;

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    struct pyshm_region region;
    Py_ssize_t exports; /* buffers exported in this process, and waits under way */
    int closed;
    PyObject *name;        /* str, or None for an unnamed region */
    PyObject *weakreflist; /* the package maps each region to one object per process */
    uint64_t next_repair_ns; /* when a waiter next looks for dead processes (waiting.c) */
} ShareMemObject;

/* The exporter behind one block view. Not visible in the module namespace. */
typedef struct {
    PyObject_HEAD
    ShareMemObject *shm;
    size_t pool_slot; /* index into shm->region.pools */
    uint64_t index;
    uint64_t gen; /* generation this process holds the block at */
    char *data;
    Py_ssize_t length;
    PyObject *view; /* borrowed: the memoryview handed out, NULL once released */
    int exported;   /* set by the one export; a Block is never exported again */
    int marked;     /* scratch flag: finds a block listed twice in one bulk call */
} BlockObject;

/* An error that has already set its Python exception (a signal handler raised). */
#define PYSHM_INTERRUPTED (-1000000)

/* waiting.c */
struct pyshm_wait_options {
    int block;
    uint64_t deadline_ns; /* UINT64_MAX: no deadline */
};
/* From the block= and timeout= arguments (either may be NULL), as queue.Queue reads them. */
int pyshm_wait_options(PyObject *block, PyObject *timeout, struct pyshm_wait_options *out);
/* PyArg_ParseTupleAndKeywords for a METH_FASTCALL | METH_KEYWORDS call: the slow path
 * of methods whose common call has no keywords. */
/* Calls of the form f(<up to max_pos positionals>, *, block=..., timeout=...): fills pos[]
 * (NULL where not given) and *opts without building a tuple or a dict. 1 when done, 0
 * when the caller must parse the general way (another keyword, too many positionals),
 * -1 on error. */
int pyshm_parse_wait_fast(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                          Py_ssize_t max_pos, PyObject **pos, struct pyshm_wait_options *opts);
/* Calls of the form f(n, *, block=..., timeout=...) (get_many, dequeue_many): the fast
 * parser when it can, else the general one with `format` ("n|$OO:name") and kwlist. */
int pyshm_parse_counted(pyshm_state *st, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                        const char *format, char **kwlist, Py_ssize_t *n, struct pyshm_wait_options *opts);
int pyshm_parse_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *format,
                     char **kwlist, ...);
/* One try of an operation that may have to wait: its core return code. */
typedef int (*pyshm_attempt_fn)(void *ctx);
/* Try until attempt() returns something other than `again`, sleeping on `point` between
 * tries if opts allow, after spinning for up to *spin_budget ns (adapted here); returns the last code, `again` after the deadline, or
 * PYSHM_INTERRUPTED when a signal handler raised. attempt() runs with the GIL held. */
int pyshm_wait_until(ShareMemObject *shm, struct pyshm_waitpoint *point, uint32_t *spin_budget, int again,
                     pyshm_attempt_fn attempt, void *ctx, const struct pyshm_wait_options *opts);

/* module.c */
pyshm_state *pyshm_state_of_type(PyTypeObject *type);
/* Turn a negative core error into the Python exception; `what` names the object. */
void pyshm_raise(pyshm_state *st, int rc, const char *what);
/* A positive integer argument; TypeError for non-integers (bool included), ValueError
 * below `minimum`. 0 or -1 with an exception set. */
int pyshm_uint64_arg(PyObject *obj, const char *name, uint64_t minimum, uint64_t *out);

/* shm_type.c */
int pyshm_shm_module_init(PyObject *module, pyshm_state *st);
/* New region object of `size` bytes. */
ShareMemObject *pyshm_shm_create(pyshm_state *st, uint64_t size);
/* The region to carve into: `shm` if given, else the default one; NULL (no error set)
 * when neither is there. New reference. */
ShareMemObject *pyshm_shm_resolve(pyshm_state *st, PyObject *shm);
/* 0 if usable, else -1 with ValueError naming `what`. */
int pyshm_shm_check_open(ShareMemObject *shm, const char *what);
/* The name stored in the header of the object at `offset`, or None. New reference. */
PyObject *pyshm_object_name(const struct pyshm_region *r, uint64_t offset);
/* Raise ValueError for a carve that did not fit. */
void pyshm_shm_raise_no_room(ShareMemObject *shm, const char *what, uint64_t needed);

/* block_type.c */
int pyshm_block_module_init(PyObject *module, pyshm_state *st);
/* Free the spare Block objects (module teardown). */
void pyshm_block_free_spares(pyshm_state *st);
/* Wrap a block this process now holds in a new writable memoryview of `length` bytes.
 * On failure the block goes back to its pool and NULL is returned. */
PyObject *pyshm_block_view_new(pyshm_state *st, ShareMemObject *shm, size_t pool_slot, uint64_t index,
                               uint64_t gen, Py_ssize_t length);
/* The Block behind `view` if it is a live, unshared block view of `shm` handed out by
 * get()/dequeue(); else NULL with TypeError, ValueError or BufferError. `op` names the
 * calling method for messages. */
BlockObject *pyshm_block_from_view(pyshm_state *st, ShareMemObject *shm, PyObject *view, const char *op);
/* Release the view after its block was handed back: any later access raises ValueError. */
int pyshm_block_release_view(pyshm_state *st, BlockObject *block);
/* A tuple of the items of the list or tuple `views`: it keeps every view alive for the
 * whole call, even if another thread empties the caller's list meanwhile. */
PyObject *pyshm_views_tuple(PyObject *views, const char *op);
/* pyshm_block_from_view for every item of a tuple from pyshm_views_tuple, refusing a
 * block listed twice. Fills blocks[] (borrowed). */
int pyshm_blocks_from_views(pyshm_state *st, ShareMemObject *shm, PyObject *views, const char *op,
                            BlockObject **blocks);
/* The views of blocks just taken, as a new list; blocks that cannot be wrapped go back
 * to their pools. */
PyObject *pyshm_block_view_list(pyshm_state *st, ShareMemObject *shm, const struct pyshm_taken_block *taken,
                                Py_ssize_t n);
/* Release the views of blocks handed back by a bulk call. */
int pyshm_block_release_views(pyshm_state *st, BlockObject **blocks, Py_ssize_t n);

/* An object's name argument: NULL (no error) for None, else a str of 1 to
 * PYSHM_NAME_MAX UTF-8 bytes; -1 with ValueError/TypeError otherwise. */
int pyshm_name_arg(PyObject *obj, const char **out);
/* The region offset of the object `name` of `kind` in shm, or -1 with ValueError
 * ("no Mempool named ...", "... is a Ring, not a Mempool"). */
int pyshm_find_named(ShareMemObject *shm, PyObject *name, uint32_t kind, uint64_t *offset);

/* mempool_type.c, ring_type.c */
int pyshm_mempool_module_init(PyObject *module, pyshm_state *st);
int pyshm_ring_module_init(PyObject *module, pyshm_state *st);

/* Context-manager methods every type shares: __enter__ returns self, __exit__ calls
 * self.cleanup(). */
PyObject *pyshm_enter(PyObject *self, PyObject *unused);
PyObject *pyshm_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
