"""Type stubs for pyshm.ring."""
from ._pyshm import (
    RING_F_SC_DEQ as RING_F_SC_DEQ,
    RING_F_SP_ENQ as RING_F_SP_ENQ,
    CorruptionError as CorruptionError,
    EmptyError as EmptyError,
    FullError as FullError,
    PyshmError as PyshmError,
    Ring as Ring,
    RingError as RingError,
    ShutDown as ShutDown,
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
