#!/usr/bin/env bash
# Fuzz the C core (every src/core/*.c) with libFuzzer under AddressSanitizer + UBSan, for a
# bounded time. The harness is tests/fuzz/fuzz_core.c; the seed corpus tests/fuzz/corpus/
# (made by tests/fuzz/make_corpus.py, and checked to be what it makes) is copied to a temp
# dir first, so the repo is never written. Every seed is also replayed on its own first, with
# no time budget, so that a seed the harness rejects fails the run at once.
#
#   tests/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]     (default 60 s)
#
# Needs clang with libFuzzer. On Debian 12 that is the `clang` package (clang 14), which
# pulls in libclang-rt-14-dev with libclang_rt.fuzzer; if clang is missing and we are
# root with apt-get, it is installed (about 10 s on a warm mirror). CLANG=... picks one.
# A crash, sanitizer report, leak or timeout fails the run; the input that caused it is
# kept in $FUZZ_ARTIFACTS (default /tmp/pyshm-fuzz-artifacts) and printed as a reproducer:
#   <build>/fuzz_core <artifact>       (FUZZ_TRACE=1 FUZZ_BUDGET_MS=0 for a full trace)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

seconds="${1:-60}"
[ "$#" -gt 0 ] && shift
case "$seconds" in
'' | *[!0-9]*) echo "run.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

# --- clang with libFuzzer ------------------------------------------------------------------
find_clang() {
    if [ -n "${CLANG:-}" ]; then
        command -v "$CLANG"
        return
    fi
    local c
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return
        fi
    done
    return 1
}
if [ -n "${CLANG:-}" ] && ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "run.sh: CLANG=$CLANG not found" >&2
    exit 1
fi
if ! cc="$(find_clang)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== clang not found: apt-get install -y clang"
        t0=$SECONDS
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
        echo "== installed clang in $((SECONDS - t0)) s"
        cc="$(find_clang)"
    else
        echo "run.sh: clang is needed (Debian: apt-get install clang)" >&2
        exit 1
    fi
fi
echo "== $("$cc" --version | head -n 1) ($cc)"

work="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# libFuzzer ships in a separate package on Debian (libclang-rt-N-dev); `clang` depends on
# it, a bare clang-N may not.
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$work/probe.c"
if ! "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" 2>/dev/null; then
    major="$("$cc" -dumpversion | cut -d. -f1)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== libFuzzer missing: apt-get install -y libclang-rt-$major-dev"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "libclang-rt-$major-dev" >/dev/null
    fi
    "$cc" -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" || {
        echo "run.sh: $cc cannot link -fsanitize=fuzzer (Debian: libclang-rt-$major-dev)" >&2
        exit 1
    }
fi

# --- the corpus must be what make_corpus.py makes ------------------------------------------
python3 tests/fuzz/make_corpus.py "$work/fresh-corpus" >/dev/null
if ! diff -r tests/fuzz/corpus "$work/fresh-corpus" >/dev/null; then
    echo "run.sh: tests/fuzz/corpus is not what tests/fuzz/make_corpus.py makes: run it and commit" >&2
    exit 1
fi

# --- build -------------------------------------------------------------------------------
# The core sources: every src/core/*.c, as tests/c/run.sh builds them.
CORE_SOURCES=(src/core/*.c)
if [ ! -e "${CORE_SOURCES[0]}" ]; then
    echo "run.sh: no sources in src/core" >&2
    exit 1
fi
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
COMMON=(-std=c11 -g -O1 -Isrc/core "${SAN[@]}")
echo "== build: ${CORE_SOURCES[*]} tests/fuzz/fuzz_core.c"
objs=()
for src in "${CORE_SOURCES[@]}"; do
    obj="$work/$(basename "$src" .c).o"
    # The core is another engineer's: warnings there are the compile-check step's business.
    "$cc" "${COMMON[@]}" -fsanitize=fuzzer-no-link -Wall -Wextra -c "$src" -o "$obj"
    objs+=("$obj")
done
"$cc" "${COMMON[@]}" -fsanitize=fuzzer -Wall -Wextra -Werror tests/fuzz/fuzz_core.c "${objs[@]}" -o "$work/fuzz_core"

# --- the seeds, each on its own, then fuzz ------------------------------------------------
mkdir -p "$work/corpus" "$work/artifacts"
cp tests/fuzz/corpus/* "$work/corpus/"
t0=$SECONDS
if ! FUZZ_BUDGET_MS=0 ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}" \
    "$work/fuzz_core" -runs=0 "$work/corpus" >"$work/seeds.log" 2>&1; then
    echo "== a seed fails:"
    grep -n -E 'ERROR|SUMMARY|invariant violated|runtime error' "$work/seeds.log" | head -n 20
    exit 1
fi
echo "== $(find "$work/corpus" -type f | wc -l) seeds replayed in $((SECONDS - t0)) s"
echo "== fuzz for $seconds s: $(find "$work/corpus" -type f | wc -l) seeds"
log="$work/fuzz.log"
rc=0
ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1}" \
UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}" \
    "$work/fuzz_core" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" >"$log" 2>&1 || rc=$?

# libFuzzer's progress lines are many; show the start, the end and any report.
grep -E '^(INFO: Seed|INFO: Loaded|INFO: -max_len)|INITED' "$log" || true
grep -E '^#[0-9]+' "$log" | tail -n 3 || true
grep -E '^(Done|stat::)' "$log" || true
execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
crashes="$(find "$work/artifacts" -type f | wc -l)"

if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    keep="${FUZZ_ARTIFACTS:-/tmp/pyshm-fuzz-artifacts}"
    mkdir -p "$keep"
    echo
    echo "== libFuzzer exited with status $rc; its report:"
    grep -n -E 'ERROR|SUMMARY|invariant violated|runtime error|Test unit written|==[0-9]+==' "$log" | head -n 40 || true
    sed -n '/==[0-9]*==ERROR\|invariant violated\|runtime error/,$p' "$log" | head -n 80
    cp "$log" "$keep/fuzz.log"
    cp "$work/fuzz_core" "$keep/fuzz_core"
    if [ "$crashes" -ne 0 ]; then
        cp "$work/artifacts/"* "$keep/"
    fi
    echo "== kept in $keep: the log, the fuzzer binary and $crashes input(s); replay one with"
    echo "   FUZZ_TRACE=1 FUZZ_BUDGET_MS=0 $keep/fuzz_core $keep/<input>"
    echo "fuzz: ${execs:-?} executions, $((crashes > 0 ? crashes : 1)) crashes"
    exit 1
fi
echo "fuzz: ${execs:-?} executions, 0 crashes"
