"""Pools of fixed-size shared blocks: ``Mempool``."""
from ._pyshm import (
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_RETURN_PAGES,
    MEMPOOL_F_SP_PUT,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    MempoolError,
    PyshmError,
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
