"""The original README example, as written there (imports added), run as a test; then
every Python example of README.rst, each run as a script of its own.

Two additions around it, both needed to keep the pytest session clean and meaningful:
the fork child ends with os._exit (0 after the loop, 1 with a traceback on an exception)
instead of falling through into the rest of the session, and the parent asserts the
child's exit status.
"""
import os
import struct
import traceback

import pytest


def test_readme_example():
    from pyshm import ShareMem
    test_shm = ShareMem(64*1024*1024) # 64M
    from pyshm import mempool
    count = 4
    mp = mempool.Mempool(count, 4, shm=test_shm)
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(count):
                buf = mp.get()
                struct.pack_into("=i", buf, 0, i)
                mp.put(buf)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    else:
        cid, status = os.wait()
        assert pid == cid
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
        for i in range(count):
            buf = mp.get()
            v, = struct.unpack_from("=i", buf)
            assert v == i
        mp.cleanup()

    # (not in the README) the region is released once the last block view is gone
    assert test_shm.closed is False
    del buf
    test_shm.cleanup()
    assert test_shm.closed is True


# --- every Python example of README.rst, run as a script -------------------------------------

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")


def readme_examples():
    """The literal blocks of README.rst (a paragraph ending in ``::``, then an indented
    block) that are Python: those with an import. Returns (line, code) pairs."""
    import textwrap

    with open(README) as f:
        lines = f.read().splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::") and not lines[i].lstrip().startswith(".."):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            start = j
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith("    ")):
                j += 1
            code = textwrap.dedent("\n".join(lines[start:j])).strip("\n")
            if "import " in code:
                found.append((start + 1, code))
            i = j
        else:
            i += 1
    return found


EXAMPLES = readme_examples()


def test_readme_has_examples():
    # The landing page's example and the original library's (the rest is in docs/,
    # whose examples tests/test_docs_examples.py runs).
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("line,code", EXAMPLES, ids=[f"line{n}" for n, _ in EXAMPLES])
def test_readme_example_runs(line, code, tmp_path):
    """Each example runs on its own, as a user would paste it into a file (spawn
    children re-import it, so it must be a real file), and exits 0."""
    import subprocess
    import sys

    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code + "\n")
    proc = subprocess.run([sys.executable, "-W", "error::ResourceWarning", str(script)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, f"README.rst line {line}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
