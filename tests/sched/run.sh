#!/usr/bin/env bash
# Build the deterministic-schedule harness against a core and an adapter, and explore.
#
#   tests/sched/run.sh [--core DIR] [--adapter FILE] [--seconds N] [--bin PATH] [--build-only]
#                      [-- sched_test arguments...]
#
#   --core DIR       the core's sources (default: src/core of this work tree)
#   --adapter FILE   sim.h adapter for that core (default: tests/sched/adapter_v3.c, this core). Its line
#                    "SIM_CORE_SOURCES: a.c b.c ..." names the core files to build; without
#                    one, every *.c of DIR is built.
#   --seconds N      exploration time budget, split over the scenarios (default 60)
#   --bin PATH       where to put the binary (default: a temp dir, removed afterwards)
#   --build-only     build, do not run
#   after --         passed to sched_test (e.g. --scenario NAME, --strategy pct, --seed 7,
#                    --replay NAME@TRACE --log, --list)
#
# Exit status: that of sched_test: 0 no violation, 1 a violation, 2 a usage or set-up
# error; 3 when the build fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
core="$repo/src/core"
adapter="$here/adapter_v3.c"
seconds=60
bin=""
build_only=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --core) core="$2"; shift 2 ;;
        --adapter) adapter="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        --) shift; extra=("$@"); break ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
core="$(cd "$core" && pwd)"
adapter="$(cd "$(dirname "$adapter")" && pwd)/$(basename "$adapter")"

CC="${CC:-gcc}"
CFLAGS=(-std=c11 -O1 -g -Wall -Wextra -Werror)
# The core is never built with fault injection: kills come from the scheduler.
case " ${CFLAGS[*]} ${EXTRA_CFLAGS:-} " in *PYSHM_FAULT_INJECTION*) echo "run.sh: no fault injection here" >&2; exit 2 ;; esac

sources_line="$(grep -m1 -o 'SIM_CORE_SOURCES:.*' "$adapter" || true)"
core_sources=()
if [ -n "$sources_line" ]; then
    for f in ${sources_line#SIM_CORE_SOURCES:}; do core_sources+=("$core/$f"); done
else
    core_sources=("$core"/*.c)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-sched.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
[ -n "$bin" ] || bin="$tmp/sched_test"

objs=()
build() {
    # core and adapter: every atomic goes through hooks.h. -iquote, not -I: this directory's
    # sched.h must not hide the system's <sched.h>.
    for src in "${core_sources[@]}" "$adapter"; do
        obj="$tmp/$(basename "${src%.c}").core.o"
        "$CC" "${CFLAGS[@]}" -include "$here/hooks.h" -I"$core" -iquote "$here" -c "$src" -o "$obj" || return 1
        objs+=("$obj")
    done
    # the harness itself: no hooks
    for src in "$here/sched.c" "$here/scenarios.c" "$here/main.c"; do
        obj="$tmp/$(basename "${src%.c}").o"
        "$CC" "${CFLAGS[@]}" -iquote "$here" -c "$src" -o "$obj" || return 1
        objs+=("$obj")
    done
    # --wrap: allocations of actors that are killed mid-call are freed between schedules
    "$CC" "${objs[@]}" -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free -o "$bin" || return 1
}
if ! build; then
    echo "run.sh: build failed (is $(basename "$adapter") the adapter for the core in $core? adapter_v2.c is" \
         "for the core of f8f5ca3: git -C REPO archive f8f5ca3 src/core | tar -x -C DIR; --core DIR/src/core)" >&2
    exit 3
fi
echo "built $bin (core $core, adapter $(basename "$adapter"))"
[ "$build_only" = 1 ] && exit 0

set +e
"$bin" --seconds "$seconds" "${extra[@]}"
status=$?
set -e
exit $status
