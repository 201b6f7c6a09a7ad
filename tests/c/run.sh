#!/usr/bin/env bash
# Build and run the C tests of src/core, twice: under AddressSanitizer + UBSan, then under
# ThreadSanitizer. Any sanitizer report is fatal. Run from anywhere; builds go to a temp dir.
#
#   tests/c/run.sh [extra test_core arguments, e.g. -n 50000 or a test name]
#
# Needs gcc with its sanitizer runtimes (Debian 12: gcc-12 pulls in libasan8, libubsan1,
# libtsan2). The TSan run skips the fork() tests (--no-fork): ThreadSanitizer does not
# follow synchronization through memory shared between processes, and the threaded
# stress tests cover the same code paths in one process.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

CC="${CC:-gcc}"
# The core sources: the CORE list of setup.py, so the two cannot drift apart.
mapfile -t CORE_SOURCES < <(awk '/^CORE = \[/{on=1; next} on && /^\]/{exit} on' setup.py | grep -o 'src/core/[A-Za-z0-9_]*\.c')
if [ "${#CORE_SOURCES[@]}" -eq 0 ]; then
    echo "run.sh: found no CORE sources in setup.py" >&2
    exit 1
fi
TEST_SOURCES=(tests/c/*.c)
CFLAGS=(-std=c11 -Wall -Wextra -Werror -O1 -g -pthread -Isrc/core -Itests/c)

build="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-ctest.XXXXXX")"
trap 'rm -rf "$build"' EXIT

start=$SECONDS

echo "== core sources: ${CORE_SOURCES[*]}"
echo "== build: ASan + UBSan"
"$CC" "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    "${TEST_SOURCES[@]}" "${CORE_SOURCES[@]}" -o "$build/test_core_asan"
echo "== build: TSan"
# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence (wait.h, W1). That
# fence orders only the waitpoint's own atomics, no plain data, so TSan cannot report a
# false race through it; it just does not check W1 (the futex wake-up protocol).
"$CC" "${CFLAGS[@]}" -Wno-tsan -fsanitize=thread \
    "${TEST_SOURCES[@]}" "${CORE_SOURCES[@]}" -o "$build/test_core_tsan"

echo "== run: ASan + UBSan"
ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$build/test_core_asan" "$@"

echo "== run: TSan"
tsan_log="$build/tsan.log"
tsan_run() {
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" "$@" "$build/test_core_tsan" --no-fork "${args[@]}"
}
args=("$@")
if ! tsan_run 2>&1 | tee "$tsan_log"; then
    # GCC 12's TSan cannot lay out its shadow memory under the larger mmap randomization of
    # some newer kernels (vm.mmap_rnd_bits > 28); with randomization off it can.
    if grep -q "unexpected memory mapping" "$tsan_log" && command -v setarch >/dev/null; then
        echo "== TSan could not map its shadow memory here; again with address randomization off"
        tsan_run setarch "$(uname -m)" -R
    else
        exit 1
    fi
fi

echo "== C core tests passed in $((SECONDS - start)) s"
