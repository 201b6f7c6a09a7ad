#!/usr/bin/env bash
# Packaging check for pyshm. Run from anywhere: bash tests/packaging/run.sh
#
#   1. builds the sdist and a wheel (python -m build: the wheel is built from the sdist, so
#      a file missing from MANIFEST.in breaks the build) from a copy of the tree;
#   2. twine check on both;
#   3. checks that the sdist carries what it takes to build and test (C sources and
#      headers, stubs, py.typed, the C tests, the fuzzer, the schedule harness...);
#   4. installs the sdist with its [test] extra into a fresh virtual environment and runs
#      the fast tests from the unpacked sdist against the installed package (the unpacked
#      tree has a src/ layout and no compiled extension, so it cannot be imported by
#      mistake; checked below all the same);
#   5. auditwheel show on the wheel, and the manylinux tag it names.
#
# PYTHON picks the interpreter (default: python3). build, twine and auditwheel are used
# from it when it has them, else from a throwaway virtual environment. Nothing is written
# into the work tree. KEEP_PACKAGING_WORK=1 keeps the temporary directory.
set -euo pipefail

PY="${PYTHON:-python3}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-packaging.XXXXXX")"
started=$SECONDS
step="setup"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off PYTHONDONTWRITEBYTECODE=1

finish() {
    local rc=$?
    if [ "${KEEP_PACKAGING_WORK:-0}" = 1 ]; then
        echo "(work directory kept: $work)"
    else
        rm -rf "$work"
    fi
    if [ "$rc" -eq 0 ]; then
        echo "packaging: passed in $((SECONDS - started)) s"
    else
        echo "packaging: FAILED in step '$step' (exit status $rc) after $((SECONDS - started)) s" >&2
    fi
    exit "$rc"
}
trap finish EXIT

say() { echo; echo "==> $*"; }

# ---- tools -------------------------------------------------------------------------------
step="tools"
say "tools"
"$PY" --version
if "$PY" -c "import build, twine, auditwheel" 2>/dev/null; then
    TOOLS="$PY"
else
    "$PY" -m venv "$work/tools"
    "$work/tools/bin/python" -m pip install -q build twine auditwheel
    TOOLS="$work/tools/bin/python"
fi

# ---- a copy of the tree ------------------------------------------------------------------
# Tracked and untracked files, without ignored build artefacts (an in-place extension,
# build/, *.egg-info), so the packages are made as from a fresh clone.
step="copy"
mkdir -p "$work/tree"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xf - -C "$work/tree"
else
    (cd "$repo" && tar --exclude=./build --exclude=./dist --exclude='*.egg-info' \
        --exclude='*.so' --exclude=__pycache__ -cf - .) | tar -xf - -C "$work/tree"
fi

# ---- build -------------------------------------------------------------------------------
step="build"
say "python -m build (sdist, then the wheel from the sdist)"
"$TOOLS" -m build --outdir "$work/dist" "$work/tree" >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    exit 1
}
shopt -s nullglob
sdists=("$work"/dist/*.tar.gz)
wheels=("$work"/dist/*.whl)
shopt -u nullglob
if [ "${#sdists[@]}" -ne 1 ] || [ "${#wheels[@]}" -ne 1 ]; then
    echo "expected one sdist and one wheel, got: $(ls "$work/dist")" >&2
    exit 1
fi
sdist="${sdists[0]}"
wheel="${wheels[0]}"
ls -l "$work/dist"

step="twine check"
say "twine check --strict"
"$TOOLS" -m twine check --strict "$sdist" "$wheel"

# ---- the sdist's contents ----------------------------------------------------------------
step="sdist contents"
say "sdist contents"
mkdir -p "$work/unpacked"
tar -xzf "$sdist" -C "$work/unpacked"
shopt -s nullglob
tops=("$work"/unpacked/*/)
shopt -u nullglob
[ "${#tops[@]}" -eq 1 ] || { echo "the sdist should unpack into one folder" >&2; exit 1; }
unpacked="${tops[0]%/}"
missing=0
need() {
    local f
    for f in "$@"; do
        if [ ! -e "$unpacked/$f" ]; then
            echo "missing from the sdist: $f" >&2
            missing=1
        fi
    done
}
need README.rst pyproject.toml setup.py MANIFEST.in \
    src/pyshm/__init__.py src/pyshm/__init__.pyi src/pyshm/_pyshm.pyi src/pyshm/py.typed \
    src/ext/pyshm_ext.h src/core/layout.h \
    tests/conftest.py tests/c/run.sh tests/fuzz/run.sh tests/fuzz/fuzz_core.c \
    tests/sched/run.sh tests/asan/run.sh tests/faults/kill_driver.py tests/legacy/legacy_common.py \
    tests/packaging/run.sh
[ -e "$repo/LICENSE" ] && need LICENSE
# Every C source and header of the core and the binding, every test file, every stub.
while IFS= read -r f; do
    need "$f"
done < <(cd "$work/tree" && ls src/core/*.[ch] src/ext/*.[ch] src/pyshm/*.py src/pyshm/*.pyi tests/*.py tests/c/* tests/sched/*)
[ "$missing" -eq 0 ] || exit 1
if tar -tzf "$sdist" | grep -E '\.(so|o|pyc)$'; then
    echo "the sdist carries build artefacts (above)" >&2
    exit 1
fi
echo "$(tar -tzf "$sdist" | grep -vc '/$') files; every required one present, no build artefact"

# ---- install from the sdist, test from its tree ------------------------------------------
step="install"
say "fresh venv: pip install '$(basename "$sdist")[test]'"
"$PY" -m venv "$work/venv"
vpy="$work/venv/bin/python"
"$vpy" -m pip install -q "${sdist}[test]"

step="import check"
# Run from the unpacked tree, as the tests are: '' (the current folder) is on sys.path
# there, yet pyshm must come from the venv, not from the tree's src/.
installed="$(cd "$unpacked" && "$vpy" -c 'import pyshm, pyshm._pyshm as e; print(pyshm.__file__); print(e.__file__)')"
echo "$installed"
case "$installed" in
    *"$unpacked"*) echo "pyshm was imported from the unpacked tree, not the installed package" >&2; exit 1 ;;
esac
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
while IFS= read -r p; do
    case "$p" in "$site"/*) ;; *) echo "pyshm comes from $p, not from $site" >&2; exit 1 ;; esac
done <<<"$installed"

step="tests"
say "fast tests from the unpacked sdist, against the installed package"
(cd "$unpacked" && "$vpy" -m pytest -q -p no:cacheprovider \
    tests/test_api.py tests/test_mempool.py tests/test_ring.py tests/test_no_sigbus.py)

# ---- auditwheel --------------------------------------------------------------------------
step="auditwheel"
say "auditwheel show $(basename "$wheel")"
"$TOOLS" -m auditwheel show "$wheel" | tee "$work/auditwheel.txt"
tag="$(tr '\n' ' ' <"$work/auditwheel.txt" | grep -oE 'platform tag: *"[^"]+"' | head -n 1 | sed -E 's/.*"([^"]+)"/\1/')"
[ -n "$tag" ] || { echo "auditwheel named no platform tag" >&2; exit 1; }
echo
echo "manylinux tag: $tag"
if command -v objdump >/dev/null; then
    "$TOOLS" - "$wheel" "$work/so" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.endswith(".so"):
            z.extract(n, sys.argv[2])
EOF
    glibc="$(find "$work/so" -name '*.so' -exec objdump -T {} + |
        grep -oE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?' | sort -uV | tail -n 1 || true)"
    [ -z "$glibc" ] || echo "newest glibc symbol version the extension needs: $glibc"
fi
