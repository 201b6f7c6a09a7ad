"""Random-kill soak (tests/soak/kill_soak.py): producers, consumers and a supervisor
SIGKILLed at random instants, replaced, and everything they passed accounted for.

The driver runs in a subprocess for PYSHM_SOAK_SECONDS (default 20) and prints one JSON
summary; every count that must be zero is asserted here, with the driver's report of
each failure (and the command that replays the failing round) in the assertion message.
The liveness check inside the driver ("deliveries continued after each kill") is bounded
by the round, not a timing claim; nothing here asserts a duration.

A second, short run plants faults in the workers on purpose (a consumer that forgets to
log a delivery, logs one twice or out of order, a producer that corrupts a stamp,
consumers that stop, one that never exits) to show that each check can fail.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, "tests", "soak", "kill_soak.py")
SECONDS = float(os.environ.get("PYSHM_SOAK_SECONDS", "20"))
SEED = int(os.environ.get("PYSHM_SOAK_SEED", "20261202"))

MUST_BE_ZERO = ("lost", "duplicated", "corrupt", "phantom", "fifo_violations", "hangs", "stuck_rounds",
                "blocks_lost", "bad_exits", "errors")


def run_driver(*args, timeout):
    proc = subprocess.run([sys.executable, DRIVER, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"driver printed no summary (status {proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc, json.loads(lines[-1])


def test_random_kill_soak():
    # Generous subprocess limit: the budget, plus the hang guard of a round, plus slack.
    proc, s = run_driver("--seconds", str(SECONDS), "--seed", str(SEED), timeout=SECONDS + 300)
    print(f"\nsoak: {json.dumps(s)}")
    report = f"summary: {json.dumps(s, indent=1)}\ndriver stderr:\n{proc.stderr[-6000:]}"
    for key in MUST_BE_ZERO:
        assert s[key] == 0, f"{key} = {s[key]}\n{report}"
    assert s["failing_rounds"] == [], report
    assert proc.returncode == 0, report
    assert s["rounds"] >= 1
    # The run did what it is for: workers were killed, and messages flowed.
    assert s["kills"]["total"] > 0, report
    assert s["delivered"] > 0, report
    assert s["sent"] > 0, report


def test_soak_checks_catch_planted_faults():
    faults = "lose,dup,reorder,corrupt,stuck,hang"
    proc, s = run_driver("--round-seed", "5", "--min-round", "5", "--max-round", "5", "--inject", faults,
                         "--hang-guard", "2", timeout=300)
    report = json.dumps(s, indent=1)
    assert proc.returncode == 1, report
    assert s["lost"] > 0, report
    assert s["duplicated"] > 0, report
    assert s["fifo_violations"] > 0, report
    assert s["corrupt"] > 0, report
    assert s["stuck_rounds"] == 1, report
    assert s["hangs"] == 1, report
    assert s["failing_rounds"][0]["reproduce"].endswith("--round-seed 5")
