"""Hostile memory: another process may write anything anywhere in a region.

After any such write, a pyshm call in this process must raise a ``PyshmError`` (or
``ValueError`` for a handle or view the shared state no longer agrees with) or succeed.
It must never crash, never hang past its timeout, and never hand out a view that is not
one block of a pool of the region. The engine, and the description of what a case does,
is in ``hostile_helpers.py``; every case is reproducible from its seed::

    python tests/hostile_helpers.py SEED      # replays one case, printing every step

Scale with environment variables (the default run takes about half a minute):

- ``PYSHM_HOSTILE_CASES``: random corruption cases (default 3000); the concurrent test
  runs one round per 75 of them (at least 10);
- ``PYSHM_HOSTILE_SEED``: first seed (default 0);
- ``PYSHM_HOSTILE_WORKERS``: forked workers running cases side by side (default: CPUs,
  at most 4).
"""
import os
import signal
import sys
import time

import pytest

import pyshm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile_helpers as hh  # noqa: E402

CASES = int(os.environ.get("PYSHM_HOSTILE_CASES", "3000"))
FIRST_SEED = int(os.environ.get("PYSHM_HOSTILE_SEED", "0"), 0)
WORKERS = int(os.environ.get("PYSHM_HOSTILE_WORKERS", str(max(1, min(4, os.cpu_count() or 1)))))
CONCURRENT_ROUNDS = max(10, CASES // 75)
CONCURRENT_OPS = 600
GUARD = 20.0  # seconds: a child that makes no progress for this long counts as hung


def _report(out, first, last, what):
    lines = [
        f"{what}: {out.cases} cases (seeds {first}..{last}), {len(out.crashes)} crashed, {len(out.hangs)} hung, "
        f"{len({s for s, _ in out.violations})} with violations"
    ]
    for seed, how in out.crashes[:10]:
        lines.append(f"  crash: seed {seed} ({how})")
    for seed in out.hangs:
        lines.append(f"  hang: seed {seed} (no progress for {GUARD:.0f} s)")
    shown = set()
    for seed, msg in out.violations:
        if len(shown) >= 10 and seed not in shown:
            continue
        shown.add(seed)
        lines.append(f"  violation: seed {seed}: {msg}")
    lines += [f"  error: {e}" for e in out.errors]
    if not out.ok():
        lines.append("  replay one case with: python tests/hostile_helpers.py SEED")
    return "\n".join(lines)


def test_random_corruption(capsys):
    """Thousands of cases: K random corruptions of a mid-flight region, then random
    operations, each case in a forked worker that a crash or hang cannot take down."""
    seeds = list(range(FIRST_SEED, FIRST_SEED + CASES))
    started = time.monotonic()
    out = hh.campaign(seeds, workers=WORKERS, guard=GUARD)
    report = _report(out, seeds[0], seeds[-1], "hostile memory")
    with capsys.disabled():
        print(f"\n{report.splitlines()[0]} in {time.monotonic() - started:.1f} s")
    assert out.cases == len(seeds) or out.hangs, report
    assert out.ok(), report


# --- the pool table keyed by offset ---------------------------------------------------------
#
# A process keeps a table of the pools it has validated, keyed by region offset. When the
# header at a known offset now describes another (consistent) geometry, because another
# process rewrote it or because the carve pointer was moved back onto it and a new pool
# carved there, the new handle gets the new geometry but the table keeps the old one, and
# views are made from the old data offset and stride with indices of the new count.


def _legal_blocks(size, at, count, elt):
    """{offset: length} of the blocks of Mempool(count, elt) carved at `at` in a region of
    `size` bytes (made in a scratch region, so no layout formula is assumed)."""
    w = hh.World(0)
    w.mappings.append(hh.Mapping(pyshm.ShareMem(size), "tmp"))
    try:
        made = w.scratch_object(at, lambda s: pyshm.Mempool(count, elt, shm=s))
    finally:
        w.mappings[0].shm.cleanup()
    assert made is not None
    return made[1]


def _check_views(views, base, legal):
    bad = []
    for v in views:
        off = hh.address_of(v) - base
        if legal.get(off, 0) < len(v):
            bad.append((off, len(v)))
        v.release()  # never touched: a view outside the region would crash
    return bad


def _stale_table_child(how, take):
    size = 1 << 20
    shm = pyshm.ShareMem(size)
    pool = pyshm.Mempool(4, 4096, shm=shm, name="victim")  # this process knows it: 4 x 4096
    off = hh.offset_of(pool)
    count, elt = 20000, 8
    legal = dict(hh.block_table(pool, hh.base_of(shm)))
    legal.update(_legal_blocks(size, off, count, elt))
    try:
        if how == "carve":
            # Another process moves the carve pointer back onto the pool; a new pool lands on it.
            hh.write_u64(shm, hh.CARVE_END_AT, off)
            other = pyshm.Mempool(count, elt, shm=shm)
        else:
            # Another process rewrites the pool's header with a consistent geometry.
            w = hh.World(0)
            w.mappings.append(hh.Mapping(shm, "main"))
            image, _, _ = w.scratch_object(off, lambda s: pyshm.Mempool(count, elt, shm=s, name="victim"))
            hh.write_bytes(shm, off, image)
            other = pyshm.Mempool.attach(shm, "victim") if how == "attach" else pyshm.Mempool._from_offset(shm, off)
    except hh.ALLOWED:
        return 0  # refused: fine
    views = []
    try:
        if take == "get_many":
            views += other.get_many(count)
        else:
            for _ in range(count):
                views.append(other.get())
    except hh.ALLOWED:
        pass  # refused part-way: the views handed out so far must still be blocks
    bad = _check_views(views, hh.base_of(shm), legal)
    if bad:
        outside = sum(1 for off, n in bad if off + n > size)
        print(f"{len(bad)} of {len(views)} views are not blocks of either geometry, {outside} of them past the end "
              f"of the region ({size} bytes); first (offset, length): {bad[:3]}, last: {bad[-1]}", file=sys.stderr)
        return 1
    return 0


@pytest.mark.parametrize("take", ["get", "get_many"])
@pytest.mark.parametrize("how", ["carve", "from_offset", "attach"])
def test_known_offset_with_new_geometry(how, take):
    """A pool whose header now describes another consistent geometry (20000 x 8 bytes
    instead of 4 x 4096), reached by a process that already knows it: the call may be
    refused, but every view handed out is a block of the old pool or of the new one.
    (Before 73bf632 the views were made from the old data offset and stride with indices
    of the new count: far past the end of the region.)"""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _stale_table_child(how, take)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    code = _wait(pid, GUARD)
    assert code == 0, f"child {_how(code)} (seed-free: this test is deterministic)"


def _how(code):
    if code == "hang":
        return f"hung (no result within {GUARD:.0f} s)"
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"


def _wait(pid, guard):
    deadline = time.monotonic() + guard
    while True:
        cid, status = os.waitpid(pid, os.WNOHANG)
        if cid == pid:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hang"
        time.sleep(0.005)


# --- concurrent corruption ------------------------------------------------------------------


def _operator(world, wfd, ready_fd):
    code = 1
    try:
        os.read(ready_fd, 1)  # the writer is at work
        world.concurrent = True
        world.run_ops(CONCURRENT_OPS)
        world.finish()
        for v in world.violations:
            os.write(wfd, (v.replace("\n", " ") + "\n").encode())
        code = 1 if world.violations else 0
    except BaseException as e:
        try:
            os.write(wfd, f"internal error: {type(e).__name__}: {e}\n".encode())
        except BaseException:
            pass
    finally:
        os._exit(code)


def _writer(world, seed, stop_fd, images, ready_fd):
    code = 1
    try:
        hh.writer_loop(world, seed, stop_fd, images, ready_fd)
        code = 0
    finally:
        os._exit(code)


def test_concurrent_corruption(capsys):
    """A writer process keeps corrupting the region (persistent garbage, words toggled
    between valid and invalid, stretches put back clean, pool headers flipped between real
    and forged geometries) while an operator process runs a bounded number of operations
    with the same checks as above."""
    problems = []
    rounds = 0
    started = time.monotonic()
    for i in range(CONCURRENT_ROUNDS):
        seed = FIRST_SEED + 1_000_000 + i
        world = hh.World(seed)
        world.build()
        images = hh.forged_pool_images(world) if seed % 2 else []
        stop_r, stop_w = os.pipe()
        rep_r, rep_w = os.pipe()
        ready_r, ready_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        writer = os.fork()
        if writer == 0:
            _writer(world, seed, stop_r, images, ready_w)
        operator = os.fork()
        if operator == 0:
            _operator(world, rep_w, ready_r)
        os.close(rep_w)
        os.close(ready_w)
        rounds += 1
        try:
            op_code = _wait(operator, GUARD)
        finally:
            os.write(stop_w, b"x")
            writer_code = _wait(writer, GUARD)
            report = b""
            while chunk := os.read(rep_r, 65536):
                report += chunk
            for fd in (stop_r, stop_w, rep_r, ready_r):
                os.close(fd)
            world.finish()
        if op_code != 0:
            problems.append(f"seed {seed}: operator {_how(op_code)}: {report.decode(errors='replace').strip()[:2000]}")
        if writer_code != 0:
            problems.append(f"seed {seed}: writer {_how(writer_code)}")
    summary = (f"concurrent hostile memory: {rounds} rounds of {CONCURRENT_OPS} operations, "
               f"{len(problems)} failed, in {time.monotonic() - started:.1f} s")
    with capsys.disabled():
        print(f"\n{summary}")
    assert not problems, (summary + "\n" + "\n".join(problems)
                          + "\nrerun a round, printing every step: python tests/hostile_helpers.py --concurrent SEED")
