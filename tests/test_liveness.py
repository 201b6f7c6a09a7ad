"""Liveness that cannot mistake the living for the dead.

pyshm tells whether a member of a region is alive by an OFD lock it holds on one byte of
the region's file (src/core/liveness.h), not by /proc. These tests put a live holder and,
where possible, a dead one where /proc says nothing or lies, and check that another
process's ``Mempool.reclaim()`` never frees a block of the live one and does return the
dead one's:

1. no /proc at all (a mount namespace where it is unmounted): a named region, where every
   process reopens the file by name for its lock; an unnamed one created before /proc went
   away, whose fork children cannot open a private description and join NOLOCK (pid,
   pid namespace, pidfd inode: a dead one is gone once reaped, or once its pid names
   another process); and an unnamed one where no process has /proc (nobody there can
   repair; a process with /proc that receives the descriptor can);
2. /proc mounted with hidepid=2, holder and repairer of different users;
3. holder and repairer in different PID namespaces, both ways; and NOLOCK holders in a
   PID namespace of their own, with a pid that names no process outside (an outside
   repairer cannot tell, so keeps all; one inside returns the dead one's);
4. a holder whose main thread has called pthread_exit (state Z in /proc) while another
   thread holds its blocks;
5. a fork child (and an exec'd one) outliving the parent that held blocks;
6. a live holder whose recorded pid is overwritten with a dead one (and a dead one whose
   pid is overwritten with a live one).

The child programs are in tests/liveness_helpers.py. The namespaces need root and
util-linux's ``unshare``; the tests skip only when those are missing or refused.
"""
import ctypes
import gc
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest

import liveness_helpers as lh
from conftest import fork_child, raw_region, wait_child
from pyshm import Mempool, ShareMem

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER = os.path.join(HERE, "liveness_helpers.py")
GUARD = 120.0  # hang guard for another process's answer; never a timing assertion
COUNT = 16
NOBODY = 65534
OTHER_UID = 4242  # a second unprivileged uid; needs no passwd entry
_names = itertools.count()


# ---- environment ------------------------------------------------------------------------


def _skip_unless_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, mounts and other uids")


_unshare_ok = {}


def _need_unshare(*flags):
    """Skip unless `unshare FLAGS true` works here (the tool exists and is allowed)."""
    _skip_unless_root()
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    if flags not in _unshare_ok:
        r = subprocess.run(["unshare", *flags, "true"], capture_output=True, text=True)
        _unshare_ok[flags] = (r.returncode == 0, r.stderr.strip())
    ok, why = _unshare_ok[flags]
    if not ok:
        pytest.skip(f"unshare {' '.join(flags)} is refused here: {why}")


def helper(role, **args):
    return [sys.executable, HELPER, role, json.dumps(args)]


def without_proc(argv):
    """argv in a new mount namespace where /proc is unmounted."""
    return ["unshare", "--mount", "--fork", "--kill-child", "sh", "-c", 'umount -l /proc && exec "$@"', "sh", *argv]


def in_mount_ns(argv):
    """argv in a new mount namespace (it unmounts /proc itself, later)."""
    return ["unshare", "--mount", "--fork", "--kill-child", *argv]


def with_hidepid(argv):
    """argv in a new mount namespace whose /proc is a fresh proc mounted hidepid=2 (the
    host's /proc is left as it is)."""
    mount = 'mount -t proc -o hidepid=2 proc /proc && exec "$@"'
    return ["unshare", "--mount", "--fork", "--kill-child", "sh", "-c", mount, "sh", *argv]


def in_pid_ns(argv):
    return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *argv]


class Child:
    """A subprocess speaking JSON lines on stdin/stdout (liveness_helpers.py)."""

    def __init__(self, argv, pass_fds=()):
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, pass_fds=pass_fds, cwd=HERE, bufsize=0
        )
        self.buf = b""

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def read(self):
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.p.stdout], [], [], GUARD)
            if not ready:
                self.kill()
                pytest.fail(f"no answer from {self.p.args[:6]} within the hang guard\n{self.stderr()}")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                rc = self.p.wait(GUARD)
                pytest.fail(f"{self.p.args[:6]} ended (status {rc}) without answering:\n{self.stderr()}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, cmd):
        self.p.stdin.write(cmd.encode() + b"\n")

    def wait(self):
        try:
            return self.p.wait(GUARD)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.p.args[:6]} did not end within the hang guard\n{self.stderr()}")

    def expect_exit(self, code):
        rc = self.wait()
        assert rc == code, f"exit status {rc}, expected {code}; stderr:\n{self.stderr()}"

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def close(self):
        # Closing stdin ends a helper that still waits for a command (it exits at EOF);
        # killing the unshare wrapper kills its child too (--kill-child).
        self.p.stdin.close()
        self.kill()
        self.p.stdout.close()
        self.err.close()


