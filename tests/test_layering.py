"""The shape of the code, checked the plain way (docs/design.md, "Where to find what").

- src/core never includes Python.h; its include graph has no cycle; ring.h, the FIFO at
  the bottom, includes nothing of the project but the atomics.
- One claim loop: the CAS that claims queue positions is written once, in ring.h.
- setup.py builds every .c file of src/core and src/ext, and nothing else.
- The binding's object types share one base: no run of six or more lines repeats between
  mempool_type.c, ring_type.c and rawbuf_type.c.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "src", "core")
EXT = os.path.join(ROOT, "src", "ext")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources(folder, ext=(".c", ".h")):
    return sorted(f for f in os.listdir(folder) if f.endswith(ext))


def read(folder, name):
    with open(os.path.join(folder, name)) as f:
        return f.read()


def include_graph():
    graph = {}
    for name in sources(CORE):
        graph[name] = [inc for inc in INCLUDE.findall(read(CORE, name)) if os.path.exists(os.path.join(CORE, inc))]
    return graph


def test_core_is_pure_c():
    for name in sources(CORE):
        assert "Python.h" not in read(CORE, name), f"src/core/{name} includes Python.h"


def test_core_include_graph_has_no_cycle():
    graph = include_graph()
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "include cycle: " + " -> ".join(path + [node])
        state[node] = "open"
        for nxt in graph.get(node, []):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in graph:
        visit(node, [])


def test_ring_h_includes_only_the_atomics():
    assert include_graph()["ring.h"] == ["atomics.h"]


def test_lower_layers_do_not_call_up():
    graph = include_graph()

    def reaches(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for low, high in [("region.c", "mempool.h"), ("region.h", "member.h"), ("member.c", "queue.h"),
                      ("queue.c", "mempool.h"), ("mempool.c", "pool_table.h"), ("mempool.c", "block_ring.h"),
                      ("mempool.c", "repair.h"), ("block_ring.c", "repair.h"), ("repair.c", "space.c")]:
        assert high not in reaches(low), f"{low} reaches {high}: a lower layer calls up"


def test_one_claim_loop():
    """The CAS that claims positions (on enq_pos / deq_pos) exists once: ring.h's claim."""
    counters = re.compile(r"compare_exchange_\w+\(\s*(counter|[^,]*(enq_pos|deq_pos))")
    found = [(name, m.group(0)) for name in sources(CORE) for m in counters.finditer(read(CORE, name))]
    assert [name for name, _ in found] == ["ring.h"], found


def test_setup_py_builds_every_source():
    text = read(ROOT, "setup.py")
    listed = set(re.findall(r'"(src/(?:core|ext)/[\w]+\.c)"', text))
    present = {f"src/core/{n}" for n in sources(CORE, (".c",))} | {f"src/ext/{n}" for n in sources(EXT, (".c",))}
    assert listed == present


def meaningful_lines(text):
    """Lines that carry code (not blank, not only braces or comment text)."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s in ("{", "}", "};", "});") or s.startswith(("/*", "*", "//")):
            continue
        out.append(s)
    return out


def longest_common_run(a, b):
    best = 0
    prev = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def test_object_types_share_their_base():
    files = ["mempool_type.c", "ring_type.c", "rawbuf_type.c"]
    texts = {f: meaningful_lines(read(EXT, f)) for f in files}
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            run = longest_common_run(texts[a], texts[b])
            assert run < 6, f"{a} and {b} repeat a run of {run} lines: move it into carved.c"
