#!/usr/bin/env bash
# The Python test suite against the extension built with AddressSanitizer + UBSan.
#
#   tests/asan/run.sh [pytest arguments...]          (default: the whole suite, see below)
#
# Builds pyshm with gcc and -fsanitize=address,undefined into a fresh virtual environment,
# in a copy of the tree (the work tree must stay untouched), then runs `python -m pytest tests` from that copy with
# the ASan runtime preloaded (CPython itself is not instrumented, so libasan must come
# first in the process). Forked and spawned children inherit the preload.
#
# Every process writes its sanitizer reports to a log file of its own (log_path), so a
# report from a child whose exit status nobody checks still fails the run. Leak detection
# is off: CPython leaks by design at exit.
#
# PYTHON=... picks the interpreter (default python3). KEEP_ASAN_WORK=1 keeps the temp dir.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-python3}"
started=$SECONDS

work="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-asan.XXXXXX")"
cleanup() {
    if [ "${KEEP_ASAN_WORK:-0}" = 1 ]; then
        echo "(work directory kept: $work)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
tree="$work/tree"
mkdir -p "$tree"

# --- a copy of the tree (tracked and untracked files, no ignored build artefacts) --------
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (
        cd "$repo"
        git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -
    ) | tar -xf - -C "$tree"
else
    tar -C "$repo" --exclude=.git --exclude=build --exclude=dist --exclude='*.egg-info' --exclude='*.so' \
        --exclude=__pycache__ -cf - . | tar -xf - -C "$tree"
fi

# --- the sanitizer runtime ---------------------------------------------------------------
CC="${CC:-gcc}"
libasan="$("$CC" -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "run.sh: $CC has no libasan.so (Debian: gcc pulls in libasan8)" >&2
    exit 1
fi
echo "== $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])'), $("$CC" --version | head -n 1)"
echo "== ASan runtime: $libasan"

# --- build into a fresh venv -------------------------------------------------------------
venv="$work/venv"
"$py" -m venv "$venv"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off PYTHONDONTWRITEBYTECODE=1
hash -r
sanitize="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
echo "== pip install '.[test]' with CC=$CC CFLAGS=\"-g $sanitize\""
build_started=$SECONDS
(
    cd "$tree"
    # --no-cache-dir: never a wheel built earlier without the sanitizers.
    CC="$CC" CFLAGS="-g $sanitize" LDFLAGS="$sanitize" \
        pip install --quiet --no-cache-dir '.[test]'
)
echo "== built and installed in $((SECONDS - build_started)) s"

# The installed extension (src/ is not on the path, so the tests import this one) must be
# the instrumented build, and so must any copy in the tree.
sos=()
while IFS= read -r f; do sos+=("$f"); done < <(find "$tree/src" "$venv/lib" -name '_pyshm*.so' -path '*pyshm/*')
if [ "${#sos[@]}" -eq 0 ]; then
    echo "run.sh: no built extension found" >&2
    exit 1
fi
for so in "${sos[@]}"; do
    symbols="$(nm -D "$so")" # (not piped into grep -q: pipefail would see nm's SIGPIPE)
    asan_hooks="$(grep -c '__asan_report' <<<"$symbols" || true)"
    ubsan_hooks="$(grep -c '__ubsan_handle' <<<"$symbols" || true)"
    if [ "$asan_hooks" -eq 0 ] || [ "$ubsan_hooks" -eq 0 ]; then
        echo "run.sh: $so is not built with ASan and UBSan" >&2
        exit 1
    fi
    echo "== extension: ${so#"$work"/} ($asan_hooks ASan report hooks, $ubsan_hooks UBSan handlers)"
done

# --- the suite -----------------------------------------------------------------------------
# tests/test_resources.py asserts that thousands of cycles grow the resident set by less
# than a few MiB. Under ASan freed memory waits in a quarantine (256 MiB) before reuse,
# so the resident set grows by design: that file runs on its own with the quarantine off
# (its fd and mapping checks, and every other ASan check, still apply). Everything else
# runs with the quarantine, for the best use-after-free detection.
logs="$work/sanitizer-logs"
mkdir -p "$logs"
asan_options="detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$logs/asan:log_exe_name=1"
ubsan_options="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan:log_exe_name=1"
run_pytest() { # extra ASAN_OPTIONS, then pytest arguments
    local extra="$1"
    shift
    echo "== LD_PRELOAD=$libasan ASAN_OPTIONS=...${extra:+:$extra} python -m pytest $*"
    (
        cd "$tree"
        LD_PRELOAD="$libasan" ASAN_OPTIONS="$asan_options${extra:+:$extra}" UBSAN_OPTIONS="$ubsan_options" \
            python -m pytest -p no:cacheprovider "$@"
    )
}
test_started=$SECONDS
rc=0
if [ "$#" -gt 0 ]; then
    run_pytest "" "$@" || rc=$?
elif [ -f "$tree/tests/test_resources.py" ]; then
    run_pytest "" tests --ignore=tests/test_resources.py || rc=$?
    rc2=0
    run_pytest "quarantine_size_mb=0" tests/test_resources.py || rc2=$?
    [ "$rc" -eq 0 ] && rc=$rc2
else
    run_pytest "" tests || rc=$?
fi
echo "== pytest exited with status $rc after $((SECONDS - test_started)) s"

reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
    echo
    echo "== SANITIZER REPORTS (${#reports[@]} file(s)):"
    for f in "${reports[@]}"; do
        echo "--- $f"
        cat "$f"
    done
    mkdir -p "${ASAN_REPORTS:-/tmp/pyshm-asan-reports}"
    cp "${reports[@]}" "${ASAN_REPORTS:-/tmp/pyshm-asan-reports}/"
    echo "== copied to ${ASAN_REPORTS:-/tmp/pyshm-asan-reports}"
    [ "$rc" -eq 0 ] && rc=1
fi
case "$rc" in
0) echo "== ASan/UBSan test suite passed in $((SECONDS - started)) s, no sanitizer report" ;;
5) echo "pytest collected no tests: that is a failure here"; exit 5 ;;
*) echo "== ASan/UBSan test suite FAILED (status $rc) after $((SECONDS - started)) s"; exit "$rc" ;;
esac
