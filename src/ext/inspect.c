/* inspect.c - ShareMem.info() and ShareMem.inspect(name): what a region holds, as a dict,
 * read without joining its member table or writing anything (src/core/inspect.h). */
#include "pyshm_ext.h"

#include "inspect.h"

static PyObject *object_name(const char *name)
{
    size_t len = strnlen(name, PYSHM_NAME_MAX);
    if (len == 0)
        Py_RETURN_NONE;
    /* Bytes from shared memory: never trusted to be UTF-8. */
    return PyUnicode_DecodeUTF8(name, (Py_ssize_t)len, "replace");
}

static PyObject *alive_of(int alive)
{
    if (alive == PYSHM_ALIVE_UNKNOWN)
        Py_RETURN_NONE;
    return PyBool_FromLong(alive == PYSHM_ALIVE_YES);
}

static PyObject *member_dict(const struct pyshm_inspect_member *m)
{
    PyObject *joined = m->joined_ns ? PyFloat_FromDouble((double)m->joined_ns / 1e9) : Py_NewRef(Py_None);
    if (!joined)
        return NULL;
    return Py_BuildValue("{s:I,s:K,s:N,s:K,s:N,s:N,s:N}", "index", (unsigned int)m->index, "pid",
                         (unsigned long long)m->pid, "alive", alive_of(m->alive), "holds",
                         (unsigned long long)m->held, "announcing", PyBool_FromLong(m->announcing), "has_lock",
                         PyBool_FromLong(!m->nolock), "joined", joined);
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case PYSHM_KIND_POOL:
        return "pool";
    case PYSHM_KIND_RING:
        return "ring";
    case PYSHM_KIND_RAW:
        return "raw";
    default:
        return "unknown";
    }
}

static const char *shutdown_name(int state)
{
    return state == PYSHM_BLOCK_RING_OPEN ? "open" : state == PYSHM_BLOCK_RING_SHUTDOWN ? "shutdown" : "shutdown-now";
}

static PyObject *object_dict(const struct pyshm_inspect_object *o)
{
    PyObject *name = object_name(o->name);
    if (!name)
        return NULL;
    PyObject *d = Py_BuildValue("{s:s,s:N,s:K,s:N}", "kind", kind_name(o->kind),
                                "name", name, "offset", (unsigned long long)o->offset, "corrupt",
                                PyBool_FromLong(!o->valid));
    if (!d || !o->valid)
        return d;
    PyObject *extra = NULL;
    if (o->kind == PYSHM_KIND_POOL)
        extra = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K}", "count", (unsigned long long)o->count, "elt_size",
                              (unsigned long long)o->elt_size, "free_count", (unsigned long long)o->free_count,
                              "held_count", (unsigned long long)o->held_count, "in_ring_count",
                              (unsigned long long)o->in_ring_count, "held_by_dead",
                              (unsigned long long)o->held_by_dead);
    else if (o->kind == PYSHM_KIND_RING)
        extra = Py_BuildValue("{s:K,s:K,s:s}", "count", (unsigned long long)o->count, "used",
                              (unsigned long long)o->used, "shutdown", shutdown_name(o->shutdown));
    else
        extra = Py_BuildValue("{s:K}", "size", (unsigned long long)o->size);
    if (!extra || PyDict_Update(d, extra) < 0) {
        Py_XDECREF(extra);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(extra);
    return d;
}

static int append_object(void *ctx, const struct pyshm_inspect_object *o)
{
    PyObject *d = object_dict(o);
    if (!d)
        return -1;
    int rc = PyList_Append((PyObject *)ctx, d);
    Py_DECREF(d);
    return rc < 0 ? -1 : 0;
}

/* The dict describing the region r (fd: a description of its file for the liveness
 * tests, or -1). */
static PyObject *describe(pyshm_state *st, const struct pyshm_region *r, int fd, PyObject *name)
{
    struct pyshm_inspect_member *members = PyMem_Calloc(PYSHM_MEMBER_ENTRIES, sizeof(*members));
    if (!members)
        return PyErr_NoMemory();
    uint32_t n = pyshm_inspect_members(r, fd, members);
    PyObject *member_list = PyList_New(0), *objects = PyList_New(0), *result = NULL;
    if (!member_list || !objects)
        goto done;
    for (uint32_t k = 0; k < n; k++) {
        PyObject *d = member_dict(&members[k]);
        if (!d || PyList_Append(member_list, d) < 0) {
            Py_XDECREF(d);
            goto done;
        }
        Py_DECREF(d);
    }
    int rc = pyshm_inspect_objects(r, members, n, append_object, objects);
    if (rc == -1 && PyErr_Occurred())
        goto done;
    if (rc < 0) {
        if (rc == -ENOMEM)
            PyErr_NoMemory();
        else
            pyshm_raise(st, rc, "ShareMem.info");
        goto done;
    }
    result = Py_BuildValue("{s:O,s:K,s:K,s:I,s:K,s:O,s:O}", "name", name, "size", (unsigned long long)r->size,
                           "free", (unsigned long long)(r->size - pyshm_region_carved(r)), "layout_version",
                           (unsigned int)PYSHM_LAYOUT_VERSION, "file_size", (unsigned long long)r->map_size,
                           "members", member_list, "objects", objects);
done:
    Py_XDECREF(member_list);
    Py_XDECREF(objects);
    PyMem_Free(members);
    return result;
}

PyObject *pyshm_shm_info(PyObject *op, PyObject *Py_UNUSED(unused))
{
    ShareMemObject *self = (ShareMemObject *)op;
    if (pyshm_shm_check_open(self, "ShareMem.info") < 0)
        return NULL;
    /* The region file's shared description holds no lock: it tests every entry's, this
     * process's own included (held through its private description). */
    return describe(self->state, &self->space.region, self->space.region.fd, self->name);
}

PyObject *pyshm_shm_inspect(PyObject *type, PyObject *name)
{
    pyshm_state *st = pyshm_state_of_type((PyTypeObject *)type);
    PyObject *posix = pyshm_arg_region_name(name);
    if (!posix)
        return NULL;
    const char *cname = PyUnicode_AsUTF8(posix);
    if (!cname) {
        Py_DECREF(posix);
        return NULL;
    }
    struct pyshm_region r;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pyshm_inspect_open_named(&r, cname);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        if (rc == -PYSHM_ENOTREGION || rc == -PYSHM_EVERSION || rc == -PYSHM_ECORRUPT) {
            pyshm_raise(st, rc, "ShareMem.inspect");
        } else {
            errno = -rc;
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, posix);
        }
        Py_DECREF(posix);
        return NULL;
    }
    PyObject *result = describe(st, &r, r.fd, posix);
    pyshm_region_close(&r);
    Py_DECREF(posix);
    return result;
}
