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

from bench.common import BATCH, LARGE, SMALL, W4_CONSUMERS, W4_PRODUCERS, BenchFailure, Params  # noqa: E402
from bench.systems import System, load  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
BASELINE = "mp.Queue"
PIPE = "mp.Pipe"

# kind: "rate" (messages/s), "bytes" (GB/s), "latency" (round trip, µs)
WORKLOADS: dict[str, dict[str, Any]] = {
    "W1": {"title": "small, one by one", "kind": "rate", "params": {}},
    "W2": {"title": f"small, in batches of {BATCH}", "kind": "rate", "params": {"batch": BATCH}},
    "W3": {"title": "large (1 MiB)", "kind": "bytes", "params": {"size": LARGE}},
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
}

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
    return out


def headline(kind: str, m: dict) -> float:
    return float(m[{"rate": "msgs_per_s", "bytes": "gb_per_s", "latency": "p50_us"}[kind]])


def make_params(workload: str, n: int, timeout: float) -> Params:
    warm = max(n // 10, 10)
    if workload == "W3":
        warm = max(n // 10, 4)
    return Params(workload, n=n, warm=warm, timeout=timeout, **WORKLOADS[workload]["params"])


def measure(system: System, workload: str, n: int, timeout: float) -> dict:
    params = make_params(workload, n, timeout)
    raw = system.workloads[workload](params)
    return metric(WORKLOADS[workload]["kind"], params, raw)


def calibrate(system: System, workload: str, target: float, timeout: float) -> int:
    """n such that one measurement takes about `target` seconds (one probe run)."""
    probe = COUNTS["probe"][workload]
    m = measure(system, workload, probe, timeout)
    kind = WORKLOADS[workload]["kind"]
    rate = 1e6 / m["mean_us"] if kind == "latency" else m["msgs_per_s"]
    if workload == "W4":
        rate /= W4_PRODUCERS
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
            entry["unit"] = {"rate": "msg/s", "bytes": "GB/s", "latency": "us"}[kind]
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
                ratios = [b / a if kind == "latency" else a / b for a, b in pairs]
                entry["vs_mp_queue_paired"] = statistics.median(ratios)
        base = summary.get(base_w, {}).get(BASELINE)
        pipe = summary.get(w, {}).get(PIPE)
        for name, entry in per_system.items():
            if base:
                if kind == "latency":
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
    if v >= 1e6:
        return f"{v / 1e6:.2f} M msg/s"
    return f"{v / 1e3:.1f} k msg/s"


def table(summary: dict, systems: list[System], missing: dict, errors: dict) -> str:
    rows = ["| Workload | System | Median | p99 | vs mp.Queue | Spread (min–max) | How |",
            "|---|---|---:|---:|---:|---|---|"]
    by_name = {s.name: s for s in systems}
    for name in sorted(missing):
        rows.append(f"| all | {name} | missing | | | | {missing[name]} |")
    for w, spec in WORKLOADS.items():
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
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - Workload",
    ]
    names = [s.name for s in systems if s.name != "C core"
             and any(w in s.workloads for w in ("W1", "W2", "W3", "W4", "W5"))]  # A5-only peers: below
    out += [f"     - {n}" for n in names]
    for w in ("W1", "W2", "W3", "W4", "W5", "A1", "A5"):
        if w not in summary:
            continue
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
    peers = [(n, e) for n, e in summary.get("A5", {}).items() if n not in names]
    if peers:
        out += ["", "A1 is compared with mp.Queue's W1. A5's peers, same run: "
                + "; ".join(f"{n} {e['median']:.1f} µs (p99 {e['p99_median']:.0f})" for n, e in peers) + "."]
    return "\n".join(out) + "\n"


# --- chart --------------------------------------------------------------------------------------


def chart(summary: dict, systems: list[System], info: dict, path: str) -> None:
    """Grouped bars of throughput / mp.Queue's per workload (log), and W5 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lat) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [2.2, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = [w for w in ("W1", "W2", "W3", "W4", "A1") if w in summary]
    names = [s.name for s in systems if any(s.name in summary.get(w, {}) for w in groups)]
    color_of = {n: colors[i % len(colors)] for i, n in enumerate(names)}
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs, ys = [], []
        for g, w in enumerate(groups):
            e = summary[w].get(name)
            if e and "vs_mp_queue" in e:
                xs.append(g + (i - (len(names) - 1) / 2) * width)
                ys.append(e["vs_mp_queue"])
        ax.bar(xs, ys, width, label=name, color=color_of[name])
    labels = [f"{w}\n{WORKLOADS[w]['title']}" for w in groups]
    floor = [(w, summary[w]["C core"]) for w in ("W6", "W6b") if "C core" in summary.get(w, {})]
    if floor:  # the C floor: its own group, compared with mp.Queue's W1
        g = len(groups)
        for j, (w, e) in enumerate(floor):
            ax.bar(g + (j - (len(floor) - 1) / 2) * 0.3, e.get("vs_mp_queue", 0), 0.3,
                   color="0.35" if w == "W6" else "0.65",
                   label="C core, one by one" if w == "W6" else f"C core, bursts of {BATCH}")
        labels.append("W6\nC floor (vs mp.Queue W1)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("median throughput / mp.Queue's (log scale)")
    ax.set_title("Throughput relative to multiprocessing.Queue, same run (higher is better)", fontsize=10)
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax.grid(axis="y", which="both", alpha=0.3)

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
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset, e.g. W1,W5")
    ap.add_argument("--systems", default=None, help="comma-separated subset of system names")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"),
                    help="directory for latest.json/.png (quick.json/.png with --quick)")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    timeout = 60.0 if args.quick else 180.0
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} (have {', '.join(WORKLOADS)})")

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
    text = table(summary, systems, missing, errors)

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
