"""Hygiene of the committed chapter notebooks (what readers see, since the book does not execute them).

For every ``notebooks/*.ipynb``: its jupytext twin ``.py`` (py:percent) exists and holds the same cells;
it was executed top to bottom and its outputs are committed; outputs show no local paths, warnings,
errors, progress bars or widget state; the first code cell is the Colab setup cell. The checkers are
plain functions, tested on small synthetic notebooks, so each check is known to fail when it should.
"""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
SETUP_INSTALL = f"git+{REPO_URL}.git"

LOCAL_PATH = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|/private/var/|site-packages|dist-packages|\b[A-Z]:\\)")
WARNING = re.compile(r"\b\w*Warning\b|warnings\.warn")
PROGRESS_BAR = re.compile(r"\d+(\.\d+)?\s*(it/s|s/it)\b|\|[█▏▎▍▌▋▊▉ ]{3,}\|")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/javascript")


def cell_sources(nb) -> list[tuple[str, str]]:
    """(cell type, source) of the code and markdown cells, whitespace-trimmed."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells if c.cell_type in ("code", "markdown")]


def pairing_problems(ipynb: Path) -> list[str]:
    twin = ipynb.with_suffix(".py")
    if not twin.exists():
        return [f"{ipynb.name} has no jupytext twin {twin.name} (py:percent)"]
    nb = nbformat.read(ipynb, as_version=4)
    problems = []
    formats = nb.metadata.get("jupytext", {}).get("formats", "")
    if "py:percent" not in formats:
        problems.append(f"{ipynb.name}: jupytext formats is {formats!r}, expected 'ipynb,py:percent'")
    a, b = cell_sources(nb), cell_sources(jupytext.read(twin))
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        problems.append(f"{ipynb.name} and {twin.name} differ (first at cell {first}; {len(a)} vs {len(b)} "
                        f"cells): run `jupytext --sync {ipynb.name}` or `make notebook NB={ipynb.stem}`")
    return problems


def _output_texts(output) -> list[str]:
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return [output.ename, output.evalue, "\n".join(output.traceback)]
    data = output.get("data", {})
    return [data[m] if isinstance(data[m], str) else "".join(data[m]) for m in TEXT_MIMES if m in data]


def output_problems(nb, name: str = "notebook") -> list[str]:
    """Unexecuted cells, errors, local paths, warnings, progress bars and widget junk in outputs."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.get("execution_count") for c in code]
    if any(n is None for n in counts):
        missing = [i for i, n in enumerate(counts) if n is None]
        problems.append(f"{name}: code cells {missing} were not executed (commit the executed notebook)")
    elif counts != sorted(counts) or len(set(counts)) != len(counts):
        problems.append(f"{name}: cells were executed out of order {counts}; re-run top to bottom")
    if code and not any(c.get("outputs") for c in code):
        problems.append(f"{name}: no outputs committed")
    if "widgets" in nb.metadata:
        problems.append(f"{name}: widget state in notebook metadata")
    for i, cell in enumerate(code):
        for out in cell.get("outputs", []):
            where = f"{name} cell {i}"
            if out.output_type == "error":
                problems.append(f"{where}: error output {out.ename}")
            if WIDGET_MIME in out.get("data", {}):
                problems.append(f"{where}: widget output (use progress=False, no ipywidgets)")
            if out.output_type == "stream" and out.name == "stderr" and out.text.strip():
                problems.append(f"{where}: stderr output {out.text.strip()[:80]!r}")
            for text in _output_texts(out):
                if m := LOCAL_PATH.search(text):
                    problems.append(f"{where}: local path {m.group(0)!r} in output (print paths relative to the repo)")
                if m := WARNING.search(text):
                    problems.append(f"{where}: warning text {m.group(0)!r} in output")
                if m := PROGRESS_BAR.search(text):
                    problems.append(f"{where}: progress bar {m.group(0)!r} in output (progress=False)")
    return problems


def setup_cell_problems(nb, name: str = "notebook") -> list[str]:
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        return [f"{name}: no code cells"]
    first = code[0]
    problems = []
    if "setup" not in first.metadata.get("tags", []):
        problems.append(f"{name}: first code cell is not tagged 'setup'")
    src = first.source
    if '"google.colab" in sys.modules' not in src or SETUP_INSTALL not in src:
        problems.append(f"{name}: first code cell must install mlcore from {SETUP_INSTALL} only in Colab")
    return problems


