import os
from pathlib import Path

import pytest
import torch

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "MLCORE_DATA" not in os.environ and (_SHARED / "omniglot" / "omniglot.npz").exists():
    os.environ["MLCORE_DATA"] = str(_SHARED)


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
