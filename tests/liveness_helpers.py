"""Child programs for tests/test_liveness.py.

Run as ``python liveness_helpers.py ROLE JSON-ARGS``, usually under ``unshare`` (no
/proc, /proc with hidepid=2, a new PID namespace). Every role talks to the test over
stdin/stdout, one JSON object per line, and ends with ``os._exit(code)``:

- ``hold``: attach a named region, take blocks from a named pool, mark them, then obey
  commands from stdin: ``check`` (are the marks intact?), ``put`` (give the blocks back
  and exit 0) or ``die`` (exit 7 still holding them: the kernel drops its lock, the
  blocks stay HELD in shared memory). Optionally as another uid, and optionally with a
  main thread that has called pthread_exit (a "zombie" main thread) while a second
  thread holds the blocks and serves the commands.
- ``reclaim``: attach a named region as some uid, report which pids it can see in
  /proc, run ``Mempool.reclaim()`` and report what came back.
- ``noproc_named``, ``noproc_unnamed``, ``noproc_nolock``, ``pidns_nolock``: whole
  scenarios run inside a mount namespace without /proc (the last one also in a new PID
  namespace; the test starts them under ``unshare``); forked children end with
  ``os._exit`` and the scenario asserts their codes. Each prints a
  final ``{"report": ...}`` line and exits 0 when every check passed, 1 otherwise.

Nothing here is collected by pytest (no test_ prefix).
"""
import ctypes
import json
import mmap
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback

import pyshm  # imported before any uid change: the module is loaded while still root
from pyshm import Mempool, PyshmError, ShareMem

# ---- shared-memory layout (src/core/layout.h, member.h, mempool.h) ------------------------

# struct pyshm_pool_shared: 128-byte object header, then count, elt_size, stride, flags,
# slots_offset, states_offset, holders_offset, data_offset (u64 each). A block's state
# and holder words are side by side: 16 bytes a block.
HOLDERS_OFFSET_AT = 128 + 6 * 8
# Member table: at region offset 64, a 64-byte header, then 128-byte entries: owner word
# (incarnation << 3 | READY 4 | NOLOCK 2 | OWNED 1) at +0, pid at +64, pidns +72, pidfs +80.
MEMBERS_AT = 64 + 64
ENTRY = 128
OWNER_OWNED, OWNER_NOLOCK, OWNER_READY = 1, 2, 4
PID_AT = 64

EXIT_DIED_HOLDING = 7
GUARD = 120.0  # hang guard for a read from another process; never a timing assertion


def holder_words(shm, pool):
    with memoryview(shm) as raw:
        at = struct.unpack_from("=Q", raw, pool.offset + HOLDERS_OFFSET_AT)[0]
        return [struct.unpack_from("=Q", raw, at + 16 * i)[0] for i in range(pool.count)]


def entry_of(shm, index):
    """(owner word, pid, pidns, pidfs) of member entry `index`."""
    with memoryview(shm) as raw:
        at = MEMBERS_AT + ENTRY * index
        owner = struct.unpack_from("=Q", raw, at)[0]
        pid, pidns, pidfs = struct.unpack_from("=3Q", raw, at + PID_AT)
    return owner, pid, pidns, pidfs


def entries_of_pid(shm, pool, pid):
    """{entry index: number of blocks of `pool` held under it} for entries owned by pid."""
    found = {}
    for word in holder_words(shm, pool):
        if word and entry_of(shm, word & 0xFF)[1] == pid:
            found[word & 0xFF] = found.get(word & 0xFF, 0) + 1
    return found


# ---- small tools ----------------------------------------------------------------------------


def emit(obj, stream=None):
    stream = stream or sys.stdout
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def command():
    """The next command line from stdin ('' at EOF)."""
    line = sys.stdin.readline()
    return line.strip()


def drop_to(uid):
    """Become `uid` for good (real, effective and saved; groups too): no capability left.
    Dumpable again, as a process that was started as that user would be."""
    if uid is None or uid == os.getuid():
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    assert os.geteuid() == uid and os.getuid() == uid


