"""Shared-memory regions: ``ShareMem`` and the process-wide default region."""
from ._pyshm import CorruptionError, PyshmError, ShareMem, ShareMemError

__all__ = ["ShareMem", "ShareMemError", "PyshmError", "CorruptionError", "init_shm", "get_shm"]


def init_shm(size: int) -> ShareMem:
    """Create the process-wide default region that pools and rings use when given no ``shm``."""
    return ShareMem.instance(size)


def get_shm() -> ShareMem:
    """The default region made by :func:`init_shm`; ``ShareMemError`` if there is none."""
    return ShareMem.instance()
