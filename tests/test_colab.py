"""The chapters opened the way Colab opens them: the notebook alone, mlcore installed by its setup cell.

The setup cell is written once, in ``tools/setup_cell.py``; every notebook's first code cell must equal it.
The end-to-end test replays what Colab does, on this machine and without the network:

* a fresh virtual environment in a temporary folder, with no mlcore in it. Colab comes with torch, numpy,
  matplotlib and Jupyter preinstalled; here they are borrowed from the running environment (a ``.pth`` to a
  folder of links to its site-packages, mlcore left out), because installing torch again would take minutes
  and the network. pip runs with ``--no-index`` (and no build isolation): every dependency mlcore declares
  must already be there, as it is in Colab;
* the setup cell, switched on with ``MLCORE_SETUP=1`` and pointed at this repository
  (``MLCORE_REPO_URL=file://...``, ``MLCORE_REPO_REF=<HEAD's commit>``), clones it and installs mlcore from
  the clone;
* chapter 9 (the cheapest chapter that prints reference numbers: it reads records, trains nothing) is executed
  with nbconvert at ``MLCORE_BUDGET=smoke`` from another temporary folder that holds only the notebook file;
* the reference numbers it prints (record accuracies) must match the committed notebook's outputs, mlcore must
  have been imported from the clone, and its records read from the clone's ``results/``.

Skipped where git, a git checkout of the book or a local Omniglot copy (``MLCORE_DATA``) is missing; CI has
all three. It takes about a minute (the clone and the editable install ~10 s, the chapter the rest).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import setup_cell  # tools/ is not a package

CHAPTER = "09_comparison"
NOT_PRODUCED = "not yet produced"
TEXT_MIMES = ("text/plain", "text/html", "text/markdown")


# ------------------------------------------------------------------ the one setup cell
def test_every_notebook_starts_with_the_one_setup_cell():
    assert setup_cell.problems(ROOT) == []


def test_setup_cell_points_at_the_configured_repository():
    url, branch = setup_cell.repository(ROOT)
    cell = setup_cell.setup_cell(ROOT)
    assert f'"git+{url}.git"' in cell and f'"MLCORE_REPO_REF", "{branch}"' in cell
    assert '"MLCORE_REPO_REF", "v1.0"' in setup_cell.setup_cell(ROOT, ref="v1.0")
    for var in ("MLCORE_SETUP", "MLCORE_REPO_URL", "MLCORE_REPO_DIR", "MLCORE_RESULTS"):
        assert var in cell
    compile(cell, "setup", "exec")


def test_setup_cell_does_nothing_outside_colab(tmp_path):
    """Without Colab or MLCORE_SETUP=1: no install, no clone, sys.path and MLCORE_RESULTS untouched."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLCORE_SETUP", "MLCORE_RESULTS")}
    env["MLCORE_REPO_DIR"] = str(tmp_path / "src")
    probe = ("import os, sys\nbefore = list(sys.path)\n" + setup_cell.setup_cell(ROOT)
             + "\nprint(sys.path == before, os.environ.get('MLCORE_RESULTS'))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["True", "None"]
    assert not (tmp_path / "src").exists()


def test_stamp_replaces_only_the_setup_cell():
    text = ('# %% [markdown]\n# # Title\n\n# %% tags=["setup"]\nold = 1\nold = 2\n\n'
            '# %%\nimport mlcore\n\n# %%\nx = 1\n')
    stamped = setup_cell.stamp_py(text, "new = 3")
    assert stamped == ('# %% [markdown]\n# # Title\n\n# %% tags=["setup"]\nnew = 3\n\n'
                       '# %%\nimport mlcore\n\n# %%\nx = 1\n')
    assert setup_cell.stamp_py(stamped, "new = 3") == stamped
    with pytest.raises(ValueError, match="exactly one"):
        setup_cell.stamp_py("# %%\nx = 1\n", "new = 3")


def test_stamp_finds_a_setup_cell_with_more_tags():
    """The chapters hide their setup cell in the rendered book (``hide-cell``); the stamp still finds it."""
    text = '# %% tags=["setup", "hide-cell"]\nold = 1\n\n# %% tags=["hide-input"]\nimport mlcore\n'
    assert setup_cell.stamp_py(text, "new = 3") == ('# %% tags=["setup", "hide-cell"]\nnew = 3\n\n'
                                                     '# %% tags=["hide-input"]\nimport mlcore\n')
    with pytest.raises(ValueError, match="exactly one"):
        setup_cell.stamp_py('# %% tags=["setups"]\nx = 1\n', "new = 3")


# ------------------------------------------------------------------ the Colab flow, end to end
def _git_head() -> str | None:
    if shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def _omniglot_here() -> bool:
    from mlcore.data.omniglot import omniglot_dir

    return (omniglot_dir() / "omniglot.npz").exists()


def _colab_like_venv(where: Path) -> Path:
    """A fresh venv whose preinstalled packages are the running environment's, mlcore excluded; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where / "venv")], check=True, timeout=120)
    python = where / "venv" / "bin" / "python"
    shadow = where / "preinstalled"
    shadow.mkdir()
    for site in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(site).iterdir():
            name = entry.name
            if (name.startswith(("mlcore", "__editable__", "_mlcore")) or name.endswith((".pth", ".egg-link"))
                    or name == "__pycache__" or (shadow / name).exists()):
                continue
            (shadow / name).symlink_to(entry)
    site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    (Path(site_packages) / "_preinstalled.pth").write_text(f"{shadow}\n")
    # The notebook runs in a kernel of this venv (a kernelspec of our own: no user kernel can stand in for it).
    kernel = where / "jupyter" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab-like)", "language": "python"}))
    return python


def _texts(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            for mime in TEXT_MIMES:
                v = out.get("data", {}).get(mime)
                if v:
                    parts.append(v if isinstance(v, str) else "".join(v))
    return "\n".join(parts)


def _record_numbers(results: Path) -> set[str]:
    """Every record's accuracy as the book prints it ("74.04 ± 0.85", percent, 95 % CI)."""
    numbers = set()
    for path in results.glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        acc, ci = rec.get("accuracy"), rec.get("ci95")
        if isinstance(acc, float) and isinstance(ci, float) and not math.isnan(ci):
            numbers.add(f"{100 * acc:.2f} ± {100 * ci:.2f}")
    return numbers


def test_chapter_runs_from_the_notebook_alone_like_colab(tmp_path):
    head = _git_head()
    if head is None:
        pytest.skip("needs git and a git checkout of the book (the setup cell clones it)")
    if not _omniglot_here():
        pytest.skip("no local Omniglot (MLCORE_DATA): the chapter would download it")
    pytest.importorskip("nbconvert")
    pytest.importorskip("ipykernel")

    t0 = time.perf_counter()
    python = _colab_like_venv(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / f"{CHAPTER}.ipynb", as_version=4)
    # One cell of the test's own at the end: where mlcore and its records came from.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import mlcore, mlcore.results\nprint('MLCORE_FILE', mlcore.__file__)\n"
        "print('RESULTS_DIR', mlcore.results.results_dir())"))
    nbformat.write(nb, run_dir / f"{CHAPTER}.ipynb")
    assert [p.name for p in run_dir.iterdir()] == [f"{CHAPTER}.ipynb"]

    src = tmp_path / "src"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLCORE_RESULTS", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH", "MLCORE_SETUP")}
    env.update({
        "MLCORE_SETUP": "1", "MLCORE_REPO_URL": f"file://{ROOT}", "MLCORE_REPO_REF": head,
        "MLCORE_REPO_DIR": str(src), "MLCORE_BUDGET": "smoke",
        "VIRTUAL_ENV": str(python.parent.parent), "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_PATH": str(tmp_path / "jupyter"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        # offline: every dependency is preinstalled, as in Colab ("0" is how pip spells --no-build-isolation)
        "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    })
    executed = run_dir / "executed.ipynb"
    t1 = time.perf_counter()
    proc = subprocess.run([str(python), "-m", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=900", "--ExecutePreprocessor.kernel_name=python3",
                           "--output", executed.name, f"{CHAPTER}.ipynb"],
                          cwd=run_dir, env=env, capture_output=True, text=True, timeout=1500, check=False)
    t2 = time.perf_counter()
    print(f"colab flow: venv {t1 - t0:.1f} s, setup cell + chapter {CHAPTER} {t2 - t1:.1f} s")
    assert proc.returncode == 0, proc.stderr[-4000:]

    clone = src / "mlcore"
    assert subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip() == head
    ran = nbformat.read(executed, as_version=4)
    where = _texts(nbformat.v4.new_notebook(cells=[ran.cells[-1]]))
    assert f"MLCORE_FILE {clone / 'mlcore' / '__init__.py'}" in where, where
    assert f"RESULTS_DIR {clone / 'results'}" in where, where

    committed, fresh = _texts(nb), _texts(ran)
    numbers = _record_numbers(clone / "results")
    shown = {n for n in numbers if n in committed}
    assert shown, f"the committed {CHAPTER} shows no record accuracy; pick a chapter that does"
    assert shown & {n for n in numbers if n in fresh}, (
        f"none of the record numbers of the committed {CHAPTER} ({sorted(shown)[:5]}) was printed from the clone")
    assert fresh.count(NOT_PRODUCED) <= committed.count(NOT_PRODUCED), "records the book shows were not found"
    assert re.search(r"\bTraceback\b", fresh) is None
    shutil.rmtree(tmp_path, ignore_errors=True)  # the clone is ~200 MB; pytest keeps its last temp folders
