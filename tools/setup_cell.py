"""The chapters' Colab setup cell, written once: its template, and the script that stamps it into every notebook.

Every chapter's first code cell (tagged ``setup``) must equal :func:`setup_cell` (``tests/test_colab.py`` checks
it). In Colab, or anywhere ``MLCORE_SETUP=1`` asks for it, the cell

1. clones the book's repository (``repository.url`` of ``_config.yml``) at a fixed ref (``repository.branch``)
   and installs ``mlcore`` from that clone, editable (``pip install -e git+URL@REF#egg=mlcore --src DIR``);
2. puts the clone first on ``sys.path`` (an editable install is only seen by interpreters started after it);
3. sets ``MLCORE_RESULTS`` to the clone's ``results/``: the reference records and their checkpoints, which a
   plain ``pip install git+...`` of the package alone cannot see.

Omniglot is not in the repository: mlcore downloads it (sha256-checked) into its default cache, or reads
``MLCORE_DATA``. Elsewhere the cell does nothing: a reader who cloned the repository runs the chapters in it.

Environment variables read by the cell (for CI, or a reader with a fork or a local copy):

``MLCORE_SETUP=1``
    run the setup outside Colab too;
``MLCORE_REPO_URL``
    the git URL to clone (``https://...``, ``file:///path/to/clone``; a ``git+`` prefix is optional);
``MLCORE_REPO_REF``
    the branch, tag or commit to check out;
``MLCORE_REPO_DIR``
    where pip puts the clone (``<dir>/mlcore``; default ``~/mlcore-src``).

Usage::

    python tools/setup_cell.py           # stamp the cell into every notebooks/*.py and *.ipynb
    python tools/setup_cell.py --check   # exit 1, naming the notebooks whose setup cell differs
    python tools/setup_cell.py --print   # print the cell

Only the setup cell changes: the ``.py`` twin gets a text replacement of that one cell, the ``.ipynb`` gets
that cell's source replaced (the rest of the file, outputs included, is written back byte for byte).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SETUP_MARKER = '# %% tags=["setup"]'

# <REPO> and <REF> are filled from _config.yml. No blank line inside: jupytext keeps the cell whole either way,
# but a blank line reads like a cell break in the .py twin.
TEMPLATE = '''\
# Colab setup: installs mlcore from a clone of the book's repository and points it at the clone's results/
# (the reference records and checkpoints the chapter reads). It runs in Colab, or where MLCORE_SETUP=1;
# elsewhere it does nothing. MLCORE_REPO_URL, MLCORE_REPO_REF and MLCORE_REPO_DIR pick another source.
import os, subprocess, sys  # noqa: I001
if "google.colab" in sys.modules or os.environ.get("MLCORE_SETUP") == "1":
    url = os.environ.get("MLCORE_REPO_URL", "git+<REPO>.git")
    ref = os.environ.get("MLCORE_REPO_REF", "<REF>")
    src = os.path.expanduser(os.environ.get("MLCORE_REPO_DIR", "~/mlcore-src"))
    book = os.path.join(src, "mlcore")  # pip clones the repository here
    if not os.path.isdir(os.path.join(book, "results")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--exists-action", "i", "--src", src,
                        "-e", f"git+{url.removeprefix('git+')}@{ref}#egg=mlcore"], check=True)
    if book not in sys.path:
        sys.path.insert(0, book)
    os.environ["MLCORE_RESULTS"] = os.path.join(book, "results")'''


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(url, branch) of the book's repository, from ``_config.yml`` (the one place the URL is written)."""
    repo = yaml.safe_load((root / "_config.yml").read_text())["repository"]
    return str(repo["url"]).removesuffix("/").removesuffix(".git"), str(repo.get("branch") or "main")


def setup_cell(root: Path = ROOT, ref: str | None = None) -> str:
    """The source of the setup cell, for the repository of ``root/_config.yml`` at ``ref`` (default: its branch)."""
    url, branch = repository(root)
    return TEMPLATE.replace("<REPO>", url).replace("<REF>", ref or branch)


