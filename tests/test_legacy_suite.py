"""Run tests/legacy (a suite written the way the old library's own tests were) in a
subprocess and check what every process of that run reports.

In that suite, fork children do not exit: each one falls through and runs the rest of the
pytest session, cleanups included, and prints its own summary line. The processes are:

  parent                       runs everything
  child of the mempool test    runs from that test on (and forks in the ring test)
  its child in the ring test   runs from the ring test on
  child of the parent's ring test

so four summary lines, each counting all 4 tests of the suite (the reports made before a
fork are inherited by the child), and each must say "4 passed" and nothing else.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEGACY_TESTS = 4
PROCESSES = 4
SUMMARY = re.compile(r"^=+ (?P<body>.*?) in [0-9.]+s(?: \([^)]*\))? =+$", re.MULTILINE)


def run_legacy_suite():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/legacy"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,  # hang guard only
    )


def test_legacy_suite_passes_in_every_process():
    proc = run_legacy_suite()
    out = proc.stdout
    assert proc.returncode == 0, f"legacy suite exited with {proc.returncode}:\n{out}"
    bodies = [m.group("body") for m in SUMMARY.finditer(out)]
    assert len(bodies) == PROCESSES, f"expected {PROCESSES} summary lines (one per process), got {bodies}:\n{out}"
    for body in bodies:
        assert not re.search(r"\b(failed|error|errors|xfailed|xpassed|skipped|deselected)\b", body), (
            f"a process of the legacy suite reported {body!r}:\n{out}"
        )
        assert body == f"{LEGACY_TESTS} passed", f"unexpected summary {body!r}:\n{out}"
    assert "Traceback" not in out, out
    assert "FAILED" not in out and "ERROR" not in out, out


def test_legacy_suite_is_not_collected_by_the_main_run():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "tests"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout
    assert "tests/test_legacy_suite.py::" in proc.stdout
    assert "tests/legacy/" not in proc.stdout, proc.stdout
