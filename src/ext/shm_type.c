/* shm_type.c - ShareMem: a shared-memory region, exporting the buffer protocol. */
#include "pyshm_ext.h"

#include <structmember.h>

static ShareMemObject *shm_alloc(pyshm_state *st, PyObject *name)
{
    ShareMemObject *self = PyObject_New(ShareMemObject, st->ShareMemType);
    if (!self)
        return NULL;
    self->state = st;
    self->exports = 0;
    self->closed = 1; /* until mapped, so dealloc has nothing to unmap */
    self->name = Py_NewRef(name ? name : Py_None);
    self->weakreflist = NULL;
    self->next_repair_ns = 0;
    memset(&self->region, 0, sizeof(self->region));
    self->region.fd = -1;
    return self;
}

/* "/name" for shm_open; NULL with ValueError for a name it cannot take. */
static PyObject *posix_name(PyObject *name)
{
    const char *utf8;
    if (pyshm_name_arg(name, &utf8) < 0)
        return NULL;
    const char *bare = utf8[0] == '/' ? utf8 + 1 : utf8;
    if (!*bare || strchr(bare, '/')) {
        PyErr_Format(PyExc_ValueError, "region name %R: use letters, digits, '-', '_' and '.', no '/'", name);
        return NULL;
    }
    return PyUnicode_FromFormat("/%s", bare);
}

/* Create (size given) or attach (size 0) a region; named if name is not NULL. */
static ShareMemObject *shm_open_region(pyshm_state *st, uint64_t size, PyObject *name, int fd)
{
    PyObject *posix = NULL;
    if (name && !(posix = posix_name(name)))
        return NULL;
    ShareMemObject *self = shm_alloc(st, posix);
    Py_XDECREF(posix);
    if (!self)
        return NULL;
    const char *cname = posix ? PyUnicode_AsUTF8(self->name) : NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    if (fd >= 0)
        rc = pyshm_region_attach_fd(&self->region, fd);
    else if (size == 0)
        rc = pyshm_region_attach_named(&self->region, cname);
    else if (cname)
        rc = pyshm_region_create_named(&self->region, size, cname);
    else
        rc = pyshm_region_create(&self->region, size);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        if (rc == -EINVAL)
            PyErr_Format(PyExc_ValueError, "ShareMem size %llu is out of range", (unsigned long long)size);
        else if (rc == -ENOENT || rc == -EEXIST || rc == -EACCES) {
            errno = -rc;
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->name);
        } else
            pyshm_raise(st, rc, "ShareMem");
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

PyObject *pyshm_object_name(const struct pyshm_region *r, uint64_t offset)
{
    char name[PYSHM_NAME_MAX + 1];
    memcpy(name, ((const struct pyshm_object_header *)(r->base + offset))->name, sizeof(name));
    name[PYSHM_NAME_MAX] = 0; /* another process may have written anything here */
    if (!name[0])
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "replace");
}

int pyshm_find_named(ShareMemObject *shm, PyObject *name, uint32_t kind, uint64_t *offset)
{
    static const char *const kinds[] = {"object", "Mempool", "Ring"};
    const char *cname;
    if (pyshm_name_arg(name, &cname) < 0 || pyshm_shm_check_open(shm, kinds[kind]) < 0)
        return -1;
    if (!cname) {
        PyErr_SetString(PyExc_TypeError, "name must be a str, not None");
        return -1;
    }
    uint32_t found;
    int rc = pyshm_region_find_named(&shm->region, cname, &found, offset);
    if (rc == -ENOENT) {
        PyErr_Format(PyExc_ValueError, "no %s named %R in this ShareMem", kinds[kind], name);
        return -1;
    }
    if (rc < 0) {
        pyshm_raise(shm->state, rc, "ShareMem");
        return -1;
    }
    if (found != kind) {
        PyErr_Format(PyExc_ValueError, "%R in this ShareMem is a %s, not a %s", name,
                     found < 3 ? kinds[found] : "corrupt object", kinds[kind]);
        return -1;
    }
    return 0;
}

