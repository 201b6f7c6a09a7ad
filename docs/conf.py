"""Sphinx configuration for the pyshm documentation.

The build needs no network: no intersphinx inventories are fetched. The API reference
is read from the installed extension module (``pip install .`` first), whose classes
carry text signatures, so autodoc shows their real parameters.
"""
import os
import shutil

import pyshm

project = "pyshm"
author = "the pyshm authors"
copyright = "the pyshm authors; BSD 2-Clause license"
release = pyshm.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# Literal blocks in reST are Python unless they say otherwise.
highlight_language = "python3"
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"exclude-members": "__init__, __new__"}

myst_heading_anchors = 3

html_theme = "furo"
html_title = f"pyshm {release}"
html_static_path: list[str] = []

# --- the benchmarks page -------------------------------------------------------------------
# bench/run.py writes bench/results/latest.rst (with its chart, latest.png). Copy both next
# to the docs at build time, with the image path rewritten relative to the copy; without
# them the page says how to produce them.
_here = os.path.dirname(os.path.abspath(__file__))
_results = os.path.join(os.path.dirname(_here), "bench", "results")
_generated = os.path.join(_here, "_generated")
os.makedirs(_generated, exist_ok=True)


def _write_if_changed(path: str, text: str) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _bench_results() -> str:
    rst = os.path.join(_results, "latest.rst")
    png = os.path.join(_results, "latest.png")
    if not os.path.exists(rst):
        return (
            ".. note::\n\n"
            "   No benchmark results are checked in. Run ``python bench/run.py`` from the root\n"
            "   of a clone to write ``bench/results/latest.rst`` and ``latest.png``.\n"
        )
    with open(rst, encoding="utf-8") as f:
        text = f.read()
    if os.path.exists(png):
        shutil.copyfile(png, os.path.join(_generated, "latest.png"))
        text = text.replace("bench/results/latest.png", "_generated/latest.png")
    else:
        lines = text.splitlines()
        kept = []
        skipping = False
        for line in lines:
            if line.startswith(".. image:: "):
                skipping = True
                continue
            if skipping and (line.startswith("   ") or not line.strip()):
                continue
            skipping = False
            kept.append(line)
        text = "\n".join(kept) + "\n"
    return text


_write_if_changed(os.path.join(_generated, "bench_results.rst"), _bench_results())
