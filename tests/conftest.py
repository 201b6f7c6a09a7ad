"""Shared helpers for the pyshm test suite.

Multi-process tests fork. Every forked child runs its function under ``fork_child``,
which always ends the child with ``os._exit`` (0 on success, 1 on an exception, after
printing the traceback), so a child never returns into pytest. The parent reaps it with
``wait_child``, which asserts the exit status is 0.
"""
import contextlib
import gc
import mmap
import os
import select
import signal
import sys
import time
import traceback

import pytest

import pyshm

# tests/legacy/ reproduces an old suite whose fork children fall through into the rest
# of the pytest session. It runs only on its own, in a subprocess
# (tests/test_legacy_suite.py), never as part of the main run.
collect_ignore = ["legacy"]

# Generous guard so that a deadlocked child fails the test instead of hanging the
# session. It is not a performance assertion: healthy children finish in seconds.
CHILD_HANG_GUARD = 300.0


def _flush_std():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def fork_child(fn, *args, **kwargs):
    """Fork; run ``fn(*args, **kwargs)`` in the child and end it with ``os._exit``.

    Exit code: 0 when fn returns (or the int fn returns, if it returns one), 1 when it
    raises (the traceback is printed to stderr first). Returns the child's pid.
    """
    _flush_std()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            result = fn(*args, **kwargs)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except BaseException:
            try:
                traceback.print_exc()
            except BaseException:
                pass
            code = 1
        finally:
            _flush_std()
            os._exit(code)
    return pid


def child_status(pid, guard=CHILD_HANG_GUARD):
    """Reap ``pid``; return its exit code, or -signal if it was killed by a signal."""
    deadline = time.monotonic() + guard
    delay = 0.0005
    while True:
        cid, status = os.waitpid(pid, os.WNOHANG)
        if cid == pid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not finish (hang guard of {guard:.0f}s); killed it")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_child(pid, guard=CHILD_HANG_GUARD):
    """Reap ``pid`` and assert it exited with status 0 (not signalled, not nonzero)."""
    code = child_status(pid, guard)
    assert code == 0, (
        f"child {pid} " + (f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
        + " (its traceback, if any, is in the captured stderr)"
    )


def run_in_child(fn, *args, **kwargs):
    """Run fn in a forked child and assert it succeeded."""
    wait_child(fork_child(fn, *args, **kwargs))


class Signal:
    """A one-byte pipe used to order steps between a parent and a forked child.

    Both ends stay open in both processes; ``send`` writes a byte, ``recv`` blocks for one.
    """

    def __init__(self):
        self.r, self.w = os.pipe()

    def send(self):
        os.write(self.w, b"x")

    def recv(self, guard=CHILD_HANG_GUARD):
        ready, _, _ = select.select([self.r], [], [], guard)
        assert ready, f"no signal from the other process within the hang guard ({guard:.0f}s)"
        data = os.read(self.r, 1)
        assert data == b"x", "the other process closed the signal pipe"

    def close(self):
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def signal_pair():
    """Two pipes: ``to_child`` and ``to_parent``."""
    a, b = Signal(), Signal()
    yield a, b
    a.close()
    b.close()


@pytest.fixture(autouse=True)
def _no_default_region_leaks():
    """The default region is process-global: no test may leave one behind in the
    pytest process (tests that need it run in a forked child)."""
    yield
    with pytest.raises(pyshm.ShareMemError):
        pyshm.get_shm()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item._pyshm_call_failed = rep.failed
    return rep


@pytest.fixture
def shm(request):
    """A fresh 1 MiB region, cleaned up afterwards.

    A passing test must have released every view into it (cleanup() would raise
    BufferError otherwise). After a failing test the traceback keeps the test's views
    alive, so the region is then left to the garbage collector instead of adding a
    second, misleading error.
    """
    region = pyshm.ShareMem(1 << 20)
    yield region
    gc.collect()
    try:
        region.cleanup()
    except BufferError:
        if not getattr(request.node, "_pyshm_call_failed", False):
            raise


@contextlib.contextmanager
def raw_region(shm):
    """The region's file mapped a second time, writable, as a faulty or hostile process
    sees it (memoryview(shm) is read-only). Offsets are region offsets."""
    with mmap.mmap(shm.fileno(), 0) as raw:
        yield raw


def find_bytes_offset(shm, marker):
    """Offset in the region where ``marker`` occurs (exactly once), via memoryview(shm)."""
    with memoryview(shm) as whole:
        data = bytes(whole)
    first = data.find(marker)
    assert first >= 0, "marker not found in the region"
    assert data.find(marker, first + 1) < 0, "marker found twice in the region"
    return first