int pyshm_shm_check_open(ShareMemObject *shm, const char *what)
{
    if (!shm->closed)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s: its ShareMem was cleaned up", what);
    return -1;
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
    struct pyshm_region_header *h = (struct pyshm_region_header *)shm->region.base;
    uint64_t used = atomic_load_explicit(&h->carve_end, memory_order_relaxed);
    uint64_t free_bytes = used < shm->region.size ? shm->region.size - used : 0;
    PyErr_Format(PyExc_ValueError, "%s needs %llu bytes of the ShareMem, which has %llu of %llu bytes left",
                 what, (unsigned long long)needed, (unsigned long long)free_bytes,
                 (unsigned long long)shm->region.size);
}

static PyObject *shm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "name", NULL};
    PyObject *size_obj, *name = Py_None;
    uint64_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:ShareMem", kwlist, &size_obj, &name))
        return NULL;
    if (pyshm_uint64_arg(size_obj, "ShareMem size", 1, &size) < 0)
        return NULL;
    /* Registered at once, so that attaching or receiving it again here, in this process
     * or in a fork child, gives back this object. */
    return shm_registry("_register",
                        shm_open_region(pyshm_state_of_type(type), size, name == Py_None ? NULL : name, -1));
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
        pyshm_region_close(&self->region);
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
    if (self->region.fd < 0) {
        PyErr_SetString(PyExc_ValueError, "this ShareMem has no file descriptor (anonymous mapping)");
        return NULL;
    }
    return PyLong_FromLong(self->region.fd);
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

static PyObject *shm_cleanup(ShareMemObject *self, PyObject *Py_UNUSED(unused))
{
    if (self->closed)
        Py_RETURN_NONE;
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot clean up ShareMem: %zd view(s) into it (blocks or memoryviews) are still alive "
                     "in this process; put back, enqueue or release them first",
                     self->exports);
        return NULL;
    }
    /* Mark closed before unmapping, as mmap does: nothing can reach the memory after. */
    struct pyshm_region region = self->region;
    self->closed = 1;
    memset(&self->region, 0, sizeof(self->region));
    self->region.fd = -1;
    pyshm_region_close(&region);
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
    if (pyshm_uint64_arg(size_obj, "ShareMem size", 1, &size) < 0)
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
    return PyLong_FromUnsignedLongLong(self->region.size);
}

static PyObject *shm_get_closed(ShareMemObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

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
                                    (unsigned long long)self->region.size);
    return PyUnicode_FromFormat("<pyshm.ShareMem size=%llu>", (unsigned long long)self->region.size);
}

static int shm_getbuffer(ShareMemObject *self, Py_buffer *view, int flags)
{
    if (pyshm_shm_check_open(self, "ShareMem") < 0)
        return -1;
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->region.base, (Py_ssize_t)self->region.size, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void shm_releasebuffer(ShareMemObject *self, Py_buffer *Py_UNUSED(view)) { self->exports--; }

static PyMethodDef shm_methods[] = {
    {"cleanup", (PyCFunction)shm_cleanup, METH_NOARGS,
     "Unmap the region in this process. BufferError while views into it are alive here."},
    {"close", (PyCFunction)shm_cleanup, METH_NOARGS, "Alias of cleanup()."},
    {"attach", (PyCFunction)shm_attach, METH_O | METH_CLASS,
     "attach(name): open the named region another process created."},
    {"_from_fd", (PyCFunction)shm_from_fd, METH_O | METH_CLASS,
     "Map the region in a file descriptor (taken over). Used when unpickling."},
    {"unlink", (PyCFunction)shm_unlink, METH_NOARGS,
     "Remove the region's name; processes that have it mapped keep using it."},
    {"fileno", (PyCFunction)shm_fileno, METH_NOARGS, "The file descriptor behind the region."},
    {"__reduce__", (PyCFunction)shm_reduce, METH_NOARGS, NULL},
    {"instance", (PyCFunction)(void (*)(void))shm_instance, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "instance(size=None): the process-wide default ShareMem, created by the first call with a size."},
    {"__enter__", pyshm_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pyshm_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef shm_getset[] = {
    {"size", (getter)shm_get_size, NULL, "Bytes in the region.", NULL},
    {"closed", (getter)shm_get_closed, NULL, "True after cleanup().", NULL},
    {"name", (getter)shm_get_name, NULL, "The region's name, or None.", NULL},
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
    {Py_tp_doc, "ShareMem(size): a region of shared memory that fork children inherit.\n\n"
                "Pools and rings are carved out of it. It exports a writable buffer over\n"
                "the whole region: memoryview(shm)."},
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
