"""Extract the Python examples of a reStructuredText file (README.rst) for type checking.

    python tests/typing/extract_examples.py README.rst OUTDIR

writes one file per example, OUTDIR/readme_LLLL.py (LLLL: the README line the example
starts on), and prints what it found. In each file the code sits on the same line
numbers as in the README, so a checker's "readme_0123.py:130: error" is README.rst
line 130.

What counts as an example:

- ``.. code-block:: python`` (also ``code``, ``sourcecode``; ``python``, ``python3``,
  ``py``, ``py3``; ``pycon`` and ``.. doctest::`` for ``>>>`` sessions, ``.. testcode::``);
  any other language (``bash``, ``console``, ``text``, ``none``...) is not Python;
- a literal block (the indented block after a paragraph ending in ``::``, or after a
  line that is only ``::``) and a doctest block (a paragraph of ``>>>`` lines):
  Python when the text parses as Python and does something (imports, assigns, defines
  or calls), or when it fails to parse but plainly is meant as Python (it has an
  import, def or class line); then the checker reports the syntax error. Shell
  commands, program output and the like are left out. ``.. highlight:: LANG`` sets
  the language of the literal blocks after it, as in Sphinx.

Markers: a comment line ``.. mypy: WORD`` (an RST comment: not rendered) applies to
the next example after it. Put it before the paragraph that introduces the example,
separated from it by a blank line:

- ``.. mypy: skip`` (optionally followed by a reason): not checked, e.g. a fragment
  that cannot stand alone;
- ``.. mypy: check``: checked even though it does not look like Python;
- ``.. mypy: continue``: checked as the continuation of the previous example (the two
  go into one file), for an example that uses the names the previous one defined.

An unknown marker word, a marker that no example follows, or a file with no Python
example at all is an error (exit status 1): the check must not pass by finding nothing.
"""

import argparse
import ast
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

MARKER = re.compile(r"^\s*\.\.\s+mypy:\s*(?P<word>\S+)\s*(?P<reason>.*)$")
DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\.\s+(?P<name>[A-Za-z0-9_-]+)::\s*(?P<arg>.*?)\s*$")
ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}$")
PYTHON_LANGUAGES = {"python", "python3", "py", "py3", "pycon", "pycon3", "ipython", "ipython3"}
CODE_DIRECTIVES = {"code", "code-block", "sourcecode"}
DOCTEST_DIRECTIVES = {"doctest"}
TESTCODE_DIRECTIVES = {"testcode", "testsetup", "testcleanup"}
MARKER_WORDS = {"skip", "check", "continue"}
LOOKS_LIKE_PYTHON = re.compile(r"^\s*(import\s+\w|from\s+[\w.]+\s+import\s|def\s+\w|class\s+\w|async\s+def\s)")


@dataclass
class Block:
    start: int  # 1-based line of the first line of code
    end: int  # 1-based line of the last line of code
    lines: list[str]  # the code, dedented, one per README line from start to end
    kind: str  # "directive python", "literal", "doctest"...
    python: bool | None  # True/False when the markup says; None: decide from the text
    doctest: bool = False
    marker: str | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def body(lines: list[str], first: int, base: int, skip_options: bool) -> tuple[int, int, list[str]]:
    """The indented block from lines[first] on (0-based), indented more than `base`.

    Returns (start, stop, text): lines[start:stop] is the block without leading and
    trailing blank lines (start == stop if there is none).
    """
    i = first
    if skip_options:  # directive options (":linenos:") come right after the directive
        while i < len(lines) and lines[i].strip().startswith(":") and indent_of(lines[i]) > base:
            i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    start = i
    while i < len(lines) and (not lines[i].strip() or indent_of(lines[i]) > base):
        i += 1
    stop = i
    while stop > start and not lines[stop - 1].strip():
        stop -= 1
    if start < stop and indent_of(lines[start]) <= base:
        return start, start, []
    return start, stop, textwrap.dedent("\n".join(lines[start:stop])).split("\n") if start < stop else []


def from_doctest(text: list[str]) -> list[str]:
    """The source lines of a >>> session, on their own lines; output lines become blank."""
    out = []
    for line in text:
        stripped = line.lstrip()
        if stripped.startswith((">>>", "...")):
            code = stripped[4:] if len(stripped) > 3 and stripped[3] == " " else stripped[3:]
            out.append(code)
        else:
            out.append("")
    return out


