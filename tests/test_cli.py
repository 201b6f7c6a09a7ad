"""The ``pyshm`` command (pyshm.cli), run in real subprocesses against real named regions.

Every region is named after the test and the pid and unlinked in a ``finally``; every
forked child ends with ``os._exit`` and the parent checks how it ended.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

import pyshm

DEV_SHM = "/dev/shm"
pytestmark = pytest.mark.skipif(not os.path.isdir(DEV_SHM), reason="needs /dev/shm")


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pyshm.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def unique(tag):
    return f"pyshm-cli-test-{tag}-{os.getpid()}"


def unlink_quietly(name):
    try:
        os.unlink(os.path.join(DEV_SHM, name))
    except FileNotFoundError:
        pass


def info_json(name):
    res = run_cli("info", name, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def by_name(info, name):
    [obj] = [o for o in info["objects"] if o["name"] == name]
    return obj


def fork_child(fn):
    """Fork a child running fn(ready_w, go_r); returns (pid, ready_r, go_w). The child
    ends with os._exit: 0 if fn returned, 1 if it raised."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            fn(ready_w, go_r)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    return pid, ready_r, go_w


def wait_ready(ready_r):
    assert os.read(ready_r, 1) == b"R", "the child did not get ready"


def reap(pid):
    _, status = os.waitpid(pid, 0)
    return status


def stop_child(pid, go_w):
    """Make sure a child is gone (a failed test must not leave it waiting)."""
    try:
        os.close(go_w)
    except OSError:
        pass
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def test_ls_lists_the_region_with_its_counts():
    name = unique("ls")
    shm = pyshm.ShareMem(1 << 20, name=name)
    try:
        pool_a = pyshm.Mempool(8, 64, shm=shm, name="a")
        pyshm.Mempool(4, 128, shm=shm, name="b")
        pyshm.Ring(8, shm=shm, name="r")
        pyshm.RawBuffer(256, shm=shm)
        view = pool_a.get()  # joins: one live member
        res = run_cli("ls", "--json")
        assert res.returncode == 0, res.stderr
        [row] = [r for r in json.loads(res.stdout) if r["name"] == "/" + name]
        assert row["error"] is None
        assert (row["size"], row["layout_version"]) == (1 << 20, pyshm.LAYOUT_VERSION)
        assert (row["pools"], row["rings"], row["raw"]) == (2, 1, 1)
        assert (row["members"], row["live_members"]) == (1, 1)
        text = run_cli("ls")
        assert text.returncode == 0, text.stderr
        [line] = [ln for ln in text.stdout.splitlines() if ln.split()[:1] == ["/" + name]]
        assert line.split()[3:7] == [str(pyshm.LAYOUT_VERSION), "2", "1", "1"] and "1/1" in line.split()
        pool_a.put(view)
    finally:
        unlink_quietly(name)


def test_ls_skips_other_files_and_marks_other_layout_versions():
    junk, old = unique("junk"), unique("oldlayout")
    try:
        with open(os.path.join(DEV_SHM, junk), "wb") as f:
            f.write(b"not a region" * 100)
        with open(os.path.join(DEV_SHM, old), "wb") as f:
            f.write(b"SREGION1" + (2).to_bytes(4, "little") + bytes(40000))
        res = run_cli("ls", "--json")
        assert res.returncode == 0, res.stderr
        rows = {r["name"]: r for r in json.loads(res.stdout)}
        assert "/" + junk not in rows
        assert rows["/" + old]["layout_version"] == 2
        assert "layout version 2" in rows["/" + old]["error"]
        assert old in run_cli("ls").stdout
        refused = run_cli("rm", junk)
        assert refused.returncode == 1 and "not a pyshm region" in refused.stderr
        assert os.path.exists(os.path.join(DEV_SHM, junk))
    finally:
        unlink_quietly(junk)
        unlink_quietly(old)


def test_info_numbers_match_and_inspecting_changes_nothing():
    name = unique("info")
    shm = pyshm.ShareMem(1 << 20, name=name)
    path = os.path.join(DEV_SHM, name)
    try:
        pool = pyshm.Mempool(16, 64, shm=shm, name="pool")
        ring = pyshm.Ring(8, shm=shm, name="ring")
        pyshm.RawBuffer(100, shm=shm, name="raw")
        # Not a member yet: inspecting must not make anyone one.
        assert info_json(name)["members"] == []
        assert shm.info()["members"] == []
        held = [pool.get() for _ in range(5)]
        ring.enqueue(held.pop())
        ring.enqueue(held.pop())
        with open(path, "rb") as f:
            before = f.read()
        info = info_json(name)
        with open(path, "rb") as f:
            assert f.read() == before, "pyshm info wrote to the region"
        assert (info["name"], info["size"], info["layout_version"]) == ("/" + name, 1 << 20, pyshm.LAYOUT_VERSION)
        assert info["free"] == shm.free
        p = by_name(info, "pool")
        assert (p["kind"], p["count"], p["elt_size"]) == ("pool", 16, 64)
        assert (p["free_count"], p["held_count"], p["in_ring_count"], p["held_by_dead"]) == (11, 3, 2, 0)
        r = by_name(info, "ring")
        assert (r["kind"], r["count"], r["used"], r["shutdown"]) == ("ring", 8, 2, "open")
        assert (by_name(info, "raw")["kind"], by_name(info, "raw")["size"]) == ("raw", 100)
        [me] = info["members"]
        assert (me["pid"], me["alive"], me["announcing"]) == (os.getpid(), True, False)
        assert me["holds"] >= 3
        # The same from the process itself, and the member table untouched by the CLI.
        assert shm.info() == info
        ring.shutdown()
        assert by_name(info_json(name), "ring")["shutdown"] == "shutdown"
        text = run_cli("info", name)
        assert text.returncode == 0 and "HELD_BY_DEAD" in text.stdout and "pool" in text.stdout
        for view in held:
            pool.put(view)
    finally:
        unlink_quietly(name)


