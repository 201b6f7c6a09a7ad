/* rawbuf_type.c - RawBuffer: raw shared bytes carved from a region, for the user's own use. */
#include "pyshm_ext.h"

typedef struct {
    CarvedObject base;
    struct pyshm_rawbuf raw;
} RawBufferObject;

static int rawbuf_open_at(CarvedObject *base)
{
    RawBufferObject *self = (RawBufferObject *)base;
    if (pyshm_rawbuf_attach(&base->shm->space.region, base->offset, &self->raw) == 0)
        return 0;
    PyErr_Format(base->state->CorruptionError, "no valid RawBuffer at offset %llu of this ShareMem",
                 (unsigned long long)base->offset);
    return -1;
}

const struct pyshm_carved_kind pyshm_rawbuf_kind = {"RawBuffer", PYSHM_KIND_RAW, rawbuf_open_at, NULL, NULL};

static PyObject *rawbuf_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "shm", "name", NULL};
    PyObject *size_obj, *shm_obj = Py_None, *name_obj = Py_None;
    uint64_t size, footprint, offset;
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$O:RawBuffer", kwlist, &size_obj, &shm_obj, &name_obj) ||
        pyshm_arg_u64(size_obj, "RawBuffer size", 1, PYSHM_MAX_RAWBUF_SIZE, &size) < 0 ||
        pyshm_arg_name(name_obj, &name) < 0)
        return NULL;
    pyshm_rawbuf_footprint(size, &footprint);
    pyshm_state *st = pyshm_state_of_type(type);
    ShareMemObject *shm = pyshm_shm_resolve(st, shm_obj);
    if (!shm && !PyErr_Occurred() && footprint <= PYSHM_MAX_REGION_SIZE)
        shm = pyshm_shm_create(st, footprint < PYSHM_MIN_REGION_SIZE ? PYSHM_MIN_REGION_SIZE : footprint);
    if (!shm || pyshm_shm_check_open(shm, "RawBuffer") < 0) {
        if (!shm && !PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "RawBuffer(size=%llu) is too large", (unsigned long long)size);
        Py_XDECREF(shm);
        return NULL;
    }
    int rc = pyshm_rawbuf_create(&shm->space.region, size, name, &offset);
    if (rc < 0) {
        char what[64];
        PyOS_snprintf(what, sizeof(what), "RawBuffer(size=%llu)", (unsigned long long)size);
        pyshm_shm_raise_carve(shm, rc, what, footprint, name_obj);
        Py_DECREF(shm);
        return NULL;
    }
    return pyshm_carved_open(type, shm, offset);
}

static int rawbuf_getbuffer(RawBufferObject *self, Py_buffer *view, int flags)
{
    if (pyshm_carved_check_open(&self->base) < 0)
        return -1;
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->raw.data, (Py_ssize_t)self->raw.size, 0, flags) < 0)
        return -1;
    self->base.shm->exports++;
    return 0;
}

static void rawbuf_releasebuffer(RawBufferObject *self, Py_buffer *Py_UNUSED(view)) { self->base.shm->exports--; }

static Py_ssize_t rawbuf_length(RawBufferObject *self) { return (Py_ssize_t)self->raw.size; }

static PyObject *rawbuf_get_size(RawBufferObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->raw.size);
}

static PyObject *rawbuf_repr(RawBufferObject *self)
{
    return PyUnicode_FromFormat("<pyshm.RawBuffer size=%llu%s>", (unsigned long long)self->raw.size,
                                self->base.closed ? " closed" : "");
}

static PyGetSetDef rawbuf_getset[] = {
    {"size", (getter)rawbuf_get_size, NULL, "Bytes in the buffer.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot rawbuf_slots[] = {
    {Py_tp_new, rawbuf_new},
    {Py_tp_dealloc, pyshm_carved_dealloc},
    {Py_tp_repr, rawbuf_repr},
    {Py_tp_getset, rawbuf_getset},
    {Py_sq_length, rawbuf_length},
    {Py_bf_getbuffer, rawbuf_getbuffer},
    {Py_bf_releasebuffer, rawbuf_releasebuffer},
    {Py_tp_doc, "RawBuffer(size, shm=None, *, name=None)\n--\n\n"
                "size bytes of shared memory for your own use, zero-filled, carved from a ShareMem\n"
                "like a pool (memoryview(buf), numpy.frombuffer(buf, ...)); pyshm never writes them."},
    {0, NULL},
};

static PyType_Spec rawbuf_spec = {
    .name = "pyshm.RawBuffer",
    .basicsize = sizeof(RawBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rawbuf_slots,
};

int pyshm_rawbuf_module_init(PyObject *module, pyshm_state *st)
{
    return (st->RawBufferType = pyshm_carved_type(module, st, &rawbuf_spec)) ? 0 : -1;
}
