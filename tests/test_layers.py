"""The layers of ``mlcore``, read from the import statements of every module (``ast``, nothing is run).

Bottom to top; a module imports its own layer and the layers below it, never one above:

    core        data/, nets, learner, engine, results, runtime, registry, budget, protocols, runs,
                distributed, cli (the command line reaches studies only through the registry's strings)
    families    metric/, optimization/, memory/, rl/, baselines/: algorithm code, no record writing
    reporting   reference, report, compare: the papers' numbers and the tables
    studies     experiments/: what is run and what is recorded
    book        book/: what only the chapters need (the article's listing, numeric checks, plotting)

Imports inside functions count as imports. The registry's ``"module:function"`` strings are not imports:
``mlcore.registry`` resolves them lazily, which is how the core's CLI reaches a study.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mlcore"

LAYERS = ("core", "families", "reporting", "studies", "book")
FAMILIES = ("metric", "optimization", "memory", "rl", "baselines")
CORE = ("data", "nets", "learner", "engine", "results", "runtime", "registry", "budget", "protocols", "runs",
        "distributed", "cli", "__main__")
REPORTING = ("reference", "report", "compare")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of an ``mlcore`` module (or of a name imported from one); None if it has none yet."""
    parts = module.split(".")
    if parts[0] != "mlcore":
        return None
    if len(parts) == 1:
        return "core"  # the package itself: load, fit, evaluate, ...
    top = parts[1]
    if top in CORE:
        return "core"
    if top in FAMILIES:
        return "families"
    if top in REPORTING:
        return "reporting"
    if top == "experiments":
        return "studies"
    if top == "book":
        return "book"
    return None


def imports_in(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute name) for every import of ``mlcore`` in ``source``, the code of ``module``.

    Relative imports are resolved; ``from mlcore.x import y`` gives ``mlcore.x.y`` (y a module or a name:
    its layer is x's either way). Imports inside functions are included.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mlcore"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] == "mlcore":
                out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return sorted(out)


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """One line per import of ``module`` that points to a higher layer (or to a module with no layer)."""
    own = layer_of(module)
    found = []
    for line, target in imports_in(source, module, is_package):
        theirs = layer_of(target)
        if theirs is None:
            found.append(f"line {line}: imports {target}, which has no layer")
        elif LAYERS.index(theirs) > LAYERS.index(own):
            found.append(f"line {line}: {own} module imports {target} ({theirs}); {own} may import only "
                         f"{', '.join(LAYERS[: LAYERS.index(own) + 1])}")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def _source(path: Path) -> tuple[str, str, bool]:
    return path.read_text(), module_name(path), path.name == "__init__.py"


def test_every_module_has_a_layer():
    assert len(MODULES) > 30
    unplaced = [str(p.relative_to(ROOT)) for p in MODULES if layer_of(module_name(p)) is None]
    assert not unplaced, f"modules with no layer (place them in tests/test_layers.py): {unplaced}"


def test_imports_point_down_only():
    offending = [f"{p.relative_to(ROOT)} {msg}" for p in MODULES for msg in upward_imports(*_source(p))]
    assert not offending, "imports that point up a layer:\n" + "\n".join(offending)


def test_families_write_no_records():
    """Record writing belongs to the studies: no family imports ``Record`` or ``save_record``."""
    offending = [f"{p.relative_to(ROOT)}:{line} imports {target}" for p in MODULES
                 if layer_of(module_name(p)) == "families"
                 for line, target in imports_in(*_source(p))
                 if target in ("mlcore.results.Record", "mlcore.results.save_record")]
    assert not offending, "families that write records:\n" + "\n".join(offending)


def test_the_checker_flags_what_it_should():
    """On a made-up family module: three upward imports (one inside a function) flagged, the rest passed."""
    code = ("import torch\nfrom ..experiments import sinusoid\nfrom . import siamese\n"
            "import mlcore.book.plotting\nfrom ..nets import Conv4\n"
            "def f():\n    from ..report import rl_rows\n")
    assert imports_in(code, "mlcore.metric.probe") == [
        (2, "mlcore.experiments.sinusoid"), (3, "mlcore.metric.siamese"), (4, "mlcore.book.plotting"),
        (5, "mlcore.nets.Conv4"), (7, "mlcore.report.rl_rows")]
    found = upward_imports(code, "mlcore.metric.probe")
    assert [m.split(":")[0] for m in found] == ["line 2", "line 4", "line 7"], found
    assert "mlcore.experiments.sinusoid (studies)" in found[0]
    # a package's relative imports start from the package itself; the core's CLI may import no study
    assert imports_in("from .siamese import Siamese\n", "mlcore.metric", is_package=True) == [
        (1, "mlcore.metric.siamese.Siamese")]
    assert upward_imports("from .experiments.traits import traits_vs_shots\n", "mlcore.cli")
    assert layer_of("mlcore") == layer_of("mlcore.data.omniglot") == "core"
    assert layer_of("mlcore.newthing") is None


@pytest.mark.parametrize("kind", ["fn", "eval_fn"])
def test_registry_reproductions_name_studies(kind):
    """Every reproduction is run (and re-scored) by a study; every learner is a family's class."""
    from mlcore import registry

    for name, spec in registry.reproductions().items():
        if kind in spec:
            module = spec[kind].partition(":")[0]
            assert layer_of(module) == "studies", f"{name}: {kind} {spec[kind]} is not in mlcore.experiments"
            assert callable(registry.resolve(spec[kind])), f"{name}: {spec[kind]} does not resolve"
    for method, target in registry.learners().items():
        assert layer_of(target.partition(":")[0]) == "families", f"learner {method} lives in {target}"