def figure_problems(nb, name: str = "notebook") -> list[str]:
    for c in nb.cells:
        for out in c.get("outputs", []):
            if "image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {}):
                return []
    return [f"{name}: no figure in the outputs (every chapter shows at least one)"]


# ------------------------------------------------------------------ the committed notebooks
ids = [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=ids)
def test_notebook_is_paired_and_in_sync(ipynb):
    assert pairing_problems(ipynb) == []


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=ids)
def test_notebook_outputs_are_committed_and_clean(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    assert output_problems(nb, ipynb.name) + figure_problems(nb, ipynb.name) == []


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=ids)
def test_notebook_starts_with_colab_setup_cell(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    assert setup_cell_problems(nb, ipynb.name) == []
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_every_py_twin_has_a_notebook():
    twins = sorted((ROOT / "notebooks").glob("*.py"))
    orphans = [p.name for p in twins if not p.with_suffix(".ipynb").exists()]
    assert orphans == [], f"run `make notebook NB=<name>` for {orphans}"


# ------------------------------------------------------------------ the checkers themselves
SETUP_SRC = ('import importlib.util, subprocess, sys\n'
             'if "google.colab" in sys.modules and importlib.util.find_spec("mlcore") is None:\n'
             '    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
             f'                    "{SETUP_INSTALL}"], check=True)')


def _good_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    setup = nbformat.v4.new_code_cell(SETUP_SRC, execution_count=1, metadata={"tags": ["setup"]})
    md = nbformat.v4.new_markdown_cell("# A chapter\n\nSome prose.")
    run = nbformat.v4.new_code_cell("print('accuracy 0.91')", execution_count=2, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.91\n")])
    fig = nbformat.v4.new_code_cell("plt.show()", execution_count=3, outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})])
    nb.cells = [md, setup, run, fig]
    return nb


def test_checkers_accept_a_clean_notebook(tmp_path):
    nb = _good_notebook()
    assert output_problems(nb) == [] and setup_cell_problems(nb) == [] and figure_problems(nb) == []
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(nb, path)
    jupytext.write(nb, tmp_path / "01_demo.py", fmt="py:percent")
    assert pairing_problems(path) == []


@pytest.mark.parametrize("text, expected", [
    ("saved to /work/main/runs/x.pt\n", "local path"),
    ("/usr/lib/python3/site-packages/torch/nn.py:12\n", "local path"),
    ("UserWarning: something deprecated\n", "warning text"),
    ("100%|██████████| 50/50 [00:01<00:00, 41.2it/s]\n", "progress bar"),
])
def test_output_checker_catches_bad_text(text, expected):
    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    problems = output_problems(nb)
    assert any(expected in p for p in problems), problems


def test_output_checker_catches_unexecuted_errors_widgets_and_stderr():
    nb = _good_notebook()
    nb.cells[2].execution_count = None
    assert any("not executed" in p for p in output_problems(nb))
    nb = _good_notebook()
    nb.cells[3].execution_count = 1
    assert any("out of order" in p for p in output_problems(nb))
    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])]
    assert any("error output" in p for p in output_problems(nb))
    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={WIDGET_MIME: {"model_id": "x"}})]
    assert any("widget" in p for p in output_problems(nb))
    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stderr", text="something on stderr\n")]
    assert any("stderr" in p for p in output_problems(nb))
    nb = _good_notebook()
    nb.cells[3].outputs = []
    assert figure_problems(nb) != []


def test_setup_checker_wants_the_colab_cell_first():
    nb = _good_notebook()
    nb.cells[1], nb.cells[2] = nb.cells[2], nb.cells[1]
    assert len(setup_cell_problems(nb)) == 2
    nb = _good_notebook()
    nb.cells[1].source = nb.cells[1].source.replace(REPO_URL, "https://example.org/other")
    assert any("install mlcore" in p for p in setup_cell_problems(nb))


def test_pairing_checker_catches_drift_and_missing_twin(tmp_path):
    nb = _good_notebook()
    path = tmp_path / "02_demo.ipynb"
    nbformat.write(nb, path)
    assert "no jupytext twin" in pairing_problems(path)[0]
    edited = _good_notebook()
    edited.cells[2].source = "print('accuracy 0.99')"
    jupytext.write(edited, tmp_path / "02_demo.py", fmt="py:percent")
    assert any("differ" in p for p in pairing_problems(path))