def mark_of(tag, i):
    return f"{tag}:{i}:".encode().ljust(16, b".")


def fill(views, tag):
    for i, v in enumerate(views):
        v[:16] = mark_of(tag, i)


def intact(views, tag):
    return all(bytes(v[:16]) == mark_of(tag, i) for i, v in enumerate(views))


def visible(pid):
    return os.path.exists(f"/proc/{pid}")


def pthread_exit_main(worker):
    """Start `worker` in a thread that first waits until this (main) thread has exited,
    then end the main thread with pthread_exit: the process lives on with a zombie main
    thread, as /proc shows it (state Z)."""
    libc = ctypes.CDLL(None, use_errno=True)
    main = threading.get_ident()  # the pthread_t of the main thread

    def run():
        # A thread that ends by returning would end the process with status 0 once the
        # main thread is gone: every way out of here is an explicit os._exit.
        try:
            rc = libc.pthread_join(ctypes.c_ulong(main), None)
            assert rc == 0, f"pthread_join(main) = {rc}"
            worker()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=run).start()
    libc.pthread_exit(None)  # ctypes releases the GIL for the call; never returns


def wait_status(pid):
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


_forked = []


def fork(fn):
    """Fork; the child runs fn() and ends with os._exit(its int result, 0 or 1 on error)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _forked.clear()
        code = 1
        try:
            r = fn()
            code = r if isinstance(r, int) else 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _forked.append(pid)
    return pid


def kill_forked():
    """After a failed check: end the children forked here (they would keep the test's
    pipe open), by their pids."""
    for pid in _forked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Pipe:
    def __init__(self):
        self.r, self.w = os.pipe()

    def send(self, data=b"x"):
        os.write(self.w, data)

    def recv(self):
        ready, _, _ = select.select([self.r], [], [], GUARD)
        assert ready, "no word from the other process within the hang guard"
        data = os.read(self.r, 1)
        assert data, "the other process closed the pipe"
        return data


# ---- roles ----------------------------------------------------------------------------------


def serve(pool, views, tag, out=None):
    """The command loop of a holder: check / put / die."""
    while True:
        cmd = command()
        if cmd == "check":
            emit({"intact": intact(views, tag), "free": pool.free_count}, out)
        elif cmd == "put":
            ok = intact(views, tag)
            pool.put_many(views)
            views.clear()
            emit({"put": True, "intact": ok}, out)
            os._exit(0 if ok else 1)
        elif cmd == "die":
            os._exit(EXIT_DIED_HOLDING)
        else:  # EOF or garbage: the test is gone
            os._exit(9)


def role_hold(args):
    drop_to(args.get("uid"))
    shm = ShareMem.attach(args["name"])
    pool = Mempool.attach(shm, args["pool"])
    views = [pool.get() for _ in range(args["n"])]
    tag = args.get("tag", f"h{os.getpid()}")
    fill(views, tag)
    state = {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "proc_self": os.path.exists("/proc/self"),
        "entries": entries_of_pid(shm, pool, os.getpid()),
    }
    if not args.get("zombie_main"):
        emit(state)
        serve(pool, views, tag)
        return

    def worker():
        state["main_thread_gone"] = True
        emit(state)
        serve(pool, views, tag)

    pthread_exit_main(worker)


def role_reclaim(args):
    drop_to(args.get("uid"))
    shm = ShareMem.attach(args["name"])
    pool = Mempool.attach(shm, args["pool"])
    report = {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "proc_self": os.path.exists("/proc/self"),
        "visible": {str(p): visible(p) for p in args.get("pids", [])},
        "free_before": pool.free_count,
    }
    report["returned"] = pool.reclaim()
    report["free_after"] = pool.free_count
    emit(report)
    pool.cleanup()
    shm.cleanup()
    os._exit(0)


def remove_proc():
    """Lazily unmount /proc in this mount namespace (the test started us in a new one),
    and any proc under it (unshare --mount-proc stacks one over the host's)."""
    for _ in range(8):
        if not os.path.exists("/proc/self"):
            return
        subprocess.run(["umount", "-l", "/proc"], check=True)
    assert not os.path.exists("/proc/self"), "/proc is still there"


def holder_child(pool, n, tag, ready, go):
    """A fork child that takes n blocks, says so, waits for `go`, then on b'p' checks and
    puts them back (exit 0), on b'd' dies holding them (exit 7)."""

    def run():
        views = [pool.get() for _ in range(n)]
        fill(views, tag)
        ready.send()
        what = go.recv()
        if what == b"d":
            os._exit(EXIT_DIED_HOLDING)
        ok = intact(views, tag)
        pool.put_many(views)
        return 0 if ok else 3

    return fork(run)


def role_noproc_named(args):
    """No /proc from the start, a named region: every process reopens it by name for its
    lock, so liveness is decisive both ways."""
    assert not os.path.exists("/proc/self"), "expected to run without /proc"
    shm = ShareMem(1 << 20, name=args["name"])
    try:
        pool = Mempool(16, 64, shm=shm, name="p")
        live_ready, live_go, dead_ready, dead_go = Pipe(), Pipe(), Pipe(), Pipe()
        live = holder_child(pool, 3, "live", live_ready, live_go)
        dead = holder_child(pool, 2, "dead", dead_ready, dead_go)
        live_ready.recv()
        dead_ready.recv()
        flags = {
            "live": entry_of(shm, next(iter(entries_of_pid(shm, pool, live))))[0] & 7,
            "dead": entry_of(shm, next(iter(entries_of_pid(shm, pool, dead))))[0] & 7,
        }
        assert pool.reclaim() == 0, "blocks were taken from live holders"
        assert pool.free_count == 16 - 5
        dead_go.send(b"d")
        assert wait_status(dead) == EXIT_DIED_HOLDING
        returned = pool.reclaim()
        free_after = pool.free_count
        live_go.send(b"p")
        live_code = wait_status(live)
        assert live_code == 0, f"live holder exited {live_code} (its marks were overwritten?)"
        assert returned == 2, returned
        assert free_after == 16 - 3, free_after
        assert pool.free_count == 16
        emit({"report": {"flags": flags, "returned": returned, "free_after": free_after}})
        pool.cleanup()
    finally:
        shm.unlink()
        shm.cleanup()
    os._exit(0)


def role_noproc_unnamed(args):
    """An unnamed region created while /proc was there (this process, the repairer, holds
    a lock description), then /proc removed: fork children cannot open a private
    description (no name, no /proc/self/fd) and join NOLOCK, with pid, pid namespace and
    pidfd inode. A live one and one whose main thread has exited (Z in /proc) keep their
    blocks; a dead one's come back once it is reaped; and so do those of a dead one whose
    recorded pid now names another, live, process (a reused pid: another pidfd inode).

    Protocol with the test: prints {"zombie": pid} and waits for a line on stdin (the test
    checks, in the host's /proc, that the process shows state Z)."""
    assert os.path.exists("/proc/self")
    shm = ShareMem(1 << 20)
    pool = Mempool(16, 64, shm=shm, name="p")
    remove_proc()

    live_ready, live_go, dead_ready, dead_go, reused_ready, reused_go = (Pipe() for _ in range(6))
    zombie_ready, zombie_go, zombie_result = Pipe(), Pipe(), Pipe()
    live = holder_child(pool, 3, "live", live_ready, live_go)
    dead = holder_child(pool, 2, "dead", dead_ready, dead_go)
    reused = holder_child(pool, 1, "reused", reused_ready, reused_go)

    def zombie():
        views = [pool.get() for _ in range(4)]
        fill(views, "zombie")

        def worker():
            zombie_ready.send()
            what = zombie_go.recv()
            zombie_result.send(b"1" if intact(views, "zombie") else b"0")
            if what == b"d":
                os._exit(EXIT_DIED_HOLDING)
            pool.put_many(views)
            os._exit(0)

        pthread_exit_main(worker)

    zpid = fork(zombie)
    for p in (live_ready, dead_ready, reused_ready, zombie_ready):
        p.recv()
    pids = {"live": live, "dead": dead, "reused": reused, "zombie": zpid}
    index = {who: next(iter(entries_of_pid(shm, pool, pid))) for who, pid in pids.items()}
    flags = {who: entry_of(shm, i)[0] & 7 for who, i in index.items()}
    for who, f in flags.items():
        assert f == OWNER_OWNED | OWNER_NOLOCK | OWNER_READY, (who, f)
    pidfs_known = entry_of(shm, index["reused"])[3] != 0
    emit({"zombie": zpid})
    assert command() == "zombie-seen"

    assert pool.reclaim() == 0, "blocks were taken from live (NOLOCK) holders"
    assert pool.free_count == 16 - 10
    dead_go.send(b"d")
    # Dead but not reaped yet (waitid with WNOWAIT leaves it a zombie): recorded, not
    # asserted; without /proc a zombie cannot be told from a live process, so the
    # expected answer is "alive" (0 returned).
    os.waitid(os.P_PID, dead, os.WEXITED | os.WNOWAIT)
    returned_unreaped = pool.reclaim()
    assert wait_status(dead) == EXIT_DIED_HOLDING
    returned_dead = pool.reclaim()
    assert returned_unreaped + returned_dead == 2, (
        f"a dead, reaped NOLOCK holder's blocks: {returned_unreaped} + {returned_dead} came back, not 2"
    )
    assert pool.free_count == 16 - 8

    # A dead holder whose pid another process has now: here the live holder's pid is
    # written over the dead one's, as a reuse would leave it.
    reused_go.send(b"d")
    assert wait_status(reused) == EXIT_DIED_HOLDING
    with mmap.mmap(shm.fileno(), 0) as raw:
        struct.pack_into("=Q", raw, MEMBERS_AT + ENTRY * index["reused"] + PID_AT, live)
    returned_reused = pool.reclaim()
    if pidfs_known:
        assert returned_reused == 1, "a NOLOCK holder whose pid was reused was not judged gone"
    else:  # no pidfs (Linux < 6.9): a reused pid cannot be told from its first owner
        assert returned_reused == 0
    assert pool.free_count == 16 - 8 + returned_reused

    # The zombie-main-thread holder dies holding: reap it (a zombie process cannot be told
    # from a live one without /proc), then its blocks come back.
    zombie_go.send(b"d")
    assert zombie_result.recv() == b"1", "the zombie-main-thread holder's blocks were overwritten"
    assert wait_status(zpid) == EXIT_DIED_HOLDING
    returned_zombie = pool.reclaim()
    assert returned_zombie == 4, returned_zombie
    live_go.send(b"p")
    assert wait_status(live) == 0, "the live holder's marks were overwritten"
    assert pool.free_count == 16 - 1 + returned_reused
    emit(
        {
            "report": {
                "flags": flags,
                "pidfs_known": pidfs_known,
                "returned_unreaped": returned_unreaped,
                "returned_dead": returned_dead,
                "returned_reused": returned_reused,
                "returned_zombie": returned_zombie,
            }
        }
    )
    pool.cleanup()
    shm.cleanup()
    os._exit(0)


def role_pidns_nolock(args):
    """Run as pid 1 of a new PID namespace (and mount namespace, its own /proc). An
    unnamed region created while /proc is there (this process holds a lock description),
    then /proc removed: fork children join NOLOCK, recording pids of this namespace. The
    live one gets pid args["pid"], a pid that names no process in the test's namespace.

    The descriptor goes to the test (socket fd args["sock"]), which must judge both holders
    alive: their pids mean nothing there, so it cannot tell. Then, on "outside-done", this
    process (same namespace as the dead holder) returns the dead one's blocks."""
    sock = socket.socket(fileno=args["sock"])
    assert os.getpid() == 1
    shm = ShareMem(1 << 20)
    pool = Mempool(16, 64, shm=shm, name="p")
    last_pid = os.open("/proc/sys/kernel/ns_last_pid", os.O_WRONLY)
    remove_proc()
    live_ready, live_go, dead_ready, dead_go = Pipe(), Pipe(), Pipe(), Pipe()
    os.write(last_pid, str(args["pid"] - 1).encode())
    live = holder_child(pool, 3, "live", live_ready, live_go)
    os.close(last_pid)
    assert live == args["pid"], (live, args["pid"])
    dead = holder_child(pool, 2, "dead", dead_ready, dead_go)
    live_ready.recv()
    dead_ready.recv()
    flags = {
        who: entry_of(shm, next(iter(entries_of_pid(shm, pool, pid))))[0] & 7
        for who, pid in (("live", live), ("dead", dead))
    }
    for who, f in flags.items():
        assert f == OWNER_OWNED | OWNER_NOLOCK | OWNER_READY, (who, f)
    dead_go.send(b"d")
    assert wait_status(dead) == EXIT_DIED_HOLDING
    socket.send_fds(sock, [b"fd"], [shm.fileno()])
    emit({"sent": True, "live": live, "dead": dead, "flags": flags})
    assert command() == "outside-done"
    assert pool.free_count == 16 - 5
    returned = pool.reclaim()
    assert returned == 2, f"in the dead holder's own namespace, {returned} blocks came back, not 2"
    live_go.send(b"p")
    assert wait_status(live) == 0, "the live holder's marks were overwritten"
    assert pool.free_count == 16
    emit({"report": {"returned_inside": returned}})
    pool.cleanup()
    shm.cleanup()
    os._exit(0)


def role_noproc_nolock(args):
    """No /proc from the start and an unnamed region: no process here can open a private
    description, so every member is NOLOCK and none can repair (reclaim() raises). A
    process with /proc that receives the region's descriptor (over the socket the test
    passed, fd args["sock"]) can: the test does, while the live holder still holds.

    Protocol: prints {"sent": ...} after sending the descriptor, then waits for a line on
    stdin (the test has reclaimed), then lets the live holder check and put back."""
    assert not os.path.exists("/proc/self"), "expected to run without /proc"
    sock = socket.socket(fileno=args["sock"])
    shm = ShareMem(1 << 20)
    pool = Mempool(16, 64, shm=shm, name="p")
    live_ready, live_go, dead_ready, dead_go = Pipe(), Pipe(), Pipe(), Pipe()
    live = holder_child(pool, 3, "live", live_ready, live_go)
    dead = holder_child(pool, 2, "dead", dead_ready, dead_go)
    live_ready.recv()
    dead_ready.recv()
    flags = {
        who: entry_of(shm, next(iter(entries_of_pid(shm, pool, pid))))[0] & 7
        for who, pid in (("live", live), ("dead", dead))
    }
    for who, f in flags.items():
        assert f == OWNER_OWNED | OWNER_NOLOCK | OWNER_READY, (who, f)
    dead_go.send(b"d")
    assert wait_status(dead) == EXIT_DIED_HOLDING
    try:
        pool.reclaim()
        error = None
    except PyshmError as e:
        error = str(e)
    assert error is not None, "reclaim() without a lock description did not refuse"
    assert pool.free_count == 16 - 5
    socket.send_fds(sock, [b"fd"], [shm.fileno()])
    emit({"sent": True, "reclaim_error": error, "live": live, "dead": dead, "flags": flags})
    assert command() == "reclaimed"
    free_seen = pool.free_count
    live_go.send(b"p")
    assert wait_status(live) == 0, "the live holder's marks were overwritten"
    emit({"report": {"free_seen_after_outside_reclaim": free_seen, "free_end": pool.free_count}})
    pool.cleanup()
    shm.cleanup()
    os._exit(0)


ROLES = {
    "hold": role_hold,
    "reclaim": role_reclaim,
    "noproc_named": role_noproc_named,
    "noproc_unnamed": role_noproc_unnamed,
    "noproc_nolock": role_noproc_nolock,
    "pidns_nolock": role_pidns_nolock,
}


def main():
    role, args = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    try:
        ROLES[role](args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        kill_forked()
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    main()
