"""Named regions and named objects.

ShareMem(size, name=NAME) creates /dev/shm/NAME exclusively with mode 0600; any process
of the same user attaches it with ShareMem.attach(NAME) and finds pools and rings in it
by their names (Mempool.attach, Ring.attach). A named region pickles as its name. Files
that are not pyshm regions, or regions of another layout version, are refused.
"""
import itertools
import multiprocessing
import os
import pickle
import struct
import subprocess
import sys
import uuid

import pytest

import pyshm
from pyshm import Mempool, Ring, ShareMem, ShareMemError

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # spawn and forkserver children inherit sys.path
    sys.path.insert(0, _HERE)
import mp_helpers as h  # noqa: E402

_counter = itertools.count()


def unique_name():
    return f"pyshm-test-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def _unlink_quietly(name):
    try:
        os.unlink(f"/dev/shm/{name}")
    except FileNotFoundError:
        pass


@pytest.fixture
def name():
    """A fresh region name; whatever carries it is unlinked afterwards."""
    n = unique_name()
    try:
        yield n
    finally:
        _unlink_quietly(n)


def run_python(code, *args, stdin=None):
    """Run code in an unrelated interpreter that imports this pyshm."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (h.PYSHM_ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=h.GUARD,
    )


# --- creating -----------------------------------------------------------------------------


def test_create_is_exclusive_with_mode_0600(name):
    shm = ShareMem(1 << 16, name=name)
    try:
        st = os.stat(f"/dev/shm/{name}")
        assert st.st_mode & 0o777 == 0o600
        assert st.st_uid == os.getuid()
        assert shm.name.lstrip("/") == name
        with pytest.raises(FileExistsError):
            ShareMem(4096, name=name)
        with pytest.raises(FileExistsError):
            ShareMem(4096, name="/" + name)
        assert not shm.closed  # the failed create did not disturb the first
    finally:
        shm.unlink()
        shm.cleanup()


@pytest.mark.parametrize("bad", ["a/b", "/", ""])
def test_bad_region_name_is_value_error(bad):
    with pytest.raises(ValueError):
        ShareMem(4096, name=bad)


def test_non_str_region_name_is_type_error():
    with pytest.raises(TypeError):
        ShareMem(4096, name=b"bytes")


# --- attaching ----------------------------------------------------------------------------

ATTACH_AND_REPLY = r"""
import sys
import pyshm

shm = pyshm.ShareMem.attach(sys.argv[1])
pool = pyshm.Mempool.attach(shm, "frames")
ring = pyshm.Ring.attach(shm, "q")
assert pool.name == "frames" and ring.name == "q"
buf = ring.dequeue()
assert bytes(buf[:17]) == b"hello from parent", bytes(buf[:17])
assert bytes(buf[17:]) == bytes(range(len(buf) - 17)), "payload damaged"
pool.put(buf)
reply = pool.get()
reply[:16] = b"reply from child"
ring.enqueue(reply)
"""


def test_attach_from_unrelated_process(name):
    shm = ShareMem(1 << 16, name=name)
    try:
        pool = Mempool(4, 200, shm=shm, name="frames")
        ring = Ring(4, shm=shm, name="q")
        buf = pool.get()
        buf[:17] = b"hello from parent"
        buf[17:] = bytes(range(len(buf) - 17))
        ring.enqueue(buf)
        done = run_python(ATTACH_AND_REPLY, name)
        assert done.returncode == 0, done.stderr.decode()
        reply = ring.dequeue()
        assert bytes(reply[:16]) == b"reply from child"
        pool.put(reply)
        assert pool.free_count == pool.count and len(ring) == 0
    finally:
        shm.unlink()
    assert not os.path.exists(f"/dev/shm/{name}")


UNPICKLE_AND_REPLY = r"""
import pickle
import sys
import pyshm

