"""Lock-free FIFOs of shared blocks between processes: ``Ring``."""
from ._pyshm import (
    RING_F_SC_DEQ,
    RING_F_SP_ENQ,
    CorruptionError,
    EmptyError,
    FullError,
    PyshmError,
    Ring,
    RingError,
    ShutDown,
)

__all__ = [
    "Ring",
    "RING_F_SP_ENQ",
    "RING_F_SC_DEQ",
    "RingError",
    "EmptyError",
    "FullError",
    "CorruptionError",
    "PyshmError",
    "ShutDown",
]
