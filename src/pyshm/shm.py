"""Shared-memory regions: ``ShareMem`` and the process-wide default region.

Passing a region to another process
-----------------------------------
A region travels by its file descriptor (an anonymous memfd) when multiprocessing
pickles it: as an argument of a ``Process`` or ``Pool`` initializer under any start
method, or through a multiprocessing ``Queue`` or ``Pipe``. multiprocessing hands the
descriptor over itself (``reduction.DupFd``), so no name is left behind if a process
dies. A named region (``ShareMem(size, name=...)``) pickles as its name and can be
attached by any process of the same user with ``ShareMem.attach(name)``.

Each region is mapped once per process: receiving or attaching the same region twice
yields the same ``ShareMem`` object, so blocks, pools and rings that arrived separately still work
together.
"""
import os
import weakref
from multiprocessing import reduction

from ._pyshm import CorruptionError, PyshmError, ShareMem, ShareMemError

__all__ = ["ShareMem", "ShareMemError", "PyshmError", "CorruptionError", "init_shm", "get_shm"]


def init_shm(size: int) -> ShareMem:
    """Create the process-wide default region that pools and rings use when given no ``shm``."""
    return ShareMem.instance(size)


def get_shm() -> ShareMem:
    """The default region made by :func:`init_shm`; ``ShareMemError`` if there is none."""
    return ShareMem.instance()


# (st_dev, st_ino) of the file behind a region -> the one ShareMem mapping it here. Fork
# children inherit it with everything else.
_mapped: "weakref.WeakValueDictionary[tuple, ShareMem]" = weakref.WeakValueDictionary()


def _identity(fd: int) -> tuple:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _known(key: tuple):
    shm = _mapped.get(key)
    return shm if shm is not None and not shm.closed else None


def _register(shm: ShareMem) -> ShareMem:
    """Record a region this process just created."""
    try:
        key = _identity(shm.fileno())
    except ValueError:  # an anonymous mapping: it only ever reaches fork children
        return shm
    if _known(key) is None:
        _mapped[key] = shm
    return shm


def _adopt(fresh: ShareMem) -> ShareMem:
    """The object already mapping the same region here, else ``fresh`` (now recorded)."""
    known = _known(_identity(fresh.fileno()))
    if known is not None and known is not fresh:
        fresh.cleanup()  # just mapped, never used: nothing can be exported from it
        return known
    return _register(fresh)


def _attach_fd(dup_fd) -> ShareMem:
    fd = dup_fd.detach()
    known = _known(_identity(fd))
    if known is not None:
        os.close(fd)
        return known
    return _register(ShareMem._from_fd(fd))


def _attach_named(name: str) -> ShareMem:
    return ShareMem.attach(name)  # adopts: see _adopt


def _reduce_for_multiprocessing(shm: ShareMem):
    # Always by descriptor: it works for unnamed regions, and for named ones after unlink().
    return _attach_fd, (reduction.DupFd(shm.fileno()),)


class _OnlyThroughMultiprocessing(TypeError):
    """Raised by plain pickling of an unnamed region: multiprocessing's pickler (which
    pyshm.Queue.put falls back to on this error only) passes it by descriptor."""


def _reduce_for_pickle(shm: ShareMem):
    if shm.name is None:
        raise _OnlyThroughMultiprocessing(
            "an unnamed ShareMem can only be passed to processes that multiprocessing starts "
            "(Process or Pool arguments, a multiprocessing Queue or Pipe); create it with "
            "ShareMem(size, name=...) to pickle it for anything else"
        )
    return _attach_named, (shm.name,)


reduction.register(ShareMem, _reduce_for_multiprocessing)