pool, ring = pickle.load(sys.stdin.buffer)
assert ring.shm is pool.shm and pool.shm.name is not None
buf = ring.dequeue()
assert bytes(buf[:5]) == b"ping!"
buf[:5] = b"pong!"
ring.enqueue(buf)
"""


def test_named_region_pickles_as_its_name(name):
    shm = ShareMem(1 << 16, name=name)
    try:
        pool = Mempool(2, 64, shm=shm)
        ring = Ring(2, shm=shm)
        # in this process: the same objects' region
        assert pickle.loads(pickle.dumps(shm)) is shm
        pool2, ring2 = pickle.loads(pickle.dumps((pool, ring)))
        assert pool2.shm is shm and ring2.shm is shm
        # in an unrelated process, through plain pickle
        buf = pool.get()
        buf[:5] = b"ping!"
        ring.enqueue(buf)
        done = run_python(UNPICKLE_AND_REPLY, stdin=pickle.dumps((pool, ring)))
        assert done.returncode == 0, done.stderr.decode()
        buf = ring.dequeue()
        assert bytes(buf[:5]) == b"pong!"
        pool.put(buf)
    finally:
        shm.unlink()


def test_named_region_as_spawn_process_argument(name):
    ctx = multiprocessing.get_context("spawn")
    shm = ShareMem(1 << 16, name=name)
    try:
        pool = Mempool(4, 128, shm=shm)
        ring = Ring(4, shm=shm)
        back = Ring(4, shm=shm)
        for i in range(3):
            buf = pool.get()
            h.fill(buf, 40, i)
            ring.enqueue(buf)
        p = ctx.Process(target=h.verify_then_reply, args=(shm, pool, ring, back, 3, 40))
        p.start()
        assert h.join_all([p]) == [0]
        for i in range(3):
            buf = back.dequeue()
            h.check(buf, 41, i)
            pool.put(buf)
        assert pool.free_count == pool.count
    finally:
        shm.unlink()


def test_attach_in_same_process_sees_same_memory(name):
    shm = ShareMem(1 << 16, name=name)
    try:
        pool = Mempool(2, 64, shm=shm, name="frames")
        other = ShareMem.attach(name)  # may be shm itself: one object per region
        assert other.size == shm.size
        pool_there = Mempool.attach(other, "frames")
        buf = pool.get()
        assert pool_there.free_count == 1
        pool.put(buf)
        assert pool_there.free_count == 2
        pool_there.cleanup()
        if other is not shm:
            other.cleanup()
    finally:
        shm.unlink()


def test_attach_missing_name_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        ShareMem.attach(unique_name())


# --- unlinking ----------------------------------------------------------------------------


def test_unlink_removes_the_name_only(name):
    shm = ShareMem(1 << 16, name=name)
    try:
        pool = Mempool(2, 64, shm=shm, name="frames")
        assert os.path.exists(f"/dev/shm/{name}")
    finally:
        shm.unlink()
    assert not os.path.exists(f"/dev/shm/{name}")
    with pytest.raises(FileNotFoundError):
        ShareMem.attach(name)
    with pytest.raises(FileNotFoundError):
        shm.unlink()
    # the mapping is still there for who has it
    buf = pool.get()
    buf[:3] = b"abc"
    pool.put(buf)
    assert pool.free_count == 2
    # and the name can be used again, for a new region
    again = ShareMem(4096, name=name)
    try:
        with pytest.raises(ValueError, match="no Mempool"):
            Mempool.attach(again, "frames")
    finally:
        again.unlink()


def test_unlink_of_unnamed_region_is_value_error():
    shm = ShareMem(4096)
    with pytest.raises(ValueError):
        shm.unlink()
    shm.cleanup()


# --- object names -------------------------------------------------------------------------


@pytest.fixture
def region():
    shm = ShareMem(1 << 18)
    yield shm
    shm.cleanup()


def test_attach_objects_by_name(region):
    pool = Mempool(3, 96, shm=region, name="frames")
    ring = Ring(5, shm=region, name="q")
    assert pool.name == "frames" and ring.name == "q"
    pool2 = Mempool.attach(region, "frames")
    ring2 = Ring.attach(region, "q")
    assert (pool2.count, pool2.elt_size, ring2.count) == (3, 96, 5)
    assert pool2.shm is region and ring2.shm is region
    buf = pool2.get()
    h.fill(buf, 1, 1)
    ring2.enqueue(buf)
    buf = ring.dequeue()
    h.check(buf, 1, 1)
    pool.put(buf)
    assert Mempool(1, 8, shm=region).name is None
    assert Ring(1, shm=region).name is None


def test_attach_with_a_name_of_the_other_kind_says_which_kind(region):
    Mempool(2, 64, shm=region, name="frames")
    Ring(2, shm=region, name="q")
    with pytest.raises(ValueError, match="Ring") as info:
        Mempool.attach(region, "q")
    assert "Mempool" in str(info.value)
    with pytest.raises(ValueError, match="Mempool"):
        Ring.attach(region, "frames")


def test_attach_missing_object_name_is_value_error(region):
    Mempool(2, 64, shm=region, name="frames")
    with pytest.raises(ValueError, match="no Mempool named 'nope'"):
        Mempool.attach(region, "nope")
    with pytest.raises(ValueError, match="no Ring named 'nope'"):
        Ring.attach(region, "nope")


@pytest.mark.parametrize(
    "first, second",
    [
        (lambda s: Mempool(2, 64, shm=s, name="x"), lambda s: Mempool(2, 64, shm=s, name="x")),
        (lambda s: Ring(2, shm=s, name="x"), lambda s: Ring(2, shm=s, name="x")),
        (lambda s: Mempool(2, 64, shm=s, name="x"), lambda s: Ring(2, shm=s, name="x")),
        (lambda s: Ring(2, shm=s, name="x"), lambda s: Mempool(2, 64, shm=s, name="x")),
    ],
    ids=["pool-pool", "ring-ring", "pool-ring", "ring-pool"],
)
def test_duplicate_object_name_is_value_error(region, first, second):
    first(region)
    with pytest.raises(ValueError, match="already has an object named 'x'"):
        second(region)
    # names are per region
    other = ShareMem(1 << 16)
    second(other)
    other.cleanup()


def test_duplicate_object_name_from_another_process(region):
    Ring(2, shm=region, name="q")

    def child():
        with_error = False
        try:
            Ring(2, shm=region, name="q")
        except ValueError:
            with_error = True
        assert with_error, "a second 'q' was created in the child"
        Mempool(2, 64, shm=region, name="child-pool")

    h.assert_exit(h.fork_child(child))
    assert Mempool.attach(region, "child-pool").count == 2


@pytest.mark.parametrize("bad", ["", "n" * 64])
def test_bad_object_name_is_value_error(region, bad):
    with pytest.raises(ValueError):
        Mempool(2, 64, shm=region, name=bad)
    with pytest.raises(ValueError):
        Ring(2, shm=region, name=bad)


def test_longest_object_name(region):
    long_name = "n" * 63
    Ring(2, shm=region, name=long_name)
    assert Ring.attach(region, long_name).name == long_name


# --- what is not a pyshm region ---------------------------------------------------------


def _plain_file(name, size, content=b""):
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        if content:
            os.pwrite(fd, content, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "size, content",
    [(4096, b""), (4096, b"some text that is not a header" * 4), (16, b""), (0, b"")],
    ids=["zeros", "text", "tiny", "empty"],
)
def test_plain_file_is_not_a_region(name, size, content):
    _plain_file(name, size, content)
    with pytest.raises(ShareMemError, match="not a pyshm region") as info:
        ShareMem.attach(name)
    assert isinstance(info.value, pyshm.PyshmError)
    assert os.path.exists(f"/dev/shm/{name}")  # attach never removes what it refuses


def test_shared_memory_segment_is_not_a_region(name):
    from multiprocessing import shared_memory

    segment = shared_memory.SharedMemory(name=name, create=True, size=4096)
    try:
        segment.buf[:8] = b"not mine"
        with pytest.raises(ShareMemError, match="not a pyshm region"):
            ShareMem.attach(name)
    finally:
        segment.close()
        segment.unlink()


def _patch_u32(name, offset, value):
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("=I", value), offset)
    finally:
        os.close(fd)


@pytest.mark.parametrize("version", [0, pyshm.LAYOUT_VERSION + 1, 0xFFFFFFFF])
def test_other_layout_version_is_refused(name, version):
    shm = ShareMem(1 << 16, name=name)
    try:
        Mempool(2, 64, shm=shm, name="frames")
        # region header: u64 magic at 0, u32 layout_version at 8
        with memoryview(shm) as whole:
            assert struct.unpack_from("=I", whole, 8)[0] == pyshm.LAYOUT_VERSION
        _patch_u32(name, 8, version)
        with pytest.raises(ShareMemError, match="layout version"):
            ShareMem.attach(name)
        _patch_u32(name, 8, pyshm.LAYOUT_VERSION)
        again = ShareMem.attach(name)  # as it was: attaches again
        assert Mempool.attach(again, "frames").count == 2
        again.cleanup()
    finally:
        shm.unlink()
        shm.cleanup()


def test_wrong_magic_is_not_a_region(name):
    shm = ShareMem(1 << 16, name=name)
    try:
        _patch_u32(name, 0, 0x12345678)
        with pytest.raises(ShareMemError, match="not a pyshm region"):
            ShareMem.attach(name)
    finally:
        shm.unlink()
        shm.cleanup()


# --- pickling must not close the caller's own handles ------------------------------------


def test_pickling_leaves_every_handle_open(name):
    """The package maps each region to one object per process; attaching the region
    again and pickling a pool of it must not clean up any handle the caller holds."""
    shm = ShareMem(1 << 16, name=name)
    try:
        pickle.dumps(shm)
        other = ShareMem.attach(name)
        pool = Mempool(2, 64, shm=other)
        held = pool.get()
        pickle.dumps(pool)  # with a view alive: must not try to unmap anything
        pickle.dumps(pool.shm)
        assert not other.closed and not shm.closed
        pool.put(held)
        pickle.dumps(pool)
        assert not other.closed and not shm.closed
        buf = pool.get()
        pool.put(buf)
        if other is not shm:
            other.cleanup()
    finally:
        shm.unlink()


def test_failed_named_create_leaves_no_name(name):
    with pytest.raises(ValueError):
        ShareMem(1 << 47, name=name)  # beyond the largest region
    assert not os.path.exists(f"/dev/shm/{name}")
