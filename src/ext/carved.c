/*
 * carved.c - the shared base of the objects carved out of a region (Mempool, Ring,
 * RawBuffer): their region, offset, name and closed state, opening one by name or offset,
 * pickling, cleanup and the getters they have in common. Each type adds its own handle
 * after the CarvedObject head and says how to validate it (struct pyshm_carved_kind).
 */
#include "pyshm_ext.h"

#include "repair.h"

const struct pyshm_carved_kind *pyshm_carved_kind_of(pyshm_state *st, PyTypeObject *type)
{
    if (type == st->MempoolType)
        return &pyshm_mempool_kind;
    if (type == st->RingType)
        return &pyshm_ring_kind;
    if (type == st->RawBufferType)
        return &pyshm_rawbuf_kind;
    return NULL;
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case PYSHM_KIND_POOL:
        return "Mempool";
    case PYSHM_KIND_RING:
        return "Ring";
    case PYSHM_KIND_RAW:
        return "RawBuffer";
    default:
        return "corrupt object";
    }
}

static PyObject *object_name(const struct pyshm_region *r, uint64_t offset)
{
    char name[PYSHM_NAME_MAX + 1];
    memcpy(name, ((const struct pyshm_object_header *)(r->base + offset))->name, sizeof(name));
    name[PYSHM_NAME_MAX] = 0; /* another process may have written anything here */
    if (!name[0])
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "replace");
}

PyObject *pyshm_carved_open(PyTypeObject *type, ShareMemObject *shm, uint64_t offset)
{
    CarvedObject *self = (CarvedObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(shm);
        return NULL;
    }
    self->state = shm->state;
    self->shm = shm;
    self->kind = pyshm_carved_kind_of(shm->state, type);
    self->offset = offset;
    if (self->kind->open_at(self) < 0 || !(self->name = object_name(&shm->space.region, offset))) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

ShareMemObject *pyshm_carved_region(pyshm_state *st, PyObject *shm_obj, const char *what, const char *missing)
{
    ShareMemObject *shm = pyshm_shm_resolve(st, shm_obj);
    if (!shm) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "%s needs a ShareMem to live in: %s", what, missing);
        return NULL;
    }
    if (pyshm_shm_check_open(shm, what) < 0) {
        Py_DECREF(shm);
        return NULL;
    }
    return shm;
}

int pyshm_carved_raise_closed(CarvedObject *self)
{
    if (self->closed) {
        PyErr_Format(PyExc_ValueError, "%s is closed", self->kind->name);
        return -1;
    }
    return pyshm_shm_raise_closed(self->kind->name);
}

void pyshm_carved_dealloc(PyObject *obj)
{
    CarvedObject *self = (CarvedObject *)obj;
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->shm);
    Py_XDECREF(self->name);
    type->tp_free(self);
    Py_DECREF(type);
}

/* cls.attach(shm, name) and cls._from_offset(shm, offset): the object at an offset. */
static PyObject *open_checked(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs, int by_name)
{
    pyshm_state *st = pyshm_state_of_type(type);
    const struct pyshm_carved_kind *kind = st ? pyshm_carved_kind_of(st, type) : NULL;
    if (!kind) {
        PyErr_SetString(PyExc_TypeError, "only Mempool, Ring and RawBuffer can be attached");
        return NULL;
    }
    if (nargs != 2 || !Py_IS_TYPE(args[0], st->ShareMemType)) {
        PyErr_Format(PyExc_TypeError, "%s.%s(shm, %s) takes a ShareMem and %s", kind->name,
                     by_name ? "attach" : "_from_offset", by_name ? "name" : "offset", by_name ? "a name" : "an int");
        return NULL;
    }
    ShareMemObject *shm = (ShareMemObject *)args[0];
    uint64_t offset;
    if (pyshm_shm_check_open(shm, kind->name) < 0)
        return NULL;
    if (by_name) {
        const char *cname;
        if (pyshm_arg_name(args[1], &cname) < 0)
            return NULL;
        if (!cname) {
            PyErr_SetString(PyExc_TypeError, "name must be a str, not None");
            return NULL;
        }
        uint32_t found;
        int rc = pyshm_region_find_named(&shm->space.region, cname, &found, &offset);
        if (rc == -ENOENT) {
            PyErr_Format(PyExc_ValueError, "no %s named %R in this ShareMem", kind->name, args[1]);
            return NULL;
        }
        if (rc < 0) {
            pyshm_raise(st, rc, "ShareMem");
            return NULL;
        }
        if (found != kind->object_kind) {
            PyErr_Format(PyExc_ValueError, "%R in this ShareMem is a %s, not a %s", args[1], kind_name(found),
                         kind->name);
            return NULL;
        }
    } else if (pyshm_arg_u64(args[1], "offset", 0, UINT64_MAX, &offset) < 0) {
        return NULL;
    }
    return pyshm_carved_open(type, (ShareMemObject *)Py_NewRef(shm), offset);
}

