#!/usr/bin/env bash
# Type-check what users of pyshm write against the stubs in src/pyshm/*.pyi:
#
#   1. tests/typing/user_program.py (every public call of pyshm), which is also run;
#   2. every Python example of README.rst and of the documentation's pages (docs/**/*.rst
#      with a python code-block), extracted by extract_examples.py (see its docstring for
#      the '.. mypy: skip' / 'check' / 'continue' markers).
#
# with `mypy --strict --python-version V` for V in 3.11 3.12 3.13. The stubs are taken
# from this tree (MYPYPATH=src), whatever copy of pyshm is installed, and are checked
# strictly too. Run from anywhere, in the environment to test:
#
#   bash tests/typing/run.sh
#
# mypy (the version CI pins) and numpy are installed into that environment with pip
# if missing. Variables: PYTHON (default: python, else python3), README (default: the
# tree's README.rst), PYTHON_VERSIONS (default: "3.11 3.12 3.13"). Exit status 0 only
# if every check passes.
set -euo pipefail

MYPY_VERSION=2.4.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
readme="${README:-$repo/README.rst}"
versions="${PYTHON_VERSIONS:-3.11 3.12 3.13}"
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$(command -v python || command -v python3 || true)"
fi
if [ -z "$PYTHON" ]; then
    echo "run.sh: no python found (set PYTHON)" >&2
    exit 1
fi

if ! "$PYTHON" - "$MYPY_VERSION" <<'EOF' 2>/dev/null; then
import sys
import mypy.version
import numpy  # noqa: F401  (the examples and user_program.py use numpy's own stubs)
sys.exit(mypy.version.__version__ != sys.argv[1])
EOF
    echo "=== installing mypy==$MYPY_VERSION and numpy into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    "$PYTHON" -m pip install --quiet "mypy==$MYPY_VERSION" numpy
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/pyshm-typing.XXXXXX")"
trap 'rm -rf "$work"' EXIT

failed=0

# The README, then every page of the documentation that has Python examples.
sources=("$readme")
while IFS= read -r page; do
    sources+=("$page")
done < <(cd "$repo" && grep -rlE '^\s*\.\. code-block:: *python' docs --include='*.rst' 2>/dev/null | sort | sed "s#^#$repo/#")
examples="$work/examples"
mkdir -p "$examples"
declare -A source_of=()
for src in "${sources[@]}"; do
    rel="${src#"$repo"/}"
    prefix="$(printf '%s' "$rel" | sed -E 's/\.rst$//; s/[^A-Za-z0-9]+/_/g' | tr 'A-Z' 'a-z')"
    echo "=== extract the Python examples of $rel"
    if ! "$PYTHON" "$here/extract_examples.py" --prefix "$prefix" "$src" "$examples"; then
        echo "--- FAILED: extracting the examples of $rel"
        failed=1
    fi
    source_of[$prefix]="$rel"
done
shopt -s nullglob
example_files=("$examples"/*.py)
shopt -u nullglob

for version in $versions; do
    echo "=== mypy --strict --python-version $version"
    # Errors in the examples are reported at their lines in the source file (the
    # extracted files keep the source's line numbers).
    if (
        cd "$repo"
        MYPYPATH="$repo/src" "$PYTHON" -m mypy --strict --python-version "$version" \
            --cache-dir "$work/mypy-cache" --no-error-summary \
            tests/typing/user_program.py "${example_files[@]}"
    ) >"$work/mypy.out" 2>&1; then
        echo "--- ok: user_program.py and ${#example_files[@]} example(s) of ${#sources[@]} file(s)"
    else
        out="$(cat "$work/mypy.out")"
        for prefix in "${!source_of[@]}"; do
            out="$(printf '%s\n' "$out" | sed -E "s#^$examples/${prefix}_[0-9]+\.py:#${source_of[$prefix]}:#")"
        done
        printf '%s\n' "$out"
        echo "--- FAILED: mypy --strict --python-version $version"
        failed=1
    fi
done

echo "=== python tests/typing/user_program.py"
if (cd "$work" && "$PYTHON" -X dev "$here/user_program.py"); then
    echo "--- ok"
else
    echo "--- FAILED: user_program.py"
    failed=1
fi

if [ "$failed" -ne 0 ]; then
    echo "typing checks FAILED"
    exit 1
fi
echo "typing checks passed"