def scan(text: str) -> tuple[list[Block], list[str]]:
    """Every code block of an RST text, with the marker that applies to it; and errors."""
    lines = [line.expandtabs(8).rstrip() for line in text.splitlines()]
    blocks: list[Block] = []
    errors: list[str] = []
    pending: tuple[str, str, int] | None = None  # marker word, reason, line
    highlight: str | None = None  # None: Python, or not known
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        stripped = line.strip()
        found: Block | None = None
        next_i = i + 1

        marker = MARKER.match(line)
        directive = DIRECTIVE.match(line)
        if marker:
            word = marker.group("word")
            if word not in MARKER_WORDS:
                errors.append(f"line {lineno}: unknown marker '.. mypy: {word}' (use one of {sorted(MARKER_WORDS)})")
            else:
                if pending:
                    errors.append(f"line {pending[2]}: marker '.. mypy: {pending[0]}' is followed by another marker")
                pending = (word, marker.group("reason"), lineno)
        elif directive:
            name = directive.group("name").lower()
            arg = directive.group("arg").split()[0].lower() if directive.group("arg") else ""
            base = len(directive.group("indent"))
            if name == "highlight":
                highlight = arg or None
            elif name in CODE_DIRECTIVES | DOCTEST_DIRECTIVES | TESTCODE_DIRECTIVES:
                start, stop, code = body(lines, i + 1, base, skip_options=True)
                next_i = max(stop, i + 1)
                if code:
                    if name in CODE_DIRECTIVES:
                        python: bool | None = (arg in PYTHON_LANGUAGES) if arg else _literal_language(highlight)
                        is_doctest = arg.startswith(("pycon", "ipython")) or code[0].lstrip().startswith(">>>")
                    else:
                        python = True
                        is_doctest = name in DOCTEST_DIRECTIVES
                    found = Block(start + 1, stop, code, f"{name}:: {arg}".strip(), python, is_doctest)
            # Any other directive (note, list-table, image...): its content is scanned
            # line by line like the rest, so code nested in it is found too.
        elif stripped.endswith("::") and not stripped.startswith("..") and not ADORNMENT.match(stripped):
            start, stop, code = body(lines, i + 1, indent_of(line), skip_options=False)
            if code:
                next_i = stop
                is_doctest = code[0].lstrip().startswith(">>>")
                found = Block(start + 1, stop, code, "literal", _literal_language(highlight), is_doctest)
        elif stripped.startswith(">>>") and (i == 0 or not lines[i - 1].strip()):
            stop = i
            while stop < len(lines) and lines[stop].strip():
                stop += 1
            code = textwrap.dedent("\n".join(lines[i:stop])).split("\n")
            found = Block(i + 1, stop, code, "doctest block", True, True)
            next_i = stop

        if found:
            if pending:
                found.marker, found.reason = pending[0], pending[1]
                pending = None
            blocks.append(found)
        i = next_i
    if pending:
        errors.append(f"line {pending[2]}: marker '.. mypy: {pending[0]}' has no example after it")
    return blocks, errors


def _literal_language(highlight: str | None) -> bool | None:
    if highlight is None or highlight in ("default", "python3", "python", "py", "py3"):
        return None  # decide from the text
    return highlight in PYTHON_LANGUAGES


def is_python(code: list[str]) -> bool:
    """Whether a block of unknown language is Python (see the module docstring)."""
    text = "\n".join(code)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return any(LOOKS_LIKE_PYTHON.match(line) for line in code)
    acts = (
        ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
        ast.Assign, ast.AugAssign, ast.With, ast.For, ast.While, ast.If, ast.Try, ast.Call,
    )  # fmt: skip
    return any(isinstance(node, acts) for node in ast.walk(tree))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("rst", type=Path, help="the reStructuredText file (README.rst)")
    parser.add_argument("outdir", type=Path, help="where to write the examples")
    parser.add_argument("--prefix", default="readme", help="file name prefix (default: readme)")
    args = parser.parse_args()

    blocks, errors = scan(args.rst.read_text(encoding="utf-8"))
    args.outdir.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, list[str]]] = []  # each: its path and its lines (1-based: index + 1)
    for block in blocks:
        where = f"{args.rst}:{block.start}"
        if block.marker == "skip":
            print(f"{where}: skipped ({block.kind}; marker '.. mypy: skip' {block.reason})".rstrip())
            continue
        python = block.python
        if python is None:
            python = block.marker in ("check", "continue") or is_python(block.lines)
        if not python:
            print(f"{where}: not Python ({block.kind}), not checked")
            continue
        code = from_doctest(block.lines) if block.doctest else block.lines
        if block.marker == "continue":
            if not files:
                errors.append(f"line {block.start}: '.. mypy: continue' but no example before it")
                continue
            path, content = files[-1]
            print(f"{where}: checked as the continuation of {path.name}")
        else:
            path = args.outdir / f"{args.prefix}_{block.start:04d}.py"
            content = [f"# Extracted from {args.rst.name}; line numbers are the README's."]
            files.append((path, content))
            print(f"{where}: checked ({block.kind}) as {path.name}")
        while len(content) < block.start - 1:
            content.append("")
        content.extend(code)
    for path, content in files:
        path.write_text("\n".join(content) + "\n", encoding="utf-8")
    if not files and not errors:
        errors.append("no Python example found (is this the right file?)")
    for error in errors:
        print(f"{args.rst}: error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