def test_info_of_a_missing_region_fails():
    res = run_cli("info", unique("missing"))
    assert res.returncode == 1 and "no region" in res.stderr


def test_a_killed_member_shows_as_dead_with_its_blocks():
    name = unique("dead")
    shm = pyshm.ShareMem(1 << 20, name=name)
    pid = go_w = None
    try:
        pool = pyshm.Mempool(8, 64, shm=shm, name="pool")

        def child(ready_w, go_r):
            views = [pool.get(), pool.get(), pool.get()]
            os.write(ready_w, b"R")
            os.read(go_r, 1)  # killed while waiting here, the blocks held
            for view in views:
                pool.put(view)

        pid, ready_r, go_w = fork_child(child)
        wait_ready(ready_r)
        os.close(ready_r)
        live = info_json(name)
        assert [(m["pid"], m["alive"]) for m in live["members"]] == [(pid, True)]
        assert by_name(live, "pool")["held_by_dead"] == 0
        os.kill(pid, signal.SIGKILL)
        status = reap(pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        info = info_json(name)
        [m] = info["members"]
        assert (m["pid"], m["alive"]) == (pid, False)
        assert m["holds"] >= 3
        p = by_name(info, "pool")
        assert (p["held_count"], p["held_by_dead"], p["free_count"]) == (3, 3, 5)
        assert "no" in run_cli("info", name).stdout.split()
    finally:
        if pid is not None:
            stop_child(pid, go_w)
        unlink_quietly(name)


def test_rm_refuses_while_a_live_member_uses_the_region():
    name = unique("rm")
    shm = pyshm.ShareMem(1 << 20, name=name)
    path = os.path.join(DEV_SHM, name)
    pid = go_w = None
    try:
        pool = pyshm.Mempool(4, 64, shm=shm)

        def child(ready_w, go_r):
            pool.put(pool.get())  # joins the member table
            os.write(ready_w, b"R")
            os.read(go_r, 1)

        pid, ready_r, go_w = fork_child(child)
        wait_ready(ready_r)
        os.close(ready_r)
        refused = run_cli("rm", name)
        assert refused.returncode == 1
        assert "in use" in refused.stderr and str(pid) in refused.stderr
        assert os.path.exists(path)
        forced = run_cli("rm", name, "--force")
        assert forced.returncode == 0, forced.stderr
        assert not os.path.exists(path)
        os.write(go_w, b"G")
        status = reap(pid)
        pid = None
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        if pid is not None:
            stop_child(pid, go_w)
        unlink_quietly(name)


def test_rm_succeeds_once_the_member_has_exited():
    name = unique("rm2")
    shm = pyshm.ShareMem(1 << 20, name=name)
    path = os.path.join(DEV_SHM, name)
    pid = go_w = None
    try:
        pool = pyshm.Mempool(4, 64, shm=shm)

        def child(ready_w, go_r):
            pool.put(pool.get())
            os.write(ready_w, b"R")
            os.read(go_r, 1)

        pid, ready_r, go_w = fork_child(child)
        wait_ready(ready_r)
        os.close(ready_r)
        assert run_cli("rm", name).returncode == 1
        os.write(go_w, b"G")
        status = reap(pid)
        pid = None
        assert os.waitstatus_to_exitcode(status) == 0
        res = run_cli("rm", name)
        assert res.returncode == 0, res.stderr
        assert not os.path.exists(path)
    finally:
        if pid is not None:
            stop_child(pid, go_w)
        unlink_quietly(name)


def test_demo_quick():
    res = run_cli("demo", "--quick", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: every message of every phase was verified" in res.stdout
    assert "GB/s" not in res.stdout
    assert "us per block" in res.stdout and "us per payload" in res.stdout
    assert "through pyshm.Queue" in res.stdout and "multiprocessing.Queue's" in res.stdout


def test_python_m_pyshm_runs_the_commands():
    res = subprocess.run([sys.executable, "-m", "pyshm", "ls", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout), list)
