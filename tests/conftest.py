import os
from pathlib import Path

import pytest
import torch

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "MLCORE_DATA" not in os.environ and (_SHARED / "omniglot" / "omniglot.npz").exists():
    os.environ["MLCORE_DATA"] = str(_SHARED)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test runs on one CPU thread, restored afterwards.

    The tests use small tensors on a shared machine: several OpenMP threads spin-wait on each other and
    run several times slower (20-40x measured on a busy 2-core machine for the Siamese tests). Set once
    here for the session, not at import of a test file, so it does not depend on which files are collected.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def test_classes():
    from mlcore.data import load_split

    return load_split("vinyals/test")


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("long_run")`` imports ``benchmarks/long_run.py`` as a module (the scripts are no package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