static PyObject *carved_attach(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs)
{
    return open_checked(type, args, nargs, 1);
}

static PyObject *carved_from_offset(PyTypeObject *type, PyObject *const *args, Py_ssize_t nargs)
{
    return open_checked(type, args, nargs, 0);
}

static PyObject *carved_reduce(CarvedObject *self, PyObject *Py_UNUSED(unused))
{
    if (pyshm_carved_check_open(self) < 0)
        return NULL;
    PyObject *rebuild = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_from_offset");
    if (!rebuild)
        return NULL;
    return Py_BuildValue("N(OK)", rebuild, self->shm, (unsigned long long)self->offset);
}

static PyObject *carved_cleanup(CarvedObject *self, PyObject *Py_UNUSED(unused))
{
    /* Views already handed out keep their own reference to the region. A call waiting on
     * this handle in another thread is woken and raises (waiting.c). */
    self->closed = 1;
    if (self->waits > 0 && self->kind->wake)
        self->kind->wake(self);
    Py_RETURN_NONE;
}

static PyObject *carved_get_closed(CarvedObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed || self->shm->closed);
}

static PyObject *carved_get_shm(CarvedObject *self, void *Py_UNUSED(closure))
{
    if (self->closed)
        Py_RETURN_NONE;
    return Py_NewRef(self->shm);
}

static PyObject *carved_get_name(CarvedObject *self, void *Py_UNUSED(closure)) { return Py_NewRef(self->name); }

static PyObject *carved_get_offset(CarvedObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->offset);
}

static PyObject *carved_waiting(CarvedObject *self, PyObject *Py_UNUSED(unused))
{
    return PyLong_FromLong(self->waits);
}

/* For the asyncio methods (pyshm/_aio.py, aio.c) ------------------------------------- */

static struct pyshm_waitpoint *waitpoint_arg(CarvedObject *self, PyObject *arg)
{
    long side = PyLong_AsLong(arg);
    if (side == -1 && PyErr_Occurred())
        return NULL;
    struct pyshm_waitpoint *w = self->kind->waitpoint && (side == 0 || side == 1) ? self->kind->waitpoint(self, (int)side)
                                                                                   : NULL;
    if (!w)
        PyErr_Format(PyExc_ValueError, "%s has no waitpoint %ld", self->kind->name, side);
    return w;
}

/* _prepare(side): announce a sleeper (wait.h, steps 1 to 3): (address of the epoch word,
 * epoch). The caller tries again, then awaits the epoch moving past it. */
static PyObject *carved_prepare(CarvedObject *self, PyObject *side)
{
    if (pyshm_carved_check_open(self) < 0)
        return NULL;
    struct pyshm_waitpoint *w = waitpoint_arg(self, side);
    if (!w)
        return NULL;
    uint32_t e = pyshm_wait_prepare(w);
    return Py_BuildValue("(NI)", PyLong_FromVoidPtr((void *)&w->epoch), (unsigned int)e);
}

/* _epoch(side): the epoch now, or None once the handle or its region is closed. */
static PyObject *carved_epoch(CarvedObject *self, PyObject *side)
{
    if (self->closed || self->shm->closed)
        Py_RETURN_NONE;
    struct pyshm_waitpoint *w = waitpoint_arg(self, side);
    if (!w)
        return NULL;
    return PyLong_FromUnsignedLong(atomic_load_explicit(&w->epoch, memory_order_acquire));
}

/* _async_wait(delta): count (1) or uncount (-1) a task awaiting this handle, as a call
 * asleep on it is counted: the region's cleanup() refuses meanwhile, the handle's wakes. */
static PyObject *carved_async_wait(CarvedObject *self, PyObject *arg)
{
    long delta = PyLong_AsLong(arg);
    if (delta == -1 && PyErr_Occurred())
        return NULL;
    if (delta != 1 && delta != -1) {
        PyErr_SetString(PyExc_ValueError, "_async_wait(delta): 1 or -1");
        return NULL;
    }
    pyshm_waits_add(self->shm, self, (int)delta);
    Py_RETURN_NONE;
}

/* _repair_needed(): whether some other member of the region is gone (cheap: lock tests). */
static PyObject *carved_repair_needed(CarvedObject *self, PyObject *Py_UNUSED(unused))
{
    if (self->closed || self->shm->closed)
        Py_RETURN_FALSE;
    return PyBool_FromLong(pyshm_repair_needed(&self->shm->space));
}

