"""pyshm's benchmark: every workload on pyshm and on each peer, in one run.

    python bench/run.py            # or: python -m bench
    python bench/run.py --quick    # tiny sizes, one repetition: what CI runs

For each repetition, for each workload, every system runs once, in an order rotated
from one repetition (and workload) to the next so that drift of the machine hits them
all alike. Each measurement uses fresh processes and a warm-up; every message is
checked, and a failed check stops the run at once (exit status 2). The table gives the
median over the repetitions and the ratio to multiprocessing.Queue measured in the same
run; results go to bench/results/latest.json and a chart to bench/results/latest.png.
Speed is reported, never asserted: the exit status says only whether everything ran
and every message arrived intact.

W1-W6 and A1/A5 measure pyshm's pools and rings; Q1-Q4 its object queue, pyshm.Queue,
against mp.Queue, faster-fifo, pyzmq and a one-copy floor (bench/README.md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

# numpy (which iceoryx2's flatbuffers support imports) would start OpenBLAS worker
# threads in this process that spin now and then, taking CPU from the measured processes.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

if __package__ in (None, ""):  # run as a script: make `bench` importable (pyshm: find_pyshm)
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    BATCH,
    LARGE,
    Q2_SIZES,
    Q3_SIZES,
    W4_CONSUMERS,
    W4_PRODUCERS,
    BenchFailure,
    Params,
)
from bench.systems import System, load  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
BASELINE = "mp.Queue"
PIPE = "mp.Pipe"


def _size_label(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


# kind: "rate" (messages/s), "bytes" (GB/s), "latency" (round trip, µs), "time" (µs a
# message, from a throughput run: Q3). warm: the fewest warm-up messages (default 10; a
# tenth of the count when that is more). quick: False keeps a workload out of --quick
# unless it is named on its own (the 64 MiB and 1 GiB ones).
WORKLOADS: dict[str, dict[str, Any]] = {
    "W1": {"title": "small, one by one", "kind": "rate", "params": {}},
    "W2": {"title": f"small, in batches of {BATCH}", "kind": "rate", "params": {"batch": BATCH}},
    "W3": {"title": "large (1 MiB)", "kind": "bytes", "params": {"size": LARGE}, "warm": 4},
    "W4": {
        "title": f"{W4_PRODUCERS} producers to {W4_CONSUMERS} consumers",
        "kind": "rate",
        "params": {"producers": W4_PRODUCERS, "consumers": W4_CONSUMERS},
    },
    "W5": {"title": "round trip, blocking", "kind": "latency", "params": {}},
    "W6": {"title": "floor: W1 in C, one by one", "kind": "rate", "params": {}, "baseline": "W1"},
    "W6b": {"title": f"floor: W1 in C, bursts of {BATCH}", "kind": "rate", "params": {}, "baseline": "W1"},
    # asyncio (bench/systems/asyncio_sys.py): A1 is compared with mp.Queue's W1, A5 with W5.
    "A1": {"title": "small, awaiting consumer", "kind": "rate", "params": {}, "baseline": "W1"},
    "A5": {"title": "round trip, awaiting", "kind": "latency", "params": {}, "baseline": "W5"},
    # The object queue: pyshm.Queue and its peers (any picklable object). Q2 and Q3 come in
    # one workload per size; --workloads Q2 / Q3 name them all (GROUPS).
    "Q1": {"title": "objects (int, float, str), one by one", "kind": "rate", "params": {}},
    **{w: {"title": f"numpy array, {_size_label(n)}", "kind": "bytes", "params": {"size": n},
           "warm": 4 if n <= 1 << 20 else 2, "quick": n <= 1 << 20} for w, n in Q2_SIZES.items()},
    **{w: {"title": f"array allocated in the queue, {_size_label(n)}", "kind": "time", "params": {"size": n},
           "warm": 10 if n <= 1 << 20 else 2, "quick": n <= 1 << 20} for w, n in Q3_SIZES.items()},
    "Q4": {
        "title": f"objects, {W4_PRODUCERS} producers to {W4_CONSUMERS} consumers",
        "kind": "rate",
        "params": {"producers": W4_PRODUCERS, "consumers": W4_CONSUMERS},
    },
}
# Names for several workloads at once (--workloads Q2,Q3).
GROUPS = {"Q2": list(Q2_SIZES), "Q3": list(Q3_SIZES)}
# Lower is better for these kinds: ratios to mp.Queue are its figure over ours.
LOWER_IS_BETTER = ("latency", "time")

# Messages (W4: per producer; W5: round trips). quick: the whole run; probe: the
# calibration run of a full run, whose rate sets n for the target duration, within max.
COUNTS = {
    "quick": {"W1": 2000, "W2": 2000, "W3": 40, "W4": 400, "W5": 300, "W6": 20000, "W6b": 20000},
    "probe": {"W1": 20000, "W2": 20000, "W3": 200, "W4": 4000, "W5": 2000, "W6": 200000, "W6b": 200000},
    "max": {"W1": 5_000_000, "W2": 10_000_000, "W3": 50_000, "W4": 2_000_000, "W5": 200_000,
            "W6": 50_000_000, "W6b": 100_000_000},
}
for _k, _v in {"quick": (2000, 300), "probe": (20000, 2000), "max": (5_000_000, 200_000)}.items():
    COUNTS[_k].update(A1=_v[0], A5=_v[1])
# The object queue. The 64 MiB and 1 GiB ones start from a handful of messages (mp.Queue
# takes a tenth of a second for one of 64 MiB); Q3d (1 GiB) stays at a few hundred.
COUNTS["quick"].update(Q1=2000, Q2a=40, Q2b=4, Q3a=2000, Q3b=1000, Q3c=4, Q3d=4, Q4=400)
COUNTS["probe"].update(Q1=20000, Q2a=200, Q2b=6, Q3a=20000, Q3b=5000, Q3c=6, Q3d=6, Q4=4000)
COUNTS["max"].update(Q1=5_000_000, Q2a=50_000, Q2b=2000, Q3a=5_000_000, Q3b=2_000_000, Q3c=1_000_000,
                     Q3d=500, Q4=2_000_000)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- machine ---------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "setup.py"],
                               capture_output=True, text=True)
        if rev.returncode == 0:
            info["commit"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return info


def find_pyshm() -> dict:
    """Import pyshm: the one installed (`pip install .`, or editable: `pip install -e .`,
    which is this tree's src/pyshm), else the tree's src/pyshm if its extension is built
    there. Whatever comes first on the path wins, so PYTHONPATH can point the bench at
    another build.

    The record names the extension by its path relative to the repository (or, for one
    installed elsewhere, by its file name): no absolute path of the machine."""
    try:
        import pyshm._pyshm  # noqa: F401
    except ImportError:
        src = os.path.join(ROOT, "src")
        if not os.path.isdir(os.path.join(src, "pyshm")):
            return {}
        for name in [m for m in sys.modules if m == "pyshm" or m.startswith("pyshm.")]:
            del sys.modules[name]
        sys.path.insert(0, src)
        try:
            import pyshm._pyshm  # noqa: F401,F811
        except ImportError:
            sys.path.remove(src)
            return {}
    import hashlib

    import pyshm
    import pyshm._pyshm as ext

    path = os.path.realpath(ext.__file__)
    root = os.path.realpath(ROOT)
    in_tree = path.startswith(root + os.sep)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    st = os.stat(path)
    return {
        "extension": os.path.relpath(path, root) if in_tree else os.path.basename(path),
        "from_tree": in_tree,
        "version": getattr(pyshm, "__version__", ""),
        "sha256": digest,
        "built": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def versions(systems: list[System]) -> dict:
    out = {s.name: s.version for s in systems if s.version}
    try:
        import matplotlib

        out["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    return out


# --- measuring -------------------------------------------------------------------------------------


def metric(kind: str, params: Params, raw: dict) -> dict:
    """The figures of one measurement."""
    if kind == "latency":
        return {k: raw[k] for k in ("p50_us", "p90_us", "p99_us", "mean_us", "max_us", "n")}
    rate = raw["messages"] / raw["seconds"]
    out = {"msgs_per_s": rate, "seconds": raw["seconds"], "messages": raw["messages"]}
    if kind == "bytes":
        out["gb_per_s"] = rate * params.size / 1e9
    if kind == "time":
        out["us_per_msg"] = 1e6 / rate
    return out


HEADLINE = {"rate": "msgs_per_s", "bytes": "gb_per_s", "latency": "p50_us", "time": "us_per_msg"}
UNIT = {"rate": "msg/s", "bytes": "GB/s", "latency": "us", "time": "us/msg"}


def headline(kind: str, m: dict) -> float:
    return float(m[HEADLINE[kind]])


def make_params(workload: str, n: int, timeout: float) -> Params:
    warm = max(n // 10, WORKLOADS[workload].get("warm", 10))
    return Params(workload, n=n, warm=warm, timeout=timeout, **WORKLOADS[workload]["params"])


def select_workloads(spec: str | None, quick: bool) -> list[str]:
    """The workloads of --workloads in the order given (all by default), group names
    expanded in place. A quick run leaves out the big ones (quick: False) unless they are
    named on their own."""
    if spec is None:
        return [w for w in WORKLOADS if not quick or WORKLOADS[w].get("quick", True)]
    out: list[str] = []
    for name in (w.strip() for w in spec.split(",")):
        if not name:
            continue
        if name in GROUPS:
            names = [w for w in GROUPS[name] if not quick or WORKLOADS[w].get("quick", True)]
        elif name in WORKLOADS:
            names = [name]
        else:
            raise ValueError(f"unknown workload {name!r} (have {', '.join([*WORKLOADS, *GROUPS])})")
        out += [w for w in names if w not in out]
    return out


def measure(system: System, workload: str, n: int, timeout: float) -> dict:
    params = make_params(workload, n, timeout)
    raw = system.workloads[workload](params)
    return metric(WORKLOADS[workload]["kind"], params, raw)


def calibrate(system: System, workload: str, target: float, timeout: float) -> int:
    """n such that one measurement takes about `target` seconds (one probe run; two
    when a probe of a handful of big messages was over too soon to time well)."""
    probe = COUNTS["probe"][workload]
    m = measure(system, workload, probe, timeout)
    kind = WORKLOADS[workload]["kind"]
    if kind != "latency" and probe < 100 and m["seconds"] < target / 10:
        # Q2b, Q3c, Q3d: a few messages size mp.Queue well, pyshm.Queue poorly (Q3c's 6
        # messages last well under a millisecond): probe again with a tenth of the target.
        again = int(min(m["msgs_per_s"] * target / 10, COUNTS["max"][workload]))
        if again > probe:
            m = measure(system, workload, again, timeout)
    rate = 1e6 / m["mean_us"] if kind == "latency" else m["msgs_per_s"]
    rate /= WORKLOADS[workload]["params"].get("producers", 1)  # W4, Q4: n is per producer
    return int(min(max(rate * target, probe), COUNTS["max"][workload]))


# --- summarising ----------------------------------------------------------------------------------


def summarise(runs: dict) -> dict:
    """Median (and spread) per workload and system, and ratios to mp.Queue."""
    summary: dict = {}
    for w, per_system in runs.items():
        kind = WORKLOADS[w]["kind"]
        summary[w] = {}
        for name, ms in per_system.items():
            if not ms:
                continue
            values = [headline(kind, m) for m in ms]
            entry: dict[str, Any] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                     "reps": len(values)}
            if kind == "latency":
                entry["p99_median"] = statistics.median(m["p99_us"] for m in ms)
            entry["unit"] = UNIT[kind]
            summary[w][name] = entry
    for w, per_system in summary.items():
        kind = WORKLOADS[w]["kind"]
        base_w = WORKLOADS[w].get("baseline", w)
        # Also the median of per-repetition ratios: each pairs two measurements a few
        # seconds apart, which cancels slow drift of the machine better.
        base_runs = runs.get(base_w, {}).get(BASELINE, [])
        for name, entry in per_system.items():
            mine = runs[w][name]
            pairs = [(headline(kind, a), headline(WORKLOADS[base_w]["kind"], b)) for a, b in zip(mine, base_runs)]
            if pairs:
                ratios = [b / a if kind in LOWER_IS_BETTER else a / b for a, b in pairs]
                entry["vs_mp_queue_paired"] = statistics.median(ratios)
        base = summary.get(base_w, {}).get(BASELINE)
        pipe = summary.get(w, {}).get(PIPE)
        for name, entry in per_system.items():
            if base:
                if kind in LOWER_IS_BETTER:
                    entry["vs_mp_queue"] = base["median"] / entry["median"]
                else:
                    entry["vs_mp_queue"] = entry["median"] / base["median"]
            if kind == "latency" and pipe:
                entry["vs_pipe"] = pipe["median"] / entry["median"]
    return summary


def fmt_value(kind: str, v: float) -> str:
    if kind == "latency":
        return f"{v:,.1f} µs"
    if kind == "bytes":
        return f"{v:.2f} GB/s"
    if kind == "time":
        return f"{v:,.2f} µs/msg" if v < 100 else f"{v:,.0f} µs/msg"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M msg/s"
    return f"{v / 1e3:.1f} k msg/s"


def table(summary: dict, systems: list[System], missing: dict, errors: dict, workloads: list[str]) -> str:
    rows = ["| Workload | System | Median | p99 | vs mp.Queue | Spread (min–max) | How |",
            "|---|---|---:|---:|---:|---|---|"]
    by_name = {s.name: s for s in systems}
    for name in sorted(missing):
        rows.append(f"| all | {name} | missing | | | | {missing[name]} |")
    for w, spec in WORKLOADS.items():
        if w not in workloads:  # not run: no rows, n/a ones included
            continue
        if w not in summary and not any(w in s.workloads or w in s.unsupported for s in systems):
            continue
        kind = spec["kind"]
        for name in [s.name for s in systems]:
            s = by_name[name]
            label = f"{w} {spec['title']}"
            if w not in s.workloads and w not in s.unsupported:
                continue
            if w in s.unsupported:
                rows.append(f"| {label} | {name} | n/a | | | | {s.unsupported[w]} |")
                continue
            if (w, name) in errors:
                rows.append(f"| {label} | {name} | FAILED | | | | {errors[(w, name)].splitlines()[0][:120]} |")
                continue
            e = summary.get(w, {}).get(name)
            if e is None:
                continue
            p99 = fmt_value(kind, e["p99_median"]) if kind == "latency" else ""
            ratio = f"{e['vs_mp_queue']:.1f}×" if "vs_mp_queue" in e else ""
            if "vs_pipe" in e:
                ratio += f" ({e['vs_pipe']:.1f}× Pipe)"
            spread = f"{fmt_value(kind, e['min'])} – {fmt_value(kind, e['max'])}" if e["reps"] > 1 else ""
            rows.append(f"| {label} | {name} | {fmt_value(kind, e['median'])} | {p99} | {ratio} | {spread} "
                        f"| {s.notes.get(w, '')} |")
    return "\n".join(rows)


def targets(summary: dict, pool: dict) -> list[dict]:
    """The issue's goals, checked against this run (reported, never asserted)."""
    out = []

    def get(w, name, key="median"):
        return summary.get(w, {}).get(name, {}).get(key)

    def add(goal, value, ok, detail):
        out.append({"goal": goal, "value": value, "met": ok, "detail": detail})

    for py in ("pyshm", "pyshm-blocking"):
        w1, q = get("W1", py), get("W1", BASELINE)
        if w1 and q:
            add(f"W1 {py} >= 15x mp.Queue", w1 / q, w1 / q >= 15, f"{w1:,.0f} vs {q:,.0f} msg/s")
        ff = get("W1", "faster-fifo")
        if w1 and ff:
            add(f"W1 {py} >= 3x faster-fifo", w1 / ff, w1 / ff >= 3, f"{w1:,.0f} vs {ff:,.0f} msg/s")
        floor = get("W6", "C core")
        if w1 and floor:
            add(f"W1 {py} >= 25% of the W6 C floor (one by one)", w1 / floor, w1 / floor >= 0.25,
                f"{w1:,.0f} vs {floor:,.0f} msg/s")
        w2 = get("W2", py)
        if w1 and w2:
            add(f"W2 {py} >= 1.5x its W1", w2 / w1, w2 / w1 >= 1.5, f"{w2:,.0f} vs {w1:,.0f} msg/s")
        for w, goal in (("W3", 10), ("W4", 10)):
            v, q = get(w, py), get(w, BASELINE)
            if v and q:
                add(f"{w} {py} >= {goal}x mp.Queue", v / q, v / q >= goal, f"{v:,.3g} vs {q:,.3g}")
    w1s = [v for v in (get("W1", "pyshm"), get("W1", "pyshm-blocking")) if v]
    w2s = [v for v in (get("W2", "pyshm"), get("W2", "pyshm-blocking")) if v]
    if w1s and w2s:
        add("W2 >= 1.5x W1, best pyshm variant of each", max(w2s) / max(w1s), max(w2s) / max(w1s) >= 1.5,
            f"{max(w2s):,.0f} vs {max(w1s):,.0f} msg/s")
    for py in ("pyshm-blocking", "pyshm"):
        v, pipe = get("W5", py), get("W5", PIPE)
        if v and pipe:
            add(f"W5 {py} p50 <= 1/5 of Pipe's", pipe / v, pipe / v >= 5, f"p50 {v:.1f} µs vs Pipe {pipe:.1f} µs"
                + (" (spin, not the blocking API)" if py == "pyshm" else ""))
    a1, q = get("A1", "pyshm-blocking"), get("W1", BASELINE)
    if a1 and q:
        add("A1 awaiting consumer >= 10x mp.Queue's W1", a1 / q, a1 / q >= 10, f"{a1:,.0f} vs {q:,.0f} msg/s")
    a5, sp = get("A5", "pyshm-blocking"), get("A5", "asyncio-socketpair")
    if a5 and sp:
        add("A5 p50 <= 1/5 of the asyncio socket pair's", sp / a5, sp / a5 >= 5, f"p50 {a5:.1f} µs vs {sp:.1f} µs")
    w5 = get("W5", "pyshm-blocking")
    if a5 and w5:
        add("A5 p50 within 3x pyshm-blocking's W5", a5 / w5, a5 / w5 <= 3, f"p50 {a5:.1f} µs vs {w5:.1f} µs")
    # The object queue: pyshm.Queue against its peers.
    pq = "pyshm.Queue"
    v, q, ff = get("Q1", pq), get("Q1", BASELINE), get("Q1", "faster-fifo")
    if v and q:
        add("Q1 pyshm.Queue >= 10x mp.Queue", v / q, v / q >= 10, f"{v:,.0f} vs {q:,.0f} msg/s")
    if v and ff:
        add("Q1 pyshm.Queue >= 8x faster-fifo", v / ff, v / ff >= 8, f"{v:,.0f} vs {ff:,.0f} msg/s")
    for w, size in Q2_SIZES.items():
        v, floor, zmq = get(w, pq), get(w, "one-copy floor"), get(w, "pyzmq")
        if v and floor:
            add(f"{w} pyshm.Queue >= 70% of the one-copy floor ({_size_label(size)} arrays)", v / floor,
                v / floor >= 0.7, f"{v:.2f} vs {floor:.2f} GB/s")
        if v and zmq:
            add(f"{w} pyshm.Queue ahead of pyzmq zero-copy ({_size_label(size)} arrays)", v / zmq, v / zmq > 1,
                f"{v:.2f} vs {zmq:.2f} GB/s")
    q3 = sorted((size, w, get(w, pq)) for w, size in Q3_SIZES.items() if get(w, pq))
    if len(q3) >= 2:
        (s0, w0, t0), (s1, w1, t1) = q3[0], q3[-1]
        add(f"Q3 pyshm.Queue in-queue arrays: {_size_label(s1)} within 2x of {_size_label(s0)} a message",
            t1 / t0, t1 / t0 <= 2, f"{w1} {t1:,.1f} vs {w0} {t0:,.1f} µs/msg")
    v, q = get("Q3c", pq), get("Q3c", BASELINE)
    if v and q:
        add("Q3c pyshm.Queue in-queue 64 MiB array >= 100x mp.Queue carrying one", q / v, q / v >= 100,
            f"{v:,.1f} vs {q:,.0f} µs/msg")
    v, q = get("Q4", pq), get("Q4", BASELINE)
    if v and q:
        add("Q4 pyshm.Queue >= 8x mp.Queue", v / q, v / q >= 8, f"{v:,.0f} vs {q:,.0f} msg/s")
    if pool.get("python"):
        t = statistics.median(pool["python"]["create_seconds"])
        add("1 GiB region + 1,000,000-block pool created well under 1 s", t, t < 0.25,
            f"{t * 1000:.0f} ms from Python (median)")
        o = pool["python"]["overhead_per_block"]
        add("pool overhead <= 64 bytes a block", o, o <= 64, f"{o:.1f} B/block")
    return out


# --- README snippet --------------------------------------------------------------------------


README_BEGIN = ".. begin: bench/results/latest.rst (written by bench/run.py)"
README_END = ".. end: bench/results/latest.rst"


def update_readme(snippet: str) -> None:
    """Put a full run's snippet between README.rst's markers, if the README has them."""
    path = os.path.join(os.path.dirname(BENCH_DIR), "README.rst")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return
    head = text[:begin + len(README_BEGIN)]
    with open(path + ".tmp", "w") as f:
        f.write(head + "\n\n" + snippet.rstrip("\n") + "\n\n" + text[end:])
    os.replace(path + ".tmp", path)
    print(f"updated {os.path.relpath(path)}")


def pyshm_label(info: dict) -> str:
    """"; pyshm <commit>" for this tree's build, "; pyshm <version>" for another one."""
    ext = info.get("pyshm") or {}
    if ext and not ext.get("from_tree", True):
        return f"; pyshm {ext.get('version') or ext.get('extension', '?')} (installed)"
    return f"; pyshm {info['commit']}" if info.get("commit") else ""


def rst_snippet(summary: dict, systems: list[System], info: dict, png_name: str) -> str:
    """reStructuredText for README.rst: the chart, the machine, the main figures."""
    load = info.get("loadavg_start", [0])[0]
    lines = info.get("cache_line_round_trip_ns") or []
    note = (f"{info['cpu']}, {info['cores']} cores, {info.get('memory_gib', '?')} GiB, Linux {info['kernel']}, "
            f"Python {info['python']}; {info['date']}; load average {load:.1f} at start"
            + (f"; cache line round trip {min(lines):.0f}–{max(lines):.0f} ns" if lines else "")
            + pyshm_label(info))
    out = [
        f".. image:: bench/results/{png_name}",
        "   :alt: pyshm throughput relative to multiprocessing.Queue, and round-trip latency",
        "",
        f"Measured with ``python bench/run.py`` on {note}. Medians of the repetitions;",
        "numbers from one machine, indicative only.",
    ]

    def list_table(rows: list[str], names: list[str]) -> None:
        out.extend(["", ".. list-table::", "   :header-rows: 1", "", "   * - Workload"])
        out.extend(f"     - {n}" for n in names)
        for w in rows:
            kind = WORKLOADS[w]["kind"]
            out.append(f"   * - {w} {WORKLOADS[w]['title']}")
            for n in names:
                e = summary[w].get(n)
                if not e:
                    out.append("     - n/a")
                elif kind == "latency":
                    out.append(f"     - {e['median']:.1f} µs (p99 {e['p99_median']:.0f})")
                else:
                    out.append(f"     - {fmt_value(kind, e['median'])}"
                               + (f" ({e['vs_mp_queue']:.1f}×)" if "vs_mp_queue" in e else ""))

    rows = [w for w in ("W1", "W2", "W3", "W4", "W5", "A1", "A5") if w in summary]
    names = [s.name for s in systems if s.name != "C core"
             and any(w in s.workloads for w in ("W1", "W2", "W3", "W4", "W5"))]  # A5-only peers: below
    if rows:
        list_table(rows, names)
    peers = [(n, e) for n, e in summary.get("A5", {}).items() if n not in names]
    if peers:
        out += ["", "A1 is compared with mp.Queue's W1. A5's peers, same run: "
                + "; ".join(f"{n} {e['median']:.1f} µs (p99 {e['p99_median']:.0f})" for n, e in peers) + "."]
    # The object queue: its own systems (pyshm.Queue, pyzmq, the one-copy floor).
    qrows = [w for w in WORKLOADS if w.startswith("Q") and w in summary]
    if qrows:
        qnames = [s.name for s in systems if any(s.name in summary[w] for w in qrows)]
        out += ["", "The object queue (``pyshm.Queue``), same run. Q3 is the time a message (lower is better);",
                "its ratio is mp.Queue's time for a 64 MiB array over pyshm.Queue's."]
        list_table(qrows, qnames)
    return "\n".join(out) + "\n"


# --- chart --------------------------------------------------------------------------------------


def _ratio_bars(ax, summary: dict, names: list[str], groups: list[str], color_of: dict,
                wrap: int = 0) -> list[str]:
    """Grouped bars of each system's ratio to mp.Queue per workload; the x labels (the
    titles wrapped at ``wrap`` characters, if given)."""
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs, ys = [], []
        for g, w in enumerate(groups):
            e = summary[w].get(name)
            if e and "vs_mp_queue" in e:
                xs.append(g + (i - (len(names) - 1) / 2) * width)
                ys.append(e["vs_mp_queue"])
        ax.bar(xs, ys, width, label=name, color=color_of[name])
    if wrap:
        import textwrap

        return [f"{w}\n" + "\n".join(textwrap.wrap(WORKLOADS[w]["title"], wrap)) for w in groups]
    return [f"{w}\n{WORKLOADS[w]['title']}" for w in groups]


def _ratio_axes(ax, labels: list[str], title: str, ylabel: str) -> None:
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax.grid(axis="y", which="both", alpha=0.3)


def chart(summary: dict, systems: list[System], info: dict, path: str) -> None:
    """Grouped bars of throughput / mp.Queue's per workload (log), and W5 latency; for
    the object queue, the same bars (Q1, Q2, Q3 at 64 MiB, Q4) and Q3's time a message
    by size. One row of two panels for each family that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = [w for w in ("W1", "W2", "W3", "W4", "A1") if w in summary]
    floor = [(w, summary[w]["C core"]) for w in ("W6", "W6b") if "C core" in summary.get(w, {})]
    qgroups = [w for w in ("Q1", *Q2_SIZES, "Q3c", "Q4") if w in summary]
    q3 = [w for w in Q3_SIZES if w in summary]
    w_row = bool(groups or floor or "W5" in summary) or not (qgroups or q3)
    q_row = bool(qgroups or q3)
    fig, axes = plt.subplots(int(w_row) + int(q_row), 2, figsize=(14, 6 * (int(w_row) + int(q_row))),
                             gridspec_kw={"width_ratios": [2.2, 1]}, squeeze=False)
    # One colour per system across the panels: those of the W workloads first, as before
    # the object queue's, then the object queue's own systems.
    names = [s.name for s in systems if any(s.name in summary.get(w, {}) for w in groups)]
    every = names + [s.name for s in systems if s.name not in names
                     and any(s.name in summary.get(w, {}) for w in qgroups + q3)]
    color_of = {n: colors[i % len(colors)] for i, n in enumerate(every)}

    if w_row:
        ax, lat = axes[0]
        labels = _ratio_bars(ax, summary, names, groups, color_of)
        if floor:  # the C floor: its own group, compared with mp.Queue's W1
            g = len(groups)
            for j, (w, e) in enumerate(floor):
                ax.bar(g + (j - (len(floor) - 1) / 2) * 0.3, e.get("vs_mp_queue", 0), 0.3,
                       color="0.35" if w == "W6" else "0.65",
                       label="C core, one by one" if w == "W6" else f"C core, bursts of {BATCH}")
            labels.append("W6\nC floor (vs mp.Queue W1)")
        _ratio_axes(ax, labels, "Throughput relative to multiprocessing.Queue, same run (higher is better)",
                    "median throughput / mp.Queue's (log scale)")

        w5 = summary.get("W5", {})
        lnames = [n for n in names if n in w5] + [n for n in w5 if n not in names]
        if lnames:
            x = list(range(len(lnames)))
            lat.bar([i - 0.2 for i in x], [w5[n]["median"] for n in lnames], 0.4, label="p50")
            lat.bar([i + 0.2 for i in x], [w5[n]["p99_median"] for n in lnames], 0.4, label="p99")
            lat.set_xticks(x)
            lat.set_xticklabels(lnames, rotation=30, ha="right", fontsize=8)
            lat.set_yscale("log")
            lat.set_ylabel("round trip, µs (log scale)")
            lat.set_title("W5 round trip (lower is better)", fontsize=10)
            lat.legend(fontsize=8)
            lat.grid(axis="y", which="both", alpha=0.3)

    if q_row:
        ax, per = axes[-1]
        qnames = [s.name for s in systems if any(s.name in summary.get(w, {}) for w in qgroups)]
        labels = _ratio_bars(ax, summary, qnames, qgroups, color_of, wrap=20)
        _ratio_axes(ax, labels, "Object queue: relative to multiprocessing.Queue, same run (higher is better; "
                    "Q3c: its time a message over ours)", "median figure / mp.Queue's (log scale)")
        ys = []
        for name in [n for n in every if any(n in summary.get(w, {}) for w in q3)]:
            pts = [(Q3_SIZES[w], summary[w][name]["median"]) for w in q3 if name in summary[w]]
            per.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name, color=color_of[name])
            ys += [y for _, y in pts]
        if q3:
            per.set_ylim(min(ys) / 3, max(ys) * 3)  # at least a decade: a flat line looks flat
            per.set_xscale("log", base=2)
            per.set_yscale("log")
            per.set_xticks([Q3_SIZES[w] for w in q3])
            per.set_xticklabels([_size_label(Q3_SIZES[w]) for w in q3], fontsize=8)
            per.set_xlabel("array size")
            per.set_ylabel("µs a message (log scale)")
            per.set_title("Q3 array allocated in the queue, no copy (lower is better)", fontsize=10)
            per.legend(fontsize=8)
            per.grid(which="both", alpha=0.3)
    load = [info[k][0] for k in ("loadavg_start", "loadavg_end") if info.get(k)]
    lines = info.get("cache_line_round_trip_ns") or []
    fig.suptitle(f"pyshm bench: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['date']}"
                 + (f"; load average {' → '.join(f'{x:.1f}' for x in load)}" if load else "")
                 + (f"; cache line round trip {min(lines):.0f}–{max(lines):.0f} ns" if lines else "")
                 + pyshm_label(info), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (CI: keeps the harness alive)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; 1 with --quick)")
    ap.add_argument("--seconds", type=float, default=1.0, help="target duration of one measurement (default 1)")
    ap.add_argument("--workloads", default=None,
                    help="comma-separated subset, e.g. W1,W5 or Q1,Q2,Q3,Q4 (Q2, Q3: every size; "
                         "--quick leaves out the 64 MiB and 1 GiB ones unless named, e.g. Q3c)")
    ap.add_argument("--systems", default=None, help="comma-separated subset of system names")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"),
                    help="directory for latest.json/.png (quick.json/.png with --quick)")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    timeout = 60.0 if args.quick else 180.0
    try:
        workloads = select_workloads(args.workloads, args.quick)
    except ValueError as exc:
        ap.error(str(exc))

    started = time.monotonic()
    info = machine_info()
    info["pyshm"] = find_pyshm()
    systems, missing = load()
    try:  # pyshm-blocking's awaiting workloads (A1, A5); n/a on the systems without them
        from bench.systems import asyncio_sys

        asyncio_sys.attach(systems)
    except ImportError:
        pass
    if args.systems:
        wanted = {s.strip() for s in args.systems.split(",")}
        systems = [s for s in systems if s.name in wanted]
        missing = {k: v for k, v in missing.items() if k in wanted}
    for name, why in missing.items():
        log(f"MISSING {name}: {why}")
    log(f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, load {info['loadavg_start'][0]:.2f}; "
        f"{reps} repetition(s){' (quick)' if args.quick else ''}")

    runs: dict = {w: {s.name: [] for s in systems if w in s.workloads} for w in workloads}
    errors: dict = {}
    counts: dict = {}

    def attempt(s: System, w: str, n: int):
        try:
            return measure(s, w, n, timeout)
        except BenchFailure as exc:
            if exc.verification:
                log(f"\n!!! VERIFICATION FAILED: {w} on {s.name}\n{exc}\n")
                raise SystemExit(2)
            errors[(w, s.name)] = str(exc)
            log(f"\n!!! {w} on {s.name} FAILED:\n{exc}\n")
        except Exception as exc:  # a peer that crashes must not take the others down
            errors[(w, s.name)] = f"{type(exc).__name__}: {exc}"
            log(f"\n!!! {w} on {s.name} FAILED: {type(exc).__name__}: {exc}\n")
        return None

    # Calibration: one probe per workload and system sizes its measurements (and warms up).
    for w in workloads:
        for s in systems:
            if w not in s.workloads:
                continue
            if args.quick:
                counts[(w, s.name)] = COUNTS["quick"][w]
                continue
            try:
                counts[(w, s.name)] = calibrate(s, w, args.seconds, timeout)
                log(f"calibrated {w:4} {s.name:15} n={counts[(w, s.name)]:,}")
            except BenchFailure as exc:
                if exc.verification:
                    log(f"\n!!! VERIFICATION FAILED: {w} on {s.name}\n{exc}\n")
                    return 2
                errors[(w, s.name)] = str(exc)
                log(f"\n!!! {w} on {s.name} FAILED in calibration:\n{exc}\n")
            except Exception as exc:
                errors[(w, s.name)] = f"{type(exc).__name__}: {exc}"
                log(f"\n!!! {w} on {s.name} FAILED in calibration: {exc}\n")

    pool: dict = {"python": {"create_seconds": []}, "c": {"create_seconds": []}}
    lines: list[float] = []
    try:
        for rep in range(reps):
            for wi, w in enumerate(workloads):
                order = [s for s in systems if w in s.workloads and (w, s.name) not in errors]
                if not order:
                    continue
                k = (rep + wi) % len(order)
                order = order[k:] + order[:k]
                for s in order:
                    m = attempt(s, w, counts[(w, s.name)])
                    if m is not None:
                        runs[w][s.name].append(m)
                        log(f"rep {rep + 1}/{reps} {w:4} {s.name:15} "
                            f"{fmt_value(WORKLOADS[w]['kind'], headline(WORKLOADS[w]['kind'], m))}")
            # What the hardware does right now: one cache line between two processes.
            try:
                from bench.systems import c_core

                lines.append(c_core.line_round_trip())
            except Exception:
                pass
            # The pool-creation claim, once per repetition.
            try:
                from bench.systems import pyshm_sys

                r = pyshm_sys.pool_creation()
                pool["python"]["create_seconds"].append(r.pop("create_seconds"))
                pool["python"].update(r)
            except Exception as exc:
                errors[("pool", "pyshm")] = f"{type(exc).__name__}: {exc}"
            try:
                from bench.systems import c_core

                r = c_core.pool_creation()
                pool["c"]["create_seconds"].append(r.pop("create_seconds"))
                pool["c"].update(r)
            except Exception as exc:
                errors[("pool", "C core")] = f"{type(exc).__name__}: {exc}"
    except SystemExit as exc:
        return int(exc.code or 2)

    summary = summarise(runs)
    goals = targets(summary, pool)
    info["loadavg_end"] = list(os.getloadavg())
    if lines:
        info["cache_line_round_trip_ns"] = lines
    elapsed = time.monotonic() - started
    text = table(summary, systems, missing, errors, workloads)

    print(f"\n## pyshm bench: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['date']}")
    print(f"load average {info['loadavg_start'][0]:.2f} at start, {info['loadavg_end'][0]:.2f} at end; "
          f"{reps} repetition(s){', quick sizes' if args.quick else ''}; median shown")
    if lines:
        print(f"cache line round trip between two processes (C, once per repetition): "
              f"{', '.join(f'{x:.0f}' for x in lines)} ns")
    if info["pyshm"]:
        print(f"pyshm {info['pyshm']['version']} extension {info['pyshm']['extension']} "
              f"{info['pyshm']['sha256']} built {info['pyshm']['built']}"
              + (f", tree {info['commit']}" if info.get("commit") and info["pyshm"]["from_tree"] else
                 " (not this tree's build)"))
    print()
    print(text)
    if pool["python"]["create_seconds"]:
        p, c = pool["python"], pool["c"]
        print(f"\nPool creation, 1 GiB region + {p['count']:,} blocks of {p['elt_size']} B: "
              f"{statistics.median(p['create_seconds']) * 1000:.1f} ms from Python"
              + (f", {statistics.median(c['create_seconds']) * 1000:.1f} ms in C" if c["create_seconds"] else "")
              + f"; overhead {p['overhead_per_block']:.1f} B/block"
              + (f" (C footprint: {c['overhead_per_block']:.1f} B/block)" if "overhead_per_block" in c else ""))
    print("\nGoals (reported, not asserted):")
    for g in goals:
        print(f"  [{'met' if g['met'] else 'MISSED'}] {g['goal']}: {g['value']:.2f} ({g['detail']})")
    if missing:
        print("\nMissing peers: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    print(f"\nTotal time {elapsed:.0f} s")

    os.makedirs(args.out, exist_ok=True)
    result = {
        "machine": info,
        "versions": versions(systems),
        "config": {"quick": args.quick, "reps": reps, "target_seconds": args.seconds, "workloads": workloads,
                   "counts": {f"{w}/{n}": c for (w, n), c in counts.items()}},
        "workloads": {w: {k: v for k, v in WORKLOADS[w].items() if k != "params"} for w in workloads},
        "systems": {s.name: {"notes": s.notes, "unsupported": s.unsupported, "version": s.version} for s in systems},
        "missing": missing,
        "summary": summary,
        "runs": runs,
        "pool_creation": pool,
        "goals": goals,
        "errors": {f"{w}/{n}": e for (w, n), e in errors.items()},
        "elapsed_seconds": elapsed,
        "table_markdown": text,
    }
    stem = "quick" if args.quick else "latest"  # a --quick run never replaces the full results
    json_path = os.path.join(args.out, f"{stem}.json")
    with open(json_path + ".tmp", "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    os.replace(json_path + ".tmp", json_path)
    print(f"wrote {os.path.relpath(json_path)}")
    if not args.no_chart:
        try:
            png = os.path.join(args.out, f"{stem}.png")
            chart(summary, systems, info, png)
            print(f"wrote {os.path.relpath(png)}")
        except ImportError as exc:  # the peers' and the chart's packages are optional
            log(f"no chart: {exc} (pip install -r bench/requirements.txt)")
    if not args.quick:
        rst = os.path.join(args.out, f"{stem}.rst")
        with open(rst, "w") as f:
            f.write(rst_snippet(summary, systems, info, f"{stem}.png"))
        print(f"wrote {os.path.relpath(rst)} (the chart and table for README.rst)")
        if os.path.abspath(args.out) == os.path.abspath(os.path.join(BENCH_DIR, "results")):
            update_readme(rst_snippet(summary, systems, info, f"{stem}.png"))
    if errors:
        log("\n!!! FAILURES:\n" + "\n".join(f"  {w} / {n}: {e.splitlines()[0] if e else ''}"
                                             for (w, n), e in errors.items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
