/* shm_type.c - ShareMem: a shared-memory region, and this process's handle on it. */
#include "pyshm_ext.h"

#include <errno.h>
#include <structmember.h>

#include "liveness.h"
#include "repair.h"

static ShareMemObject *shm_alloc(pyshm_state *st, PyObject *name)
{
    ShareMemObject *self = PyObject_New(ShareMemObject, st->ShareMemType);
    if (!self)
        return NULL;
    self->state = st;
    self->exports = 0;
    self->waits = 0;
    self->waits_fork_gen = 0;
    self->closed = 1; /* until mapped, so dealloc has nothing to unmap */
    self->name = Py_NewRef(name ? name : Py_None);
    self->weakreflist = NULL;
    self->next_repair_ns = 0;
    self->give_back_refused = 0;
    self->give_back_refused_ns = 0;
    memset(&self->space, 0, sizeof(self->space));
    return self;
}

static void raise_open_error(ShareMemObject *self, int rc, uint64_t size, uint64_t room)
{
    if (size == 0 && (rc == -EINVAL || rc == -EISDIR))
        rc = -PYSHM_ENOTREGION; /* attaching something that is no region (a directory...) */
    if (rc == -EINVAL)
        PyErr_Format(PyExc_ValueError, "ShareMem size must be between %llu and %llu bytes, got %llu",
                     (unsigned long long)PYSHM_MIN_REGION_SIZE, (unsigned long long)PYSHM_MAX_REGION_SIZE,
                     (unsigned long long)size);
    else if (rc == -ENOSPC) {
        PyObject *msg = PyUnicode_FromFormat(
            "no room for a ShareMem of %llu bytes named %S: the file system behind /dev/shm has %llu bytes free "
            "(a named region reserves all its memory at creation; an unnamed region, ShareMem(size), is not "
            "bound by /dev/shm)",
            (unsigned long long)pyshm_region_file_size(size), self->name, (unsigned long long)room);
        if (msg) {
            PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", ENOSPC, msg);
            if (exc) {
                PyErr_SetObject(PyExc_OSError, exc);
                Py_DECREF(exc);
            }
            Py_DECREF(msg);
        }
    } else if (rc == -ENOENT || rc == -EEXIST || rc == -EACCES) {
        errno = -rc;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->name);
    } else
        pyshm_raise(self->state, rc, "ShareMem");
}

/* Create (size given) or attach (size 0) a region; named if name is not NULL; or map fd. */
static ShareMemObject *shm_open_region(pyshm_state *st, uint64_t size, PyObject *name, int fd)
{
    PyObject *posix = NULL;
    if (name && !(posix = pyshm_arg_region_name(name)))
        return NULL;
    ShareMemObject *self = shm_alloc(st, posix);
    Py_XDECREF(posix);
    if (!self)
        return NULL;
    const char *cname = posix ? PyUnicode_AsUTF8(self->name) : NULL;
    int rc;
    uint64_t room = 0;
    Py_BEGIN_ALLOW_THREADS
    if (fd >= 0)
        rc = pyshm_space_attach_fd(&self->space, fd, NULL);
    else if (size == 0)
        rc = pyshm_space_attach_named(&self->space, cname);
    else if (cname)
        rc = pyshm_space_create_named(&self->space, size, cname, &room);
    else
        rc = pyshm_space_create(&self->space, size);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        raise_open_error(self, rc, size, room);
        Py_DECREF(self);
        return NULL;
    }
    self->closed = 0;
    return self;
}

/* Pass a fresh region object through pyshm.shm.<hook> (its registry of the one object
 * mapping each region in this process). Consumes `fresh`; returns what the hook does. */
static PyObject *shm_registry(const char *hook, ShareMemObject *fresh)
{
    if (!fresh)
        return NULL;
    PyObject *shm_module = PyImport_ImportModule("pyshm.shm");
    PyObject *res = shm_module ? PyObject_CallMethod(shm_module, hook, "O", (PyObject *)fresh) : NULL;
    Py_XDECREF(shm_module);
    Py_DECREF(fresh);
    return res;
}

ShareMemObject *pyshm_shm_create(pyshm_state *st, uint64_t size)
{
    return (ShareMemObject *)shm_registry("_register", shm_open_region(st, size, NULL, -1));
}

int pyshm_shm_raise_closed(const char *what)
{
    PyErr_Format(PyExc_ValueError, "%s: its ShareMem was cleaned up", what);
    return -1;
}

