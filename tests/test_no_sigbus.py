"""A named region whose memory cannot be provided fails at creation, never with SIGBUS.

A named region lives in a file on /dev/shm (a tmpfs). A tmpfs hands out its pages when
they are first touched, so a file made larger than the room left would map fine and then
kill the process with SIGBUS on the first write past that room. pyshm reserves every page
of a named region when it creates it (src/core/region.c, pyshm_region_create_named), and
reports a lack of room as OSError(ENOSPC) whose message names the bytes free. An unnamed
region is an anonymous memfd, which /dev/shm's size does not bound.

Each case runs in a child Python inside a private mount namespace with a 64 MiB tmpfs
mounted on /dev/shm (``unshare -m``, root only). The child ends with os._exit(code); the
parent asserts the code and that no signal killed it. When the namespace or the mount is
not permitted here, the tests are skipped, saying why.
"""
import functools
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import pyshm

TMPFS_SIZE = 64 * 2**20
CHILD_TIMEOUT = 120

# The package the parent imported, first on the child's path, so that both test the same
# build (an in-place or instrumented one as well as an installed one).
PYSHM_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyshm.__file__)))

# The new mount namespace is private (no mount event reaches the host's /dev/shm), and
# `exec` makes the child Python the process that unshare runs, so a signal that kills it
# shows in the exit status the parent sees.
MOUNT_AND_RUN = 'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$0" -c "$1"'