@pytest.fixture
def children():
    """Children started in a test; any still running at the end is killed."""
    started = []

    def start(argv, pass_fds=()):
        c = Child(argv, pass_fds)
        started.append(c)
        return c

    yield start
    for c in started:
        c.close()


def unique_name():
    return f"pyshm-liveness-{os.getpid()}-{next(_names)}"


@pytest.fixture
def named():
    """A named region, readable and writable by every user (holders and repairers of other
    uids attach it), with a pool "p" of COUNT blocks."""
    name = unique_name()
    shm = ShareMem(1 << 20, name=name)
    os.chmod(f"/dev/shm/{name}", 0o666)
    pool = Mempool(COUNT, 64, shm=shm, name="p")
    yield name, shm, pool
    gc.collect()
    pool.cleanup()
    shm.unlink()
    shm.cleanup()


def hold(start, name, n, wrap=lambda argv: argv, **extra):
    """Start a holder of n blocks of pool "p" of region `name`; wait until it holds them."""
    c = start(wrap(helper("hold", name=name, pool="p", n=n, **extra)))
    c.state = c.read()
    return c


def release(c):
    """The holder checks that its blocks still carry its marks, then puts them back."""
    c.send("check")
    assert c.read()["intact"], "a live holder's blocks were overwritten"
    c.send("put")
    assert c.read() == {"put": True, "intact": True}
    c.expect_exit(0)


def die(c):
    """The holder exits still holding its blocks (the kernel drops its lock)."""
    c.send("die")
    c.expect_exit(lh.EXIT_DIED_HOLDING)


def repair_elsewhere(start, argv):
    c = start(argv)
    report = c.read()
    c.expect_exit(0)
    return report


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state_z(pid):
    """Wait (hang guard only) until the host's /proc shows `pid` as Z: its main thread has
    exited while another runs. Read by the test, not by pyshm."""
    deadline = time.monotonic() + GUARD
    while proc_state(pid) != "Z":
        assert time.monotonic() < deadline, f"{pid} never showed state Z"
        time.sleep(0.001)
    tasks = os.listdir(f"/proc/{pid}/task")
    assert len(tasks) >= 2, f"expected the zombie main thread and a live one, /proc shows tasks {tasks}"


LOCKED = lh.OWNER_OWNED | lh.OWNER_READY
NOLOCK = lh.OWNER_OWNED | lh.OWNER_NOLOCK | lh.OWNER_READY


def owner_flags(shm, pool, pid):
    entries = lh.entries_of_pid(shm, pool, pid)
    assert len(entries) == 1, entries
    return lh.entry_of(shm, next(iter(entries)))[0] & 7


# ---- 1. no /proc --------------------------------------------------------------------------


def test_no_proc_named_region_is_decisive_both_ways(children):
    """No /proc in the namespace: holders reopen the named file for their lock, so a live
    one keeps its blocks and a dead one's come back."""
    _need_unshare("--mount", "--fork")
    name = unique_name()
    try:
        c = children(without_proc(helper("noproc_named", name=name)))
        report = c.read()["report"]
        c.expect_exit(0)
    finally:
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")
    assert report["flags"] == {"live": LOCKED, "dead": LOCKED}, "holders without /proc should still hold a lock"
    assert report["returned"] == 2 and report["free_after"] == COUNT - 3