struct pyshm_member *pyshm_shm_join(ShareMemObject *shm, const char *what)
{
    int rc = pyshm_space_join(&shm->space);
    if (rc < 0) {
        pyshm_raise(shm->state, rc, what);
        return NULL;
    }
    return &shm->space.self;
}

int pyshm_shm_pool_put(ShareMemObject *shm, const struct pyshm_pool *p, struct pyshm_member *m,
                       const struct pyshm_block *blocks, uint64_t n)
{
    int rc = pyshm_pool_put(p, m, blocks, n, PYSHM_PUT_PATIENCE_NS);
    if (rc == -EAGAIN) {
        struct pyshm_repair_report report;
        if (pyshm_repair(&shm->space, 1, &report) == 0 && report.entries + report.released > 0)
            rc = pyshm_pool_put(p, m, blocks, n, PYSHM_PUT_PATIENCE_NS);
    }
    return rc;
}

ShareMemObject *pyshm_shm_resolve(pyshm_state *st, PyObject *shm)
{
    if (shm && shm != Py_None) {
        if (!Py_IS_TYPE(shm, st->ShareMemType)) {
            PyErr_Format(PyExc_TypeError, "shm must be a ShareMem, not %.100s", Py_TYPE(shm)->tp_name);
            return NULL;
        }
        return (ShareMemObject *)Py_NewRef(shm);
    }
    if (st->default_shm && !((ShareMemObject *)st->default_shm)->closed)
        return (ShareMemObject *)Py_NewRef(st->default_shm);
    return NULL;
}

void pyshm_shm_raise_no_room(ShareMemObject *shm, const char *what, uint64_t needed)
{
    uint64_t carved = pyshm_region_carved(&shm->space.region);
    PyErr_Format(PyExc_ValueError, "%s needs %llu bytes of the ShareMem, which has %llu of %llu bytes left", what,
                 (unsigned long long)needed, (unsigned long long)(shm->space.region.size - carved),
                 (unsigned long long)shm->space.region.size);
}

void pyshm_shm_raise_carve(ShareMemObject *shm, int rc, const char *what, uint64_t needed, PyObject *name)
{
    if (rc == -ENOSPC)
        pyshm_shm_raise_no_room(shm, what, needed);
    else if (rc == -EEXIST)
        PyErr_Format(PyExc_ValueError, "this ShareMem already has an object named %R", name);
    else
        pyshm_raise(shm->state, rc, what);
}

static PyObject *shm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "name", NULL};
    PyObject *size_obj, *name = Py_None;
    uint64_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:ShareMem", kwlist, &size_obj, &name) ||
        pyshm_arg_u64(size_obj, "ShareMem size", PYSHM_MIN_REGION_SIZE, PYSHM_MAX_REGION_SIZE, &size) < 0)
        return NULL;
    /* Registered at once, so that attaching or receiving it again here, in this process
     * or in a fork child, gives back this object. */
    return shm_registry("_register", shm_open_region(pyshm_state_of_type(type), size, name == Py_None ? NULL : name, -1));
}

static PyObject *shm_attach(PyTypeObject *type, PyObject *name)
{
    return shm_registry("_adopt", shm_open_region(pyshm_state_of_type(type), 0, name, -1));
}

static PyObject *shm_from_fd(PyTypeObject *type, PyObject *fd_obj)
{
    int fd = PyObject_AsFileDescriptor(fd_obj);
    if (fd < 0)
        return NULL;
    return (PyObject *)shm_open_region(pyshm_state_of_type(type), 0, NULL, fd);
}

static void shm_dealloc(ShareMemObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (!self->closed)
        pyshm_space_close(&self->space);
    Py_XDECREF(self->name);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *shm_unlink(ShareMemObject *self, PyObject *Py_UNUSED(unused))
{
    if (self->name == Py_None) {
        PyErr_SetString(PyExc_ValueError, "an unnamed ShareMem has no name to unlink");
        return NULL;
    }
    int rc = pyshm_region_unlink(PyUnicode_AsUTF8(self->name));
    if (rc < 0) {
        errno = -rc;
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->name);
    }
    Py_RETURN_NONE;
}

static PyObject *shm_fileno(ShareMemObject *self, PyObject *Py_UNUSED(unused))
{
    if (pyshm_shm_check_open(self, "ShareMem") < 0)
        return NULL;
    if (self->space.region.fd < 0) {
        PyErr_SetString(PyExc_ValueError, "this ShareMem has no file descriptor (anonymous mapping)");
        return NULL;
    }
    return PyLong_FromLong(self->space.region.fd);
}

