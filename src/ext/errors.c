/* errors.c - pyshm's exceptions, and the one table from core error codes to them. */
#include "pyshm_ext.h"

static PyObject *new_exception(PyObject *module, const char *name, PyObject *bases, const char *doc)
{
    char qualified[64];
    PyOS_snprintf(qualified, sizeof(qualified), "pyshm.%s", name);
    PyObject *exc = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    if (!exc)
        return NULL;
    if (PyModule_AddObjectRef(module, name, exc) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

int pyshm_errors_init(PyObject *module, pyshm_state *st)
{
    PyObject *queue = PyImport_ImportModule("queue");
    if (!queue)
        return -1;
    PyObject *empty = PyObject_GetAttrString(queue, "Empty");
    PyObject *full = PyObject_GetAttrString(queue, "Full");
    int rc = -1;
    PyObject *bases = NULL;
    if (!empty || !full)
        goto done;
    if (!(st->PyshmError = new_exception(module, "PyshmError", PyExc_Exception, "Base of every pyshm error.")))
        goto done;
    if (!(st->ShareMemError = new_exception(module, "ShareMemError", st->PyshmError, "A region error.")) ||
        !(st->MempoolError = new_exception(module, "MempoolError", st->PyshmError, "A pool error.")) ||
        !(st->RingError = new_exception(module, "RingError", st->PyshmError, "A ring error.")) ||
        !(st->CorruptionError = new_exception(module, "CorruptionError", st->PyshmError,
                                              "Shared memory holds a value no correct process writes.")))
        goto done;
    if (!(bases = PyTuple_Pack(3, st->MempoolError, st->RingError, empty)) ||
        !(st->EmptyError = new_exception(module, "EmptyError", bases, "No free block, or nothing to dequeue.")))
        goto done;
    Py_SETREF(bases, PyTuple_Pack(3, st->MempoolError, st->RingError, full));
    if (!bases || !(st->FullError = new_exception(module, "FullError", bases, "No room to enqueue.")))
        goto done;
    /* queue.ShutDown exists from Python 3.13 on. */
    PyObject *shutdown = PyObject_GetAttrString(queue, "ShutDown");
    if (!shutdown)
        PyErr_Clear();
    Py_SETREF(bases, shutdown ? PyTuple_Pack(2, st->RingError, shutdown) : PyTuple_Pack(1, st->RingError));
    Py_XDECREF(shutdown);
    if (!bases || !(st->ShutDown = new_exception(module, "ShutDown", bases, "The ring was shut down.")))
        goto done;
    rc = 0;
done:
    Py_DECREF(queue);
    Py_XDECREF(bases);
    Py_XDECREF(empty);
    Py_XDECREF(full);
    return rc;
}

void pyshm_raise(pyshm_state *st, int rc, const char *what)
{
    if (rc == PYSHM_RAISED)
        return; /* set already */
    switch (-rc) {
    case PYSHM_EEMPTY:
        PyErr_Format(st->EmptyError, "%s: nothing there (empty)", what);
        break;
    case PYSHM_EFULL:
        PyErr_Format(st->FullError, "%s: no room (full)", what);
        break;
    case ESHUTDOWN:
        PyErr_Format(st->ShutDown, "%s: the ring was shut down", what);
        break;
    case PYSHM_ENOTREGION:
        PyErr_Format(st->ShareMemError, "%s: not a pyshm region", what);
        break;
    case PYSHM_EVERSION:
        PyErr_Format(st->ShareMemError, "%s: the region has another layout version (this pyshm reads version %u)",
                     what, PYSHM_LAYOUT_VERSION);
        break;
    case PYSHM_ECORRUPT:
        PyErr_Format(st->CorruptionError, "%s: shared memory holds a value no correct process writes", what);
        break;
    case PYSHM_ESTALE:
        PyErr_Format(PyExc_ValueError,
                     "%s: this block was already put back or enqueued (its state in shared memory says so)", what);
        break;
    case PYSHM_ENOTYOURS:
        PyErr_Format(PyExc_ValueError,
                     "%s: this block is held by another process (a view inherited from a fork parent?); only the "
                     "process that took a block from a pool or ring can give it back",
                     what);
        break;
    case PYSHM_ETOOBIG:
        PyErr_Format(PyExc_ValueError, "%s: the block is smaller than the length asked for", what);
        break;
    case PYSHM_ENOMEMBER:
        PyErr_Format(st->PyshmError,
                     "%s: all %u member entries of this region belong to live processes; no more processes can "
                     "use it at once",
                     what, PYSHM_MEMBER_ENTRIES);
        break;
    case EAGAIN:
        PyErr_Format(st->PyshmError,
                     "%s: the free queue stayed blocked by a get() that did not finish (a process stopped, or "
                     "killed and not yet repaired); the blocks are still yours",
                     what);
        break;
    case ENOMEM:
        PyErr_NoMemory();
        break;
    case EINVAL:
        PyErr_Format(PyExc_ValueError, "%s: invalid argument", what);
        break;
    default:
        errno = -rc;
        PyErr_SetFromErrno(st->PyshmError);
        break;
    }
}
