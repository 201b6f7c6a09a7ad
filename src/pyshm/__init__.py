"""pyshm: hand memory blocks between Python processes without copying them.

- :class:`Queue`, :class:`JoinableQueue`: any picklable object between processes, a
  drop-in for multiprocessing's, numpy arrays received without a copy;
- :class:`ShareMem`: a shared-memory region;
- :class:`Mempool`: fixed-size blocks carved from a region, handed out as memoryviews;
- :class:`Ring`: a lock-free FIFO that passes blocks from process to process;
- :class:`RawBuffer`: raw shared bytes for your own use, carved like a pool.
"""
from ._pyshm import (
    MAX_MEMBERS,
    REGION_OVERHEAD,
    LAYOUT_VERSION,
    MEMPOOL_F_SC_GET,
    MEMPOOL_F_RETURN_PAGES,
    MEMPOOL_F_SP_PUT,
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CorruptionError,
    EmptyError,
    FullError,
    Mempool,
    MempoolError,
    PyshmError,
    RawBuffer,
    Ring,
    RingError,
    ShareMem,
    ShareMemError,
    ShutDown,
)
from .queue import JoinableQueue, Queue
from .shm import get_shm, init_shm

__version__ = "2.0.0"

__all__ = [
    "Queue",
    "JoinableQueue",
    "ShareMem",
    "Mempool",
    "Ring",
    "RawBuffer",
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
    "MEMPOOL_F_RETURN_PAGES",
    "RING_F_SP_ENQ",
    "RING_F_SC_DEQ",
    "LAYOUT_VERSION",
    "MAX_MEMBERS",
    "REGION_OVERHEAD",
]
