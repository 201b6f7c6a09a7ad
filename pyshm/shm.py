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


# (st_dev, st_ino) of the file behind a region -> the one ShareMem mapping it here.
_mapped: "weakref.WeakValueDictionary[tuple, ShareMem]" = weakref.WeakValueDictionary()


def _identity(fd: int) -> tuple:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _adopt(shm: ShareMem) -> ShareMem:
    """The region object already mapping the same file here, else ``shm`` itself."""
    key = _identity(shm.fileno())
    known = _mapped.get(key)
    if known is not None and known is not shm and not known.closed:
        shm.cleanup()
        return known
    _mapped[key] = shm
    return shm


def _attach_fd(dup_fd) -> ShareMem:
    fd = dup_fd.detach()
    known = _mapped.get(_identity(fd))
    if known is not None and not known.closed:
        os.close(fd)
        return known
    return _adopt(ShareMem._from_fd(fd))


def _attach_named(name: str) -> ShareMem:
    return ShareMem.attach(name)  # adopts: see _adopt


def _reduce_for_multiprocessing(shm: ShareMem):
    _adopt(shm)
    if shm.name is not None:
        return _attach_named, (shm.name,)
    return _attach_fd, (reduction.DupFd(shm.fileno()),)


def _reduce_for_pickle(shm: ShareMem):
    if shm.name is None:
        raise TypeError(
            "an unnamed ShareMem can only be passed to processes that multiprocessing starts "
            "(Process or Pool arguments, a multiprocessing Queue or Pipe); create it with "
            "ShareMem(size, name=...) to pickle it for anything else"
        )
    _adopt(shm)
    return _attach_named, (shm.name,)


reduction.register(ShareMem, _reduce_for_multiprocessing)
