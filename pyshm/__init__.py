"""pyshm: hand memory blocks between Python processes without copying them.

- :class:`ShareMem`: a shared-memory region;
- :class:`Mempool`: fixed-size blocks carved from a region, handed out as memoryviews;
- :class:`Ring`: a lock-free FIFO that passes blocks from process to process.
"""
from ._pyshm import (
    LAYOUT_VERSION,
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_SP_PUT,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    MempoolError,
    PyshmError,
    Ring,
    RingError,
    ShareMem,
    ShareMemError,
    ShutDown,
)
from .shm import get_shm, init_shm

__version__ = "1.0.0"

__all__ = [
    "ShareMem",
    "Mempool",
    "Ring",
    "init_shm",
    "get_shm",
    "PyshmError",
    "ShareMemError",
    "MempoolError",
    "RingError",
    "EmptyError",
    "FullError",
    "CorruptionError",
    "ShutDown",
    "MEMPOOL_F_SP_PUT",
    "MEMPOOL_F_SC_GET",
    "RING_F_SP_ENQ",
    "RING_F_SC_DEQ",
    "LAYOUT_VERSION",
]
