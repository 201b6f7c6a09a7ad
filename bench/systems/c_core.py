"""W6, the floor: W1's hand-off in C against pyshm's core (bench/c/handoff.c), between
two processes, one element at a time (W6) and in bursts of 32 (W6b). Also the pool
creation figures as the core sees them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from ..common import Params
from . import System

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
SOURCE = os.path.join(BENCH, "c", "handoff.c")
BINARY = os.path.join(BENCH, "c", "build", "handoff")
CORE = os.path.join(ROOT, "src", "core")


def build() -> str:
    """Compile handoff.c with the core, as the issue says: gcc -O2 -std=c11 -Isrc/core, with
    every src/core/*.c (the core sources setup.py lists)."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler ({cc}) on PATH")
    core = sorted(os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith(".c"))
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    cmd = [cc, "-O2", "-std=c11", f"-I{CORE}", "-o", BINARY, SOURCE, *core]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {SOURCE} failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return BINARY


def systems() -> list[System]:
    build()
    return [
        System(
            name="C core",
            workloads={"W6": lambda p: _handoff("single", p), "W6b": lambda p: _handoff("burst", p)},
            notes={
                "W6": "pyshm_pool_get / block_ring_enqueue | block_ring_dequeue / pool_put, one block, spin",
                "W6b": "the same calls with up to 32 blocks each, spin",
            },
        )
    ]


def _run(args: list[str], timeout: float) -> dict:
    try:
        proc = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"handoff {' '.join(args)} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        from ..common import BenchFailure

        msg = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise BenchFailure(f"handoff {' '.join(args)}: {msg}", verification="check failed" in msg)
    return json.loads(proc.stdout)


def _handoff(mode: str, p: Params) -> dict:
    out = _run([mode, str(p.warm), str(p.n)], p.timeout)
    return {"messages": out["n"], "seconds": out["seconds"]}


def pool_creation(count: int = 1_000_000, elt_size: int = 1024, region: int = 1 << 30) -> dict:
    out = _run(["pool", str(count), str(elt_size), str(region)], 60)
    out.pop("mode", None)
    return out


def line_round_trip(rounds: int = 200_000) -> float:
    """ns for one cache line to go from one process to the other and back."""
    return _run(["lines", str(rounds)], 60)["round_trip_ns"]
