"""Build of pyshm's one C extension, pyshm._pyshm. Metadata lives in pyproject.toml."""
import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CORE = [
    "src/core/region.c",
    "src/core/mempool.c",
    "src/core/block_ring.c",
    "src/core/wait.c",
    "src/core/process.c",
    "src/core/fault.c",
    "src/core/announce.c",
    "src/core/repair.c",
]
# Kill points for the tests (src/core/fault.h); never in a build for use.
FAULT_INJECTION = os.environ.get("PYSHM_FAULT_INJECTION") == "1"
BINDING = [
    "src/ext/module.c",
    "src/ext/shm_type.c",
    "src/ext/mempool_type.c",
    "src/ext/ring_type.c",
    "src/ext/block_type.c",
    "src/ext/waiting.c",
]
SOURCE_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyshm")


class build_ext_also_in_source(build_ext):
    """Build as usual, then also copy the extension next to pyshm/__init__.py.

    `python -m pyshm` and `python -m pytest tests`, run from the root of a clone, import
    ./pyshm before the installed package (`-m` puts the current directory first on
    sys.path). With the extension beside it, the README's commands work from a fresh
    clone right after `pip install .`.
    """

    def run(self):
        super().run()
        if self.inplace or FAULT_INJECTION or not os.access(SOURCE_PACKAGE, os.W_OK):
            return
        for ext in self.extensions:
            built = self.get_ext_fullpath(ext.name)
            self.copy_file(built, os.path.join(SOURCE_PACKAGE, os.path.basename(built)))


setup(
    cmdclass={"build_ext": build_ext_also_in_source},
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