def test_no_proc_unnamed_region_nolock_holders(children):
    """An unnamed region whose creator (the repairer) opened its lock description while
    /proc was there; /proc then goes away and its fork children, which cannot open one,
    join NOLOCK. A live one, and one whose main thread has exited (Z in /proc), keep their
    blocks; a dead one's, once reaped, come back (same pid namespace, pid gone), and so do
    those of a dead one whose recorded pid now names another live process (pidfd inode
    differs)."""
    _need_unshare("--mount", "--fork")
    c = children(in_mount_ns(helper("noproc_unnamed")))
    zombie = c.read()["zombie"]
    wait_state_z(zombie)  # the same pid namespace: the host's /proc shows it
    c.send("zombie-seen")
    report = c.read()["report"]
    c.expect_exit(0)
    assert report["flags"] == {"live": NOLOCK, "dead": NOLOCK, "reused": NOLOCK, "zombie": NOLOCK}
    # A dead NOLOCK holder not reaped yet is a zombie, which cannot be told from a live
    # process without /proc: judged alive until reaped (reported, not required).
    assert report["returned_unreaped"] + report["returned_dead"] == 2
    assert report["returned_zombie"] == 4
    if not report["pidfs_known"]:
        pytest.skip("no pidfs (Linux < 6.9): a reused pid of a NOLOCK holder cannot be told (checked: judged alive)")
    assert report["returned_reused"] == 1


def test_no_proc_anywhere_unnamed_region(children):
    """No process of the namespace can open a private description of an unnamed region:
    all are NOLOCK, and none can repair (reclaim() refuses, nothing is freed). A process
    with /proc that receives the descriptor can: it returns the dead holder's blocks and
    leaves the live one's, judged by pid namespace, pid and pidfd inode."""
    _need_unshare("--mount", "--fork")
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with mine:
        try:
            c = children(without_proc(helper("noproc_nolock", sock=theirs.fileno())), pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        sent = c.read()
        assert "cannot repair" in sent["reclaim_error"]
        assert sent["flags"] == {"live": NOLOCK, "dead": NOLOCK}
        _, fds, _, _ = socket.recv_fds(mine, 16, 1)
        assert len(fds) == 1
    shm = ShareMem._from_fd(fds[0])
    pool = Mempool.attach(shm, "p")
    try:
        assert pool.free_count == COUNT - 5
        assert pool.reclaim() == 2, "the dead NOLOCK holder's blocks should come back, not the live one's"
        assert pool.free_count == COUNT - 3
        c.send("reclaimed")
        report = c.read()["report"]
        c.expect_exit(0)
        assert report == {"free_seen_after_outside_reclaim": COUNT - 3, "free_end": COUNT}
    finally:
        pool.cleanup()
        shm.cleanup()


# ---- 2. hidepid=2 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "holder_uid, repairer_uid", [(0, NOBODY), (NOBODY, OTHER_UID)], ids=["holder-root", "holder-nobody"]
)
def test_hidepid_repairer_cannot_see_holder(children, named, holder_uid, repairer_uid):
    """The repairer runs under a /proc mounted hidepid=2, as a user that cannot see the
    holders there: the live holder keeps its blocks, the dead one's come back."""
    _need_unshare("--mount", "--fork")
    name, shm, pool = named
    live = hold(children, name, 3, uid=holder_uid)
    dead = hold(children, name, 2, uid=holder_uid)
    assert live.state["uid"] == holder_uid and dead.state["uid"] == holder_uid
    assert owner_flags(shm, pool, live.state["pid"]) == LOCKED
    repairer = with_hidepid(helper("reclaim", name=name, pool="p", uid=repairer_uid, pids=[live.state["pid"]]))

    report = repair_elsewhere(children, repairer)
    assert report["uid"] == repairer_uid and report["proc_self"]
    assert report["visible"] == {str(live.state["pid"]): False}, "hidepid=2 should hide the holder"
    assert report["returned"] == 0 and report["free_after"] == COUNT - 5

    die(dead)
    report = repair_elsewhere(children, repairer)
    assert report["visible"] == {str(live.state["pid"]): False}
    assert report["returned"] == 2 and report["free_after"] == COUNT - 3
    release(live)
    assert pool.free_count == COUNT


# ---- 3. PID namespaces ----------------------------------------------------------------------


