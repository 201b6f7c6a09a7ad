"""Type stubs for pyshm."""
from ._pyshm import (
    LAYOUT_VERSION as LAYOUT_VERSION,
    MAX_MEMBERS as MAX_MEMBERS,
    MEMPOOL_F_SC_GET as MEMPOOL_F_SC_GET,
    MEMPOOL_F_RETURN_PAGES as MEMPOOL_F_RETURN_PAGES,
    MEMPOOL_F_SP_PUT as MEMPOOL_F_SP_PUT,
    REGION_OVERHEAD as REGION_OVERHEAD,
    RING_F_SC_DEQ as RING_F_SC_DEQ,
    RING_F_SP_ENQ as RING_F_SP_ENQ,
    CorruptionError as CorruptionError,
    EmptyError as EmptyError,
    FullError as FullError,
    Mempool as Mempool,
    MempoolError as MempoolError,
    PyshmError as PyshmError,
    RawBuffer as RawBuffer,
    Ring as Ring,
    RingError as RingError,
    ShutDown as ShutDown,
    ShareMem as ShareMem,
    ShareMemError as ShareMemError,
)
from .queue import JoinableQueue as JoinableQueue, Queue as Queue
from .shm import get_shm as get_shm, init_shm as init_shm

__version__: str

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
