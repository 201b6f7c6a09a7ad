"""The systems the bench compares, each in its own module with the same small interface.

A module defines ``systems() -> list[System]``; it imports its peer package inside that
function, so a peer that is not installed raises ImportError there and is reported as
missing (with the reason) instead of being dropped.

A workload function takes a :class:`bench.common.Params` and returns, for a throughput
workload (and Q3's time per message), ``{"messages": int, "seconds": float}`` and, for
W5, the latency percentiles
of :func:`bench.common.percentiles`. It runs its processes through
:func:`bench.common.run_workers` and checks every message.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

# Module name -> systems it provides (the names are known even when the module cannot load).
MODULES = {
    "pyshm_sys": ["pyshm", "pyshm-blocking"],
    "pyshm_queue_sys": ["pyshm.Queue"],  # the object queue: Q1-Q4 only
    "mp_queue": ["mp.Queue"],
    "mp_pipe": ["mp.Pipe"],
    "shared_memory_sys": ["shared_memory", "one-copy floor"],  # the floor: Q2 only
    "faster_fifo_sys": ["faster-fifo"],
    "zmq_sys": ["pyzmq"],  # Q1, Q2 only
    "iceoryx2_sys": ["iceoryx2"],
    "c_core": ["C core"],
    "asyncio_sys": ["asyncio-socketpair", "executor-mp.Queue"],  # and pyshm-blocking's A1/A5
}


@dataclasses.dataclass
class System:
    name: str
    workloads: dict[str, Callable]  # workload -> fn(Params) -> dict
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # how it runs a workload
    unsupported: dict[str, str] = dataclasses.field(default_factory=dict)  # workload -> why not
    version: str = ""


def load() -> tuple[list[System], dict[str, str]]:
    """All systems that load, and {name: reason} for those that do not."""
    found: list[System] = []
    missing: dict[str, str] = {}
    for module, names in MODULES.items():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
            found.extend(mod.systems())
        except Exception as exc:  # ImportError, or a peer that cannot start here
            for name in names:
                missing[name] = f"{type(exc).__name__}: {exc}"
    return found, missing