/* _repair_now(): what a sleeping blocking call does now and then (waiting.c): repair the
 * region if a member is gone. Best effort: a failure surfaces in the next attempt. */
static PyObject *carved_repair_now(CarvedObject *self, PyObject *Py_UNUSED(unused))
{
    if (pyshm_carved_check_open(self) < 0)
        return NULL;
    struct pyshm_repair_report report;
    int rc = pyshm_repair(&self->shm->space, 1, &report);
    return PyLong_FromUnsignedLongLong(rc == 0 ? report.returned : 0);
}

static PyMethodDef carved_methods[] = {
    {"_prepare", (PyCFunction)carved_prepare, METH_O,
     "_prepare($self, side, /)\n--\n\nMark a sleeper on a waitpoint (0: not empty, 1: not full): (address, epoch)."},
    {"_epoch", (PyCFunction)carved_epoch, METH_O,
     "_epoch($self, side, /)\n--\n\nThe waitpoint's epoch now, or None once closed."},
    {"_async_wait", (PyCFunction)carved_async_wait, METH_O,
     "_async_wait($self, delta, /)\n--\n\nCount (1) or uncount (-1) an awaiting task."},
    {"_repair_needed", (PyCFunction)carved_repair_needed, METH_NOARGS,
     "_repair_needed($self, /)\n--\n\nWhether some other member of the region is gone."},
    {"_repair_now", (PyCFunction)carved_repair_now, METH_NOARGS,
     "_repair_now($self, /)\n--\n\nRepair the region if a member is gone: blocks returned."},
    {"_waiting", (PyCFunction)carved_waiting, METH_NOARGS,
     "_waiting($self, /)\n--\n\n"
     "Calls of this handle asleep right now in this process (for tests and introspection)."},
    {"attach", (PyCFunction)(void (*)(void))carved_attach, METH_FASTCALL | METH_CLASS,
     "attach($cls, shm, name, /)\n--\n\n"
     "The object created with name=name in the ShareMem shm, found by any process that has\n"
     "the region. ValueError if there is none, or if it is of another type."},
    {"_from_offset", (PyCFunction)(void (*)(void))carved_from_offset, METH_FASTCALL | METH_CLASS,
     "_from_offset($cls, shm, offset, /)\n--\n\n"
     "The object at a region offset (used when unpickling)."},
    {"__reduce__", (PyCFunction)carved_reduce, METH_NOARGS,
     "__reduce__($self, /)\n--\n\nPickle as its region and offset (multiprocessing passes the region's descriptor)."},
    {"cleanup", (PyCFunction)carved_cleanup, METH_NOARGS,
     "cleanup($self, /)\n--\n\nClose this process's handle (the object goes on for other handles and "
     "processes). A call waiting on it in another thread wakes and raises ValueError."},
    {"close", (PyCFunction)carved_cleanup, METH_NOARGS, "close($self, /)\n--\n\nAlias of cleanup()."},
    {"__enter__", pyshm_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nReturn self."},
    {"__exit__", (PyCFunction)(void (*)(void))pyshm_exit, METH_FASTCALL,
     "__exit__($self, exc_type, exc_value, traceback, /)\n--\n\nCall cleanup(); exceptions are not suppressed."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef carved_getset[] = {
    {"closed", (getter)carved_get_closed, NULL, "True after cleanup() here or of its ShareMem.", NULL},
    {"shm", (getter)carved_get_shm, NULL, "The ShareMem it lives in (None once closed).", NULL},
    {"name", (getter)carved_get_name, NULL, "Its name in its ShareMem, or None.", NULL},
    {"offset", (getter)carved_get_offset, NULL, "Where it starts in its ShareMem.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot carved_slots[] = {
    {Py_tp_dealloc, pyshm_carved_dealloc},
    {Py_tp_methods, carved_methods},
    {Py_tp_getset, carved_getset},
    {Py_tp_doc, "The base of the objects carved out of a ShareMem (internal)."},
    {0, NULL},
};

static PyType_Spec carved_spec = {
    .name = "pyshm._pyshm.Carved",
    .basicsize = sizeof(CarvedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = carved_slots,
};

int pyshm_carved_module_init(PyObject *module, pyshm_state *st)
{
    st->CarvedType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &carved_spec, NULL);
    return st->CarvedType ? 0 : -1;
}

PyTypeObject *pyshm_carved_type(PyObject *module, pyshm_state *st, PyType_Spec *spec)
{
    PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, (PyObject *)st->CarvedType);
    if (type && PyModule_AddType(module, type) < 0)
        Py_CLEAR(type);
    return type;
}