def test_holders_in_their_own_pid_namespaces(children, named):
    """Each holder is pid 1 of its own PID namespace (the same recorded pid for both, and
    one that means init out here); the repairer is outside."""
    _need_unshare("--pid", "--fork", "--mount-proc")
    name, shm, pool = named
    live = hold(children, name, 3, wrap=in_pid_ns)
    dead = hold(children, name, 2, wrap=in_pid_ns)
    assert live.state["pid"] == 1 and dead.state["pid"] == 1
    assert pool.reclaim() == 0 and pool.free_count == COUNT - 5
    die(dead)
    assert pool.reclaim() == 2
    assert pool.free_count == COUNT - 3
    release(live)
    assert pool.free_count == COUNT


def test_repairer_in_its_own_pid_namespace(children, named):
    """The holders are out here; the repairer is pid 1 of a new PID namespace, where their
    pids name no process."""
    _need_unshare("--pid", "--fork", "--mount-proc")
    name, shm, pool = named
    live = hold(children, name, 3)
    dead = hold(children, name, 2)
    repairer = in_pid_ns(helper("reclaim", name=name, pool="p", pids=[live.state["pid"]]))
    report = repair_elsewhere(children, repairer)
    assert report["pid"] == 1 and report["visible"] == {str(live.state["pid"]): False}
    assert report["returned"] == 0 and report["free_after"] == COUNT - 5
    die(dead)
    report = repair_elsewhere(children, repairer)
    assert report["returned"] == 2 and report["free_after"] == COUNT - 3
    release(live)
    assert pool.free_count == COUNT


def test_nolock_holders_in_another_pid_namespace(children):
    """NOLOCK holders (unnamed region, no /proc) in a PID namespace of their own; the live
    one has a pid that names no process out here. A repairer out here cannot tell anything
    of them and keeps both (the dead one's blocks too); a repairer in their namespace
    returns the dead one's and keeps the live one's."""
    _need_unshare("--pid", "--fork", "--mount-proc")
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with mine:
        try:
            c = children(
                in_pid_ns(helper("pidns_nolock", sock=theirs.fileno(), pid=dead_pid())), pass_fds=[theirs.fileno()]
            )
        finally:
            theirs.close()
        sent = c.read()
        assert sent["flags"] == {"live": NOLOCK, "dead": NOLOCK}
        _, fds, _, _ = socket.recv_fds(mine, 16, 1)
        assert len(fds) == 1
    shm = ShareMem._from_fd(fds[0])
    pool = Mempool.attach(shm, "p")
    try:
        assert pool.free_count == COUNT - 5
        assert pool.reclaim() == 0, "a pid of another namespace was read as one of this namespace"
        assert pool.free_count == COUNT - 5
        c.send("outside-done")
        assert c.read()["report"] == {"returned_inside": 2}
        c.expect_exit(0)
        assert pool.free_count == COUNT
    finally:
        pool.cleanup()
        shm.cleanup()


# ---- 4. zombie main thread ---------------------------------------------------------------


def test_zombie_main_thread_holder(children, named):
    """A holder whose main thread called pthread_exit while another thread holds its
    blocks shows state Z in /proc: it is alive, and keeps them; once the whole process
    has exited they come back."""
    name, shm, pool = named
    live = hold(children, name, 3, zombie_main=True)
    pid = live.state["pid"]
    assert live.state["main_thread_gone"]
    assert owner_flags(shm, pool, pid) == LOCKED
    wait_state_z(pid)
    assert pool.reclaim() == 0
    assert pool.free_count == COUNT - 3
    assert proc_state(pid) == "Z"
    live.send("check")
    assert live.read()["intact"]
    die(live)
    assert pool.reclaim() == 3
    assert pool.free_count == COUNT


# ---- 5. fork children -----------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