/* Pickling policy lives in pyshm/shm.py, next to the multiprocessing reducer. */
static PyObject *shm_reduce(ShareMemObject *self, PyObject *Py_UNUSED(unused))
{
    PyObject *shm_module = PyImport_ImportModule("pyshm.shm");
    if (!shm_module)
        return NULL;
    PyObject *res = PyObject_CallMethod(shm_module, "_reduce_for_pickle", "O", (PyObject *)self);
    Py_DECREF(shm_module);
    return res;
}

/* Calls asleep on the region in this process: a fork child has none of its parent's. */
static Py_ssize_t waits_here(ShareMemObject *self)
{
    return self->waits_fork_gen == pyshm_fork_generation() ? self->waits : 0;
}

static PyObject *shm_cleanup(ShareMemObject *self, PyObject *Py_UNUSED(unused))
{
    if (self->closed)
        Py_RETURN_NONE;
    Py_ssize_t waits = waits_here(self);
    if (self->exports > 0 || waits > 0) {
        if (self->exports > 0)
            PyErr_Format(PyExc_BufferError,
                         "cannot clean up ShareMem: %zd view(s) into it (block views, RawBuffer exports or "
                         "memoryview(shm)) are still alive in this process; put back, enqueue or release them first",
                         self->exports);
        else
            PyErr_Format(PyExc_BufferError,
                         "cannot clean up ShareMem: %zd call(s) in other threads of this process are waiting on "
                         "its pools or rings; let them finish, or shut the rings down first",
                         waits);
        return NULL;
    }
    /* Mark closed before unmapping, as mmap does: nothing can reach the memory after. */
    struct pyshm_space space = self->space;
    self->closed = 1;
    memset(&self->space, 0, sizeof(self->space));
    self->space.region.fd = -1;
    pyshm_space_close(&space);
    Py_RETURN_NONE;
}

static PyObject *shm_instance(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    PyObject *size_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:instance", kwlist, &size_obj))
        return NULL;
    pyshm_state *st = pyshm_state_of_type(type);
    int have = st->default_shm && !((ShareMemObject *)st->default_shm)->closed;
    if (have) {
        if (size_obj != Py_None) {
            PyErr_SetString(st->ShareMemError, "the default ShareMem is already initialised");
            return NULL;
        }
        return Py_NewRef(st->default_shm);
    }
    if (size_obj == Py_None) {
        PyErr_SetString(st->ShareMemError, "no default ShareMem yet: call init_shm(size) first");
        return NULL;
    }
    uint64_t size;
    if (pyshm_arg_u64(size_obj, "ShareMem size", PYSHM_MIN_REGION_SIZE, PYSHM_MAX_REGION_SIZE, &size) < 0)
        return NULL;
    ShareMemObject *shm = pyshm_shm_create(st, size);
    if (!shm)
        return NULL;
    Py_XSETREF(st->default_shm, (PyObject *)shm);
    return Py_NewRef(shm);
}

static PyObject *shm_get_size(ShareMemObject *self, void *Py_UNUSED(closure))
{
    if (pyshm_shm_check_open(self, "ShareMem") < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->space.region.size);
}

static PyObject *shm_get_free(ShareMemObject *self, void *Py_UNUSED(closure))
{
    if (pyshm_shm_check_open(self, "ShareMem") < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->space.region.size - pyshm_region_carved(&self->space.region));
}

static PyObject *shm_get_closed(ShareMemObject *self, void *Py_UNUSED(closure)) { return PyBool_FromLong(self->closed); }

static PyObject *shm_get_name(ShareMemObject *self, void *Py_UNUSED(closure)) { return Py_NewRef(self->name); }

