"""Every ``.. code-block:: python`` example of the documentation (docs/**/*.rst), run as
a script of its own.

Each example is written to a file in a fresh directory and run there with this
interpreter, so examples that use the ``spawn`` start method (which re-imports the main
script) work as they would for a reader. An example passes if it exits with status 0
and writes nothing to stderr (warnings, such as a ResourceWarning for a block that was
never given back, fail it).
"""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block:: python3?\s*$")


def doc_examples() -> list[tuple[str, int, str]]:
    """(file, line, code) for every Python code block of the docs' reST files."""
    found = []
    for path in sorted(DOCS.rglob("*.rst")):
        if "_build" in path.parts or "_generated" in path.parts:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = _DIRECTIVE.match(lines[i])
            if not m:
                i += 1
                continue
            indent = len(m.group("indent"))
            j = i + 1
            # directive options (":caption: ...") come first
            while j < len(lines) and lines[j].strip().startswith(":") and lines[j].strip():
                j += 1
            body = []
            while j < len(lines):
                line = lines[j]
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                body.append(line)
                j += 1
            code = textwrap.dedent("\n".join(body)).strip("\n")
            found.append((str(path.relative_to(DOCS)), i + 1, code))
            i = j
    return found


EXAMPLES = doc_examples()


def test_docs_have_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("where,line,code", EXAMPLES, ids=[f"{w}:{n}" for w, n, _ in EXAMPLES])
def test_doc_example(where, line, code, tmp_path):
    assert code.strip(), f"{where}:{line}: empty code block"
    script = tmp_path / "example.py"
    script.write_text(code + "\n", encoding="utf-8")
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-X", "dev", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and not proc.stderr, (
        f"{where}:{line}: exit status {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
