#!/usr/bin/env bash
# Show that the harness finds the crash-repair defects of the core at commit f8f5ca3.
#
#   tests/sched/check_old.sh [--seconds-per-scenario N]      (default 20)
#
# Extracts src/core of f8f5ca3 (git archive) into a temp dir, builds the harness against it
# with adapter_v2.c (no fault injection: kills come from the scheduler), runs every defect
# scenario (sched_test --defects: d1.. d7 and their variants), replays each schedule found
# to check that it reproduces, and prints which scenario and schedule found each defect
# after how many schedules. Exit status 0 only if every defect scenario reported a
# violation of the kind it expects and each replay reproduced it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
commit=f8f5ca3
per=20
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds-per-scenario) per="$2"; shift 2 ;;
        *) echo "check_old.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-sched-old.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
git -C "$repo" archive "$commit" src/core | tar -x -C "$tmp"
bin="$tmp/sched_test"
"$here/run.sh" --core "$tmp/src/core" --adapter "$here/adapter_v2.c" --bin "$bin" --build-only

scenarios=$("$bin" --list | awk '$2 != "-" {print $1}')
count=$(echo "$scenarios" | wc -l)
echo "== $count defect scenarios, up to ${per} s each"
log="$tmp/run.log"
set +e
"$bin" --defects --expect --seconds $((per * count)) >"$log" 2>&1
status=$?
set -e
grep -v '^RESULT' "$log"

printf '\n%-8s %-34s %-8s %-16s %10s %8s  %s\n' defect scenario found violation schedules seconds replay
fail=0
for sc in $scenarios; do
    defect=$("$bin" --list | awk -v s="$sc" '$1 == s {print $2}')
    line=$(grep "^RESULT name=$sc " "$log" || true)
    get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    if [ -z "$line" ]; then
        printf '%-8s %-34s %-8s\n' "$defect" "$sc" "NO RUN"
        fail=1
        continue
    fi
    found=$(get status)
    code=$(get code)
    expected=$(get expected)
    schedule=$(get schedule)
    replayed="-"
    if [ "$found" = found ]; then
        rcode=$( { "$bin" --replay "$schedule" || true; } | sed -n 's/^RESULT .*code=\([^ ]*\).*/\1/p')
        if [ "$rcode" = "$code" ]; then replayed=ok; else replayed="FAILED($rcode)"; fail=1; fi
        [ "$expected" = yes ] || fail=1
    else
        fail=1
    fi
    printf '%-8s %-34s %-8s %-16s %10s %8s  %s\n' "$defect" "$sc" \
        "$([ "$found" = found ] && [ "$expected" = yes ] && echo yes || echo NO)" "${code:--}" \
        "$(get schedules)" "$(get seconds)" "$replayed"
    [ "$found" = found ] && echo "         schedule: $schedule"
done
if [ "$status" -ne 0 ] || [ "$fail" -ne 0 ]; then
    echo "check_old.sh: FAILED: some defect was not found (or did not replay)"
    exit 1
fi
echo "check_old.sh: every defect scenario found its defect, and every schedule replays"