def _is_setup_marker(line: str) -> bool:
    """A py:percent cell marker whose tags include ``setup`` (e.g. ``# %% tags=["setup", "hide-cell"]``)."""
    m = re.fullmatch(r'# %% tags=\[(.*)\]', line.rstrip("\n"))
    return bool(m) and '"setup"' in [t.strip() for t in m.group(1).split(",")]


def stamp_py(text: str, cell: str, name: str = "notebook") -> str:
    """``text`` (a py:percent notebook) with the body of its ``setup`` cell replaced by ``cell``."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _is_setup_marker(line)]
    if len(starts) != 1:
        raise ValueError(f"{name}: expected exactly one line {SETUP_MARKER!r} (other tags may follow 'setup'), "
                         f"found {len(starts)}")
    first = starts[0] + 1
    end = next((i for i in range(first, len(lines)) if lines[i].startswith("# %%")), len(lines))
    body_end = end
    while body_end > first and not lines[body_end - 1].strip():  # keep the blank separator before the next cell
        body_end -= 1
    return "".join(lines[:first]) + cell + "\n" + "".join(lines[body_end:])


def _first_code_cell(nb, name: str):
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or "setup" not in code[0].metadata.get("tags", []):
        raise ValueError(f"{name}: the first code cell is not tagged 'setup'")
    return code[0]


def py_setup_source(path: Path) -> str:
    """The setup cell's source as jupytext reads it from a ``.py`` twin."""
    import jupytext

    return _first_code_cell(jupytext.read(path), path.name).source


def ipynb_setup_source(path: Path) -> str:
    return _first_code_cell(nbformat.read(path, as_version=4), path.name).source


def stamp_ipynb(path: Path, cell: str) -> bool:
    """Replace the source of the notebook's setup cell; True if the file changed."""
    raw = path.read_text(encoding="utf-8")
    nb = nbformat.reads(raw, as_version=4)
    first = _first_code_cell(nb, path.name)
    if first.source == cell:
        return False
    first.source = cell
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return True


def problems(root: Path = ROOT, cell: str | None = None) -> list[str]:
    """Every notebook (both twins) whose setup cell is not the template."""
    cell = setup_cell(root) if cell is None else cell
    out = []
    for path in sorted((root / "notebooks").glob("*.ipynb")) + sorted((root / "notebooks").glob("*.py")):
        try:
            src = ipynb_setup_source(path) if path.suffix == ".ipynb" else py_setup_source(path)
        except ValueError as e:
            out.append(str(e))
            continue
        if src != cell:
            out.append(f"{path.name}: the setup cell differs from tools/setup_cell.py (run `python tools/setup_cell.py`)")
    return out


def stamp(root: Path = ROOT, cell: str | None = None, only: list[str] | None = None) -> list[Path]:
    """Stamp the cell into every notebook pair under ``root/notebooks`` (or those named in ``only``)."""
    cell = setup_cell(root) if cell is None else cell
    changed = []
    for py in sorted((root / "notebooks").glob("*.py")):
        if only and py.stem not in only:
            continue
        text = py.read_text(encoding="utf-8")
        new = stamp_py(text, cell, py.name)
        if new != text:
            py.write_text(new, encoding="utf-8")
            changed.append(py)
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists() and stamp_ipynb(ipynb, cell):
            changed.append(ipynb)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="stamp the Colab setup cell into every chapter notebook")
    p.add_argument("--check", action="store_true", help="only report notebooks whose setup cell differs")
    p.add_argument("--print", action="store_true", dest="show", help="print the cell and exit")
    p.add_argument("--ref", default=None, help="the ref the cell clones (default: repository.branch of _config.yml)")
    p.add_argument("notebooks", nargs="*", help="notebook names (e.g. 09_comparison); default: all")
    args = p.parse_args(argv)
    cell = setup_cell(ROOT, args.ref)
    if args.show:
        print(cell)
        return 0
    if args.check:
        found = problems(ROOT, cell)
        print("\n".join(found) or "every setup cell equals the template")
        return 1 if found else 0
    for path in stamp(ROOT, cell, args.notebooks or None):
        print(f"stamped {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
