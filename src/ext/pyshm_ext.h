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
    PyObject *default_shm; /* ShareMem.instance(), or NULL */
    PyObject *str_release;
} pyshm_state;

typedef struct {
    PyObject_HEAD
    pyshm_state *state;
    struct pyshm_region region;
    Py_ssize_t exports; /* buffers exported in this process */
    int closed;
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
} BlockObject;

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
/* Raise ValueError for a carve that did not fit. */
void pyshm_shm_raise_no_room(ShareMemObject *shm, const char *what, uint64_t needed);

/* block_type.c */
int pyshm_block_module_init(PyObject *module, pyshm_state *st);
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

/* mempool_type.c, ring_type.c */
int pyshm_mempool_module_init(PyObject *module, pyshm_state *st);
int pyshm_ring_module_init(PyObject *module, pyshm_state *st);

/* Context-manager methods every type shares: __enter__ returns self, __exit__ calls
 * self.cleanup(). */
PyObject *pyshm_enter(PyObject *self, PyObject *unused);
PyObject *pyshm_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