@pytest.mark.parametrize("kind", ["unnamed", "named"])
def test_children_outliving_their_parent(request, kind):
    """A holder forks two children (one takes blocks of its own, one never touches pyshm)
    and spawns an exec'd one, then dies holding its blocks. Its blocks come back although
    the children, which inherited its lock description, live on (a fork child closes its
    copy at once, exec closes it too); the child's own blocks stay its own."""
    if kind == "named":
        _, shm, pool = request.getfixturevalue("named")
    else:
        shm = ShareMem(1 << 20)
        pool = Mempool(COUNT, 64, shm=shm, name="p")
    try:

        def director():
            # The holder's children are reparented here when it dies, so their exit
            # codes can be asserted.
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            c_ready, c_go, i_ready, i_go = lh.Pipe(), lh.Pipe(), lh.Pipe(), lh.Pipe()
            info_r, info_w = os.pipe()
            cat_r, cat_w = os.pipe()

            def holder():
                views = [pool.get() for _ in range(3)]
                lh.fill(views, "parent")

                def user():
                    mine = [pool.get() for _ in range(2)]
                    lh.fill(mine, "child")
                    c_ready.send()
                    c_go.recv()
                    ok = lh.intact(mine, "child")
                    pool.put_many(mine)
                    return 0 if ok else 3

                def idle():
                    i_ready.send()
                    i_go.recv()
                    return 0

                kids = [lh.fork(user), lh.fork(idle)]
                # close_fds=False: only close-on-exec keeps the lock description from it.
                cat = subprocess.Popen(["cat"], stdin=cat_r, stdout=subprocess.DEVNULL, close_fds=False)
                c_ready.recv()
                i_ready.recv()
                os.write(info_w, json.dumps(kids + [cat.pid]).encode() + b"\n")
                os._exit(lh.EXIT_DIED_HOLDING)

            h = lh.fork(holder)
            os.close(cat_r)
            user, idle, cat = json.loads(os.read(info_r, 4096))
            assert lh.wait_status(h) == lh.EXIT_DIED_HOLDING
            for pid in (user, idle, cat):
                assert proc_state(pid) not in ("Z", "X"), f"{pid} should be alive"
            assert pool.reclaim() == 3, "the dead parent's blocks should come back"
            assert pool.free_count == COUNT - 2, "the child's own blocks must stay held"
            c_go.send()
            i_go.send()
            assert lh.wait_status(user) == 0, "the child's blocks were overwritten"
            assert lh.wait_status(idle) == 0
            os.close(cat_w)
            assert lh.wait_status(cat) == 0
            assert pool.free_count == COUNT
            return 0

        wait_child(fork_child(director))
        assert pool.free_count == COUNT
    finally:
        if kind == "unnamed":
            pool.cleanup()
            shm.cleanup()


# ---- 6. the recorded pid does not matter --------------------------------------------------


def dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid  # no process has it now (until reused)


def test_recorded_pid_is_irrelevant(shm, signal_pair):
    """A live holder whose member entry's pid field says a dead pid keeps its blocks; a
    dead holder whose entry says a live pid (this process's) has its blocks returned."""
    pool = Mempool(COUNT, 64, shm=shm)
    to_child, to_parent = signal_pair
    d_ready, d_go = lh.Pipe(), lh.Pipe()

    def live():
        views = [pool.get() for _ in range(3)]
        lh.fill(views, "live")
        to_parent.send()
        to_child.recv()
        ok = lh.intact(views, "live")
        pool.put_many(views)
        return 0 if ok else 3

    live_pid = fork_child(live)
    dead = lh.holder_child(pool, 2, "dead", d_ready, d_go)
    try:
        to_parent.recv()
        d_ready.recv()
        (live_index,) = lh.entries_of_pid(shm, pool, live_pid)
        (dead_index,) = lh.entries_of_pid(shm, pool, dead)
        assert lh.entry_of(shm, live_index)[0] & 7 == LOCKED
        with raw_region(shm) as raw:
            struct.pack_into("=Q", raw, lh.MEMBERS_AT + lh.ENTRY * live_index + lh.PID_AT, dead_pid())
        assert pool.reclaim() == 0
        assert pool.free_count == COUNT - 5

        d_go.send(b"d")
        pid, dead = dead, None
        assert lh.wait_status(pid) == lh.EXIT_DIED_HOLDING
        with raw_region(shm) as raw:
            struct.pack_into("=Q", raw, lh.MEMBERS_AT + lh.ENTRY * dead_index + lh.PID_AT, os.getpid())
        assert pool.reclaim() == 2
        assert pool.free_count == COUNT - 3
        to_child.send()
        pid, live_pid = live_pid, None
        wait_child(pid)
        assert pool.free_count == COUNT
    finally:
        for pid in (live_pid, dead):  # still running only if an assertion failed
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        gc.collect()
        pool.cleanup()
