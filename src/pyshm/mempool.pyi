"""Type stubs for pyshm.mempool."""
from ._pyshm import (
    MEMPOOL_F_SC_GET as MEMPOOL_F_SC_GET,
    MEMPOOL_F_RETURN_PAGES as MEMPOOL_F_RETURN_PAGES,
    MEMPOOL_F_SP_PUT as MEMPOOL_F_SP_PUT,
    CorruptionError as CorruptionError,
    EmptyError as EmptyError,
    FullError as FullError,
    Mempool as Mempool,
    MempoolError as MempoolError,
    PyshmError as PyshmError,
)

__all__ = [
    "Mempool",
    "MEMPOOL_F_SP_PUT",
    "MEMPOOL_F_SC_GET",
    "MEMPOOL_F_RETURN_PAGES",
    "MempoolError",
    "EmptyError",
    "FullError",
    "CorruptionError",
    "PyshmError",
]
