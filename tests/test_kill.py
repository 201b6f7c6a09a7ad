"""A process SIGKILLed at every kill point inside get, put, enqueue, dequeue, the bulk
calls and pyshm.Queue's put and get, with two producers and two consumers running
(tests/faults/kill_driver.py).

The extension is built a second time for this test, with PYSHM_FAULT_INJECTION (the kill
points of src/core/fault.h compiled in), into a temporary directory; the driver runs in
a subprocess that imports that build. What every kill must leave (asserted):
- the victim died by SIGKILL at its point (when it reached it), each survivor exited 0;
- no survivor outlived its deadline by more than the driver's hang guard;
- no message was delivered twice and none arrived corrupted;
- after the parent's reclaim() and a drain of the ring, every block is free: none was
  lost in a slot the victim claimed or in its hands (src/core/repair.h);
- in every round where the victim died well before the survivors' deadline, messages
  were delivered after its death: waiting survivors found the stuck slot and repaired
  it themselves.
Set PYSHM_KILL_ROUNDS for a longer run (default 2 rounds per point and workload).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, "tests", "faults", "kill_driver.py")
ROUNDS = int(os.environ.get("PYSHM_KILL_ROUNDS", "2"))

POINTS = [
    "queue.enq.claimed",
    "queue.enq.staged",
    "queue.enq.published",
    "queue.deq.claimed",
    "queue.deq.released",
    "block.take.holder",
    "block.take.done",
    "block.give.done",
    "*",  # the N-th kill point of any kind, N random
]


@pytest.fixture(scope="module")
def fault_build(tmp_path_factory):
    """A pyshm package whose extension has the kill points compiled in."""
    setup_py = os.path.join(REPO, "setup.py")
    if not os.path.exists(setup_py):
        pytest.skip("needs the source tree (setup.py and src/)")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"needs the C compiler {cc}")
    with open(setup_py) as f:
        sources = re.findall(r'"(src/[\w/]+\.c)"', f.read())
    root = tmp_path_factory.mktemp("fault-build")
    package = root / "pyshm"
    package.mkdir()
    for name in os.listdir(os.path.join(REPO, "src", "pyshm")):
        if name.endswith(".py"):
            shutil.copy(os.path.join(REPO, "src", "pyshm", name), package / name)
    out = package / ("_pyshm" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [cc, "-shared", "-fPIC", "-std=c11", "-O1", "-DPYSHM_FAULT_INJECTION=1",
           "-I" + sysconfig.get_paths()["include"], "-Isrc/core", "-Isrc/ext", *sources, "-o", str(out)]
    subprocess.run(cmd, cwd=REPO, check=True)
    return str(root)


def run_driver(build, point, workload, seed):
    env = dict(os.environ, PYTHONPATH=build)
    env.pop("PYSHM_FAULT", None)
    proc = subprocess.run([sys.executable, DRIVER, point, workload, str(ROUNDS), str(seed)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=build)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fault_build_imports_the_instrumented_extension(fault_build):
    code = "import pyshm._pyshm as m; print(m.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=fault_build),
                         capture_output=True, text=True, check=True, cwd=fault_build).stdout
    assert out.strip().startswith(fault_build)


@pytest.mark.parametrize("workload", ["single", "bulk", "queue"])
@pytest.mark.parametrize("point", POINTS)
def test_kill_at_point(fault_build, point, workload):
    seed = POINTS.index(point) * 3 + ["single", "bulk", "queue"].index(workload)
    s = run_driver(fault_build, point, workload, seed)
    print(f"\nkill {point} ({workload}): {json.dumps(s)}")
    assert s["errors"] == []
    assert s["hung"] == 0
    assert s["bad_exit"] == 0
    assert s["duplicates"] == 0
    assert s["delivered"] > 0
    # Every point is on the path of the workload, so the victim reaches it.
    assert s["killed"] == ROUNDS
    # After reclaim(), every block is free again: none lost with the victim.
    assert s["stranded"] == 0
    # Waiting survivors repaired what the victim left: messages kept flowing after it died.
    assert s["flowed"] == s["flow_rounds"]
