#!/usr/bin/env bash
# Build the documentation with warnings as errors, then run every Python example in it.
#
#   bash docs/build.sh [OUTPUT_DIR]
#
# Uses the current Python environment, where pyshm must be installed (pip install -e .);
# installs docs/requirements.txt into it if Sphinx, furo or myst-parser is missing or at
# another version. The HTML goes to OUTPUT_DIR, or to a temporary directory that is
# removed at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python}"

if ! "$python" -c 'import pyshm' 2>/dev/null; then
    echo "docs/build.sh: pyshm is not importable; run: pip install -e ." >&2
    exit 1
fi

if ! "$python" - "$here/requirements.txt" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        have = version(name.strip())
    except PackageNotFoundError:
        have = None
    if have != want.strip():
        ok = False
sys.exit(0 if ok else 1)
PY
then
    echo "docs/build.sh: installing docs/requirements.txt"
    "$python" -m pip install -q -r "$here/requirements.txt"
fi

if [ $# -ge 1 ]; then
    out="$1"
    mkdir -p "$out"
else
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi

echo "docs/build.sh: sphinx -W --keep-going -b html docs $out"
"$python" -m sphinx -W --keep-going -q -b html "$here" "$out"
echo "docs/build.sh: HTML built with no warnings"

echo "docs/build.sh: running the examples of the docs"
cd "$root"
"$python" -m pytest -q -p no:cacheprovider tests/test_docs_examples.py