static PyMemberDef shm_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(ShareMemObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *shm_repr(ShareMemObject *self)
{
    if (self->closed)
        return PyUnicode_FromString("<pyshm.ShareMem closed>");
    if (self->name != Py_None)
        return PyUnicode_FromFormat("<pyshm.ShareMem name=%R size=%llu>", self->name,
                                    (unsigned long long)self->space.region.size);
    return PyUnicode_FromFormat("<pyshm.ShareMem size=%llu>", (unsigned long long)self->space.region.size);
}

/* The whole region, read-only: pyshm's own header, member table and objects are there,
 * and writing them would break pools and rings (RawBuffer is the writable kind). */
static int shm_getbuffer(ShareMemObject *self, Py_buffer *view, int flags)
{
    if (pyshm_shm_check_open(self, "ShareMem") < 0)
        return -1;
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError,
                        "memoryview(shm) is read-only: pyshm's own structures are in it; carve a "
                        "pyshm.RawBuffer for raw shared bytes");
        return -1;
    }
    Py_ssize_t length = (Py_ssize_t)pyshm_region_file_size(self->space.region.size);
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->space.region.base, length, 1, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void shm_releasebuffer(ShareMemObject *self, Py_buffer *Py_UNUSED(view)) { self->exports--; }

static PyMethodDef shm_methods[] = {
    {"cleanup", (PyCFunction)shm_cleanup, METH_NOARGS,
     "cleanup($self, /)\n--\n\nUnmap the region in this process. BufferError while views into it are "
     "alive here or calls wait on it in other threads."},
    {"close", (PyCFunction)shm_cleanup, METH_NOARGS, "close($self, /)\n--\n\nAlias of cleanup()."},
    {"attach", (PyCFunction)shm_attach, METH_O | METH_CLASS,
     "attach($cls, name, /)\n--\n\nOpen the named region another process created."},
    {"_from_fd", (PyCFunction)shm_from_fd, METH_O | METH_CLASS,
     "Map the region in a file descriptor (taken over). Used when unpickling."},
    {"unlink", (PyCFunction)shm_unlink, METH_NOARGS,
     "unlink($self, /)\n--\n\nRemove the region's name; processes that have it mapped keep using it."},
    {"fileno", (PyCFunction)shm_fileno, METH_NOARGS,
     "fileno($self, /)\n--\n\nThe file descriptor behind the region."},
    {"info", pyshm_shm_info, METH_NOARGS,
     "info($self, /)\n--\n\nWhat the region holds, as a dict: size, free, layout_version, name, members "
     "(index, pid, alive, holds, announcing, ...) and objects (kind, name, offset, and per kind their counts). "
     "Read without joining the member table; alive is None where it cannot be told."},
    {"inspect", pyshm_shm_inspect, METH_O | METH_CLASS,
     "inspect($cls, name, /)\n--\n\ninfo() of the named region, mapped read-only for the call: nothing in it "
     "changes, no ShareMem object is made."},
    {"__reduce__", (PyCFunction)shm_reduce, METH_NOARGS, NULL},
    {"instance", (PyCFunction)(void (*)(void))shm_instance, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "instance($cls, size=None)\n--\n\nThe process-wide default ShareMem, created by the first call with a size."},
    {"__enter__", pyshm_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pyshm_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef shm_getset[] = {
    {"size", (getter)shm_get_size, NULL, "Bytes for pools, rings and raw buffers.", NULL},
    {"free", (getter)shm_get_free, NULL, "Bytes not carved yet.", NULL},
    {"closed", (getter)shm_get_closed, NULL, "True after cleanup().", NULL},
    {"name", (getter)shm_get_name, NULL, "The region's name (\"/name\"), or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot shm_slots[] = {
    {Py_tp_new, shm_new},
    {Py_tp_dealloc, shm_dealloc},
    {Py_tp_repr, shm_repr},
    {Py_tp_methods, shm_methods},
    {Py_tp_getset, shm_getset},
    {Py_tp_members, shm_members},
    {Py_bf_getbuffer, shm_getbuffer},
    {Py_bf_releasebuffer, shm_releasebuffer},
    {Py_tp_doc, "ShareMem(size, name=None)\n--\n\n"
                "A region of shared memory with size bytes for pools, rings and raw buffers.\n\n"
                "Unnamed, it is an anonymous memory file that fork children inherit and\n"
                "multiprocessing passes to any child; named, POSIX shared memory /name that any\n"
                "process of the same user can attach. memoryview(shm) is a read-only view of the\n"
                "whole region."},
    {0, NULL},
};

static PyType_Spec shm_spec = {
    .name = "pyshm.ShareMem",
    .basicsize = sizeof(ShareMemObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = shm_slots,
};

int pyshm_shm_module_init(PyObject *module, pyshm_state *st)
{
    st->ShareMemType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &shm_spec, NULL);
    if (!st->ShareMemType)
        return -1;
    return PyModule_AddType(module, st->ShareMemType);
}
