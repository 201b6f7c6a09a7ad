"""Type stubs for pyshm.shm."""
from ._pyshm import (
    CorruptionError as CorruptionError,
    PyshmError as PyshmError,
    ShareMem as ShareMem,
    ShareMemError as ShareMemError,
)

__all__ = ["ShareMem", "ShareMemError", "PyshmError", "CorruptionError", "init_shm", "get_shm"]

def init_shm(size: int) -> ShareMem: ...
def get_shm() -> ShareMem: ...

class _OnlyThroughMultiprocessing(TypeError): ...
