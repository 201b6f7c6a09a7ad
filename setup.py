"""Build of pyshm's one C extension, pyshm._pyshm. Metadata lives in pyproject.toml."""
import glob
import os

from setuptools import Extension, setup

# The C core (src/core, pure C11, no Python.h) and the CPython binding (src/ext).
# tests/test_build.py checks that these lists name every .c file of the two folders.
CORE = [
    "src/core/block_ring.c",
    "src/core/fault.c",
    "src/core/inspect.c",
    "src/core/liveness.c",
    "src/core/member.c",
    "src/core/mempool.c",
    "src/core/pool_table.c",
    "src/core/queue.c",
    "src/core/rawbuf.c",
    "src/core/region.c",
    "src/core/repair.c",
    "src/core/space.c",
    "src/core/wait.c",
    "src/core/waitmany.c",
]
BINDING = [
    "src/ext/aio.c",
    "src/ext/args.c",
    "src/ext/block_type.c",
    "src/ext/carved.c",
    "src/ext/errors.c",
    "src/ext/inspect.c",
    "src/ext/message.c",
    "src/ext/mempool_type.c",
    "src/ext/module.c",
    "src/ext/rawbuf_type.c",
    "src/ext/ring_type.c",
    "src/ext/shm_type.c",
    "src/ext/waiting.c",
]
# Kill points for the tests (src/core/fault.h); never in a build for use.
FAULT_INJECTION = os.environ.get("PYSHM_FAULT_INJECTION") == "1"

setup(
    ext_modules=[
        Extension(
            "pyshm._pyshm",
            sources=CORE + BINDING,
            include_dirs=["src/core", "src/ext"],
            depends=sorted(glob.glob("src/core/*.h") + glob.glob("src/ext/*.h")),
            define_macros=[("PYSHM_FAULT_INJECTION", "1")] if FAULT_INJECTION else [],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-O2"],
        )
    ],
)
