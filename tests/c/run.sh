#!/usr/bin/env bash
# Build and run the C tests of src/core (every src/core/*.c with every tests/c/*.c):
#
#   1. ASan + UBSan: every test (the fork tests included);
#   2. ASan + UBSan with the kill points built in (-DPYSHM_FAULT_INJECTION, fault.h): only
#      the kill-point tests (--only-fault), where children SIGKILL themselves at each point;
#   3. ThreadSanitizer: every test but those that fork (--no-fork): TSan does not follow
#      synchronization through memory shared between processes, and the threaded stress
#      tests (one space per thread) cover the same paths in one process.
#
# Any sanitizer report is fatal (halt_on_error, and the logs are searched for reports that
# a forked child may have printed). Run from anywhere; builds go to a temp dir.
#
#   tests/c/run.sh [extra test_core arguments, e.g. -n 50000 or a test name]
#
# Needs gcc with its sanitizer runtimes (Debian 12: gcc-12 pulls in libasan8, libubsan1,
# libtsan2).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

CC="${CC:-gcc}"
CORE_SOURCES=(src/core/*.c)
TEST_SOURCES=(tests/c/*.c)
if [ ! -e "${CORE_SOURCES[0]}" ]; then
    echo "run.sh: no sources in src/core" >&2
    exit 1
fi
CFLAGS=(-std=c11 -Wall -Wextra -Werror -O1 -g -pthread -Isrc/core -Itests/c)
ASAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence (wait.h W1, the member
# seqlock). Those fences order atomics only, so TSan cannot report a false race through
# them; it just does not check the protocols they implement.
TSAN=(-Wno-tsan -fsanitize=thread)

build="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-ctest.XXXXXX")"
trap 'rm -rf "$build"' EXIT
start=$SECONDS

echo "== core sources: ${CORE_SOURCES[*]}"
echo "== build: ASan + UBSan, ASan + UBSan + kill points, TSan (in parallel)"
"$CC" "${CFLAGS[@]}" "${ASAN[@]}" "${TEST_SOURCES[@]}" "${CORE_SOURCES[@]}" -o "$build/test_asan" \
    >"$build/build_asan.log" 2>&1 &
p1=$!
"$CC" "${CFLAGS[@]}" "${ASAN[@]}" -DPYSHM_FAULT_INJECTION "${TEST_SOURCES[@]}" "${CORE_SOURCES[@]}" \
    -o "$build/test_fault" >"$build/build_fault.log" 2>&1 &
p2=$!
"$CC" "${CFLAGS[@]}" "${TSAN[@]}" "${TEST_SOURCES[@]}" "${CORE_SOURCES[@]}" -o "$build/test_tsan" \
    >"$build/build_tsan.log" 2>&1 &
p3=$!
failed=0
for p in "$p1:asan" "$p2:fault" "$p3:tsan"; do
    if ! wait "${p%%:*}"; then
        echo "== build ${p#*:} failed:"
        cat "$build/build_${p#*:}.log"
        failed=1
    fi
done
[ "$failed" -eq 0 ] || exit 1
echo "== built in $((SECONDS - start)) s"

# A report printed by a forked child reaches our log even when the child's own exit
# status is what fails the test; either way it must fail the run.
REPORTS='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|ThreadSanitizer: reported|SUMMARY: (Address|Undefined|Thread)Sanitizer'

run_stage() { # name log command...
    local name="$1" log="$2"
    shift 2
    local t0=$SECONDS rc=0
    "$@" 2>&1 | tee "$log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "== $name: FAILED (status $rc)"
        return "$rc"
    fi
    if grep -E -q "$REPORTS" "$log"; then
        echo "== $name: a sanitizer report (above) fails the run"
        return 1
    fi
    echo "== $name: passed in $((SECONDS - t0)) s"
}

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

echo "== run: ASan + UBSan"
run_stage "ASan + UBSan" "$build/asan.log" "$build/test_asan" "$@"

echo "== run: ASan + UBSan, kill points"
run_stage "kill points" "$build/fault.log" "$build/test_fault" --only-fault "$@"

echo "== run: TSan"
tsan_run() {
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" "$@" "$build/test_tsan" --no-fork "${args[@]}"
}
args=("$@")
if ! run_stage "TSan" "$build/tsan.log" tsan_run; then
    # GCC 12's TSan cannot lay out its shadow memory under the larger mmap randomization of
    # some newer kernels (vm.mmap_rnd_bits > 28); with randomization off it can.
    if grep -q "unexpected memory mapping" "$build/tsan.log" && command -v setarch >/dev/null; then
        echo "== TSan could not map its shadow memory here; again with address randomization off"
        run_stage "TSan (setarch -R)" "$build/tsan.log" tsan_run setarch "$(uname -m)" -R
    else
        exit 1
    fi
fi

echo "== C core tests passed in $((SECONDS - start)) s"
