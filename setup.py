"""Build of pyshm's one C extension, pyshm._pyshm. Metadata lives in pyproject.toml."""
from setuptools import Extension, setup

CORE = [
    "src/core/region.c",
    "src/core/mempool.c",
    "src/core/block_ring.c",
    "src/core/wait.c",
]
BINDING = [
    "src/ext/module.c",
    "src/ext/shm_type.c",
    "src/ext/mempool_type.c",
    "src/ext/ring_type.c",
    "src/ext/block_type.c",
    "src/ext/waiting.c",
]

setup(
    ext_modules=[
        Extension(
            "pyshm._pyshm",
            sources=CORE + BINDING,
            include_dirs=["src/core", "src/ext"],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-O2"],
        )
    ],
)