# Helpers defined in every child.
PRELUDE = textwrap.dedent(
    """
    import errno, os, re, sys
    import pyshm

    MiB = 2**20
    PAGE = os.sysconf("SC_PAGE_SIZE")

    def free():
        st = os.statvfs("/dev/shm")
        return st.f_bavail * st.f_frsize

    def fail(code, why):
        print("child:", why, file=sys.stderr, flush=True)
        os._exit(code)

    def check(cond, code, why):
        if not cond:
            fail(code, why)

    def room_in(msg):
        m = re.search(r"has (\\d+) bytes free", msg)
        return int(m.group(1)) if m else None

    def expect_no_room(size, name, code):
        '''Creating the named region must raise OSError(ENOSPC) naming the room left.'''
        before = free()
        try:
            shm = pyshm.ShareMem(size, name=name)
        except OSError as e:
            check(type(e) is OSError, code, f"expected OSError, got {type(e).__name__}: {e}")
            check(e.errno == errno.ENOSPC, code, f"expected errno ENOSPC, got {e.errno}: {e}")
            msg = str(e)
            room = room_in(msg)
            check(room is not None, code + 1, f"the message does not say how much room there is: {msg!r}")
            # The room it names is what the file system has free (the failed attempt's
            # partial reservation given back): the same as statvfs says now.
            check(abs(room - free()) <= PAGE, code + 2, f"message says {room} bytes free, statvfs {free()}: {msg!r}")
            check(name in msg, code + 3, f"the message does not name the region: {msg!r}")
            m = re.search(r"ShareMem of (\\d+) bytes", msg)
            check(m is not None and int(m.group(1)) >= size, code + 3, f"the message does not give the size asked: {msg!r}")
            # Nothing left behind: no file, no room taken.
            check(not os.path.exists("/dev/shm/" + name), code + 4, f"/dev/shm/{name} left behind")
            check(free() == before, code + 4, f"room not given back: {before} free before, {free()} after")
            return msg
        except BaseException as e:
            fail(code, f"expected OSError(ENOSPC), got {type(e).__name__}: {e}")
        shm.cleanup()
        fail(code, f"ShareMem({size}, name={name!r}) succeeded with {before} bytes free on /dev/shm")

    def write_all(buf, code):
        '''Write every page of buf, then read every page back.'''
        mv = memoryview(buf)
        n = len(mv)
        pattern = bytes(range(256)) * (PAGE // 256)
        for off in range(0, n, PAGE):
            end = min(off + PAGE, n)
            mv[off:end] = pattern[: end - off]
        for off in range(0, n, PAGE):
            end = min(off + PAGE, n)
            check(mv[off:end] == pattern[: end - off], code, f"page at {off} does not read back")
        mv.release()
        return n

    def touch_all(shm, code):
        '''Carve a RawBuffer over (nearly) all of shm, write and read back every page of it.'''
        buf = pyshm.RawBuffer(shm.size - PAGE, shm)
        write_all(buf, code)
        return buf
    """
)


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYSHM_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _in_namespace(code, size=TMPFS_SIZE):
    """Run `code` in a child Python in a new mount namespace with a tmpfs on /dev/shm."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_RUN.format(size=size), sys.executable, code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        timeout=CHILD_TIMEOUT,
    )


@functools.lru_cache(maxsize=None)
def _namespace_unavailable():
    """None when a private mount namespace with its own /dev/shm can be made, else why not."""
    if sys.platform != "linux":
        return "needs Linux mount namespaces"
    if shutil.which("unshare") is None:
        return "needs unshare(1) (util-linux) on PATH"
    try:
        probe = _in_namespace(
            "import os; st = os.statvfs('/dev/shm'); "
            "os._exit(0 if st.f_blocks * st.f_frsize == 1024 * 1024 else 3)",
            size="1m",
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"could not run unshare: {e}"
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()
        return (
            "cannot make a mount namespace with a tmpfs on /dev/shm here "
            f"(unshare --mount + mount exited {probe.returncode}: {detail[-1] if detail else 'no output'}); "
            "needs root (CAP_SYS_ADMIN)"
        )
    return None


@pytest.fixture
def namespace():
    why = _namespace_unavailable()
    if why:
        pytest.skip(why)


def run_case(body):
    """Run PRELUDE + body in the namespace; assert it exited 0 and no signal killed it."""
    code = PRELUDE + textwrap.dedent(body) + "\nos._exit(0)\n"
    proc = _in_namespace(code)
    rc = proc.returncode
    report = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if rc < 0:
        name = signal.Signals(-rc).name
        pytest.fail(f"the child was killed by {name} (a page of shared memory could not be provided)\n{report}")
    assert rc == 0, f"child exit status {rc}\n{report}"
    return proc


def test_too_big_named_region_fails_at_creation(namespace):
    # 100 MiB asked of a 64 MiB tmpfs: OSError(ENOSPC) at creation, naming the room.
    run_case(
        """
        check(free() == 64 * MiB, 10, f"expected an empty 64 MiB tmpfs, {free()} free")
        msg = expect_no_room(100 * MiB, "big", 20)
        check(room_in(msg) == 64 * MiB, 30, f"expected 64 MiB free in the message: {msg!r}")
        print(msg)
        """
    )


def test_named_region_that_fits_is_reserved_and_every_page_writable(namespace):
    run_case(
        """
        shm = pyshm.ShareMem(16 * MiB, name="fits")
        # Reserved at creation: the room is taken before any page is touched.
        used = 64 * MiB - free()
        check(used >= 16 * MiB, 10, f"only {used} bytes of /dev/shm taken by a 16 MiB region before touching it")
        buf = touch_all(shm, 20)
        check(len(buf) >= 16 * MiB - 2 * PAGE, 21, f"touched only {len(buf)} bytes")
        check(64 * MiB - free() == used, 22, "touching the pages took more room: they were not reserved")
        shm.unlink()
        shm.cleanup()
        check(free() == 64 * MiB, 30, f"room not given back after unlink and cleanup: {free()} free")
        """
    )


def test_little_room_left(namespace):
    # Another file takes most of /dev/shm: a region bigger than the rest fails cleanly,
    # a smaller one works and every page of it can be written.
    run_case(
        """
        fd = os.open("/dev/shm/filler", os.O_RDWR | os.O_CREAT, 0o600)
        os.posix_fallocate(fd, 0, 54 * MiB)
        left = free()
        check(9 * MiB <= left <= 10 * MiB, 10, f"expected about 10 MiB left, {left} free")

        msg = expect_no_room(12 * MiB, "toobig", 20)
        check(abs(room_in(msg) - left) <= PAGE, 30, f"message names {room_in(msg)} bytes, {left} were free")

        small = pyshm.ShareMem(6 * MiB, name="small")
        buf = touch_all(small, 40)
        # Only about 3.9 MiB left now: 6 MiB more does not fit.
        expect_no_room(6 * MiB, "second", 50)

        # The real danger: fill /dev/shm to the last page after the region exists. Its
        # pages were reserved at creation, so writing all of them again still works.
        os.posix_fallocate(fd, 0, 54 * MiB + free())
        check(free() == 0, 60, f"could not fill /dev/shm: {free()} free")
        write_all(buf, 61)
        expect_no_room(1 * MiB, "none", 70)
        small.unlink()
        small.cleanup()
        os.close(fd)
        """
    )


def test_unnamed_gib_region_not_bound_by_dev_shm(namespace):
    # An unnamed region is a memfd: 1 GiB on a 64 MiB /dev/shm, even with /dev/shm full.
    # Only a few MiB are touched, so only those become resident.
    run_case(
        """
        fd = os.open("/dev/shm/filler", os.O_RDWR | os.O_CREAT, 0o600)
        os.posix_fallocate(fd, 0, free())
        check(free() == 0, 10, f"could not fill /dev/shm: {free()} free")

        shm = pyshm.ShareMem(2**30)
        check(shm.name is None and shm.size == 2**30, 20, f"unexpected region: {shm!r}")
        head = pyshm.RawBuffer(4 * MiB, shm)
        pool = pyshm.Mempool(64, 64 * 1024, shm=shm)
        # A buffer far into the region: its pages exist only once written.
        tail = pyshm.RawBuffer(2**30 - 16 * MiB, shm)

        mv = memoryview(head)
        mv[:] = b"\\xa5" * len(mv)
        check(mv[::PAGE].tobytes() == b"\\xa5" * (len(mv) // PAGE), 30, "head does not read back")
        mv.release()

        blocks = [pool.get() for _ in range(64)]
        for i, b in enumerate(blocks):
            b[:] = bytes([i]) * len(b)
        check(all(b[0] == i and b[-1] == i for i, b in enumerate(blocks)), 40, "pool blocks do not read back")
        pool.put_many(blocks)

        mv = memoryview(tail)
        last = len(mv) - 2 * MiB
        mv[:MiB] = b"\\x5a" * MiB
        mv[last:] = b"\\x3c" * (len(mv) - last)
        check(mv[0] == 0x5a and mv[-1] == 0x3c, 50, "tail does not read back")
        mv.release()

        check(free() == 0, 60, "an unnamed region took room on /dev/shm")
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        rss = int(status["VmRSS"].split()[0]) * 1024
        check(rss < 256 * MiB, 70, f"{rss} bytes resident: the 1 GiB region was made resident")
        print(f"resident {rss // MiB} MiB")
        del head, tail, pool
        shm.cleanup()
        os.close(fd)
        """
    )
