#!/usr/bin/env python3
"""Strip notebooks for committing: outputs, execution counts, widget state and run metadata.

    python scripts/strip_notebooks.py                 # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py a.ipynb b.ipynb # strip these
    python scripts/strip_notebooks.py --check         # exit 1 and name the files that are not stripped

What is removed: every code cell's ``outputs`` and ``execution_count``; the cell metadata keys that a run
or a front end adds (``execution``, ``collapsed``, ``scrolled``, ``jupyter``, ``ExecuteTime``); the
notebook metadata's ``widgets`` (the saved widget state) and ``language_info`` details other than the
name. Sources, cell ids and markdown are left exactly as they are. Files are rewritten only when something
changes (with nbformat's canonical formatting).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CELL_METADATA_KEYS = ("execution", "collapsed", "scrolled", "jupyter", "ExecuteTime")
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def strip_notebook(nb: nbformat.NotebookNode) -> bool:
    """Strip ``nb`` in place; return whether anything was removed."""
    changed = False
    for cell in nb.cells:
        for key in CELL_METADATA_KEYS:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
        if cell.cell_type == "code":
            if cell.get("outputs"):
                cell.outputs = []
                changed = True
            if cell.get("execution_count") is not None:
                cell.execution_count = None
                changed = True
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    info = nb.metadata.get("language_info")
    if info is not None and set(info) - {"name"}:
        nb.metadata["language_info"] = {"name": info.get("name", "python")}
        changed = True
    return changed


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What in ``nb`` is not stripped, in words (empty when clean)."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            out.append(f"cell {i} has {len(cell.outputs)} output(s)")
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            out.append(f"cell {i} has execution_count {cell.execution_count}")
        keys = [k for k in CELL_METADATA_KEYS if k in cell.metadata]
        if keys:
            out.append(f"cell {i} has run metadata {keys}")
    if "widgets" in nb.metadata:
        out.append("the notebook metadata holds widget state")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not stripped")
    args = parser.parse_args(argv)
    files = args.files or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if not files:
        print(f"no notebooks found (looked in {NOTEBOOK_DIR})", file=sys.stderr)
        return 2
    bad = 0
    for path in files:
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
        nb = nbformat.read(path, as_version=4)
        if args.check:
            found = problems(nb)
            if found:
                bad += 1
                print(f"{path}: not stripped: {'; '.join(found)} (run scripts/strip_notebooks.py)")
        elif strip_notebook(nb):
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"stripped {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
