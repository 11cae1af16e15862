"""The learner protocol: what a learner records about itself, the hooks fit calls, the input it accepts."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- config, set once by the base
def test_no_learner_overwrites_its_config_after_the_base_constructor():
    """``FewShotLearner.__init__`` is the one place that sets ``self.config``: a subclass passes it complete."""
    offenders = []
    for path in sorted((ROOT / "mlcore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for t in targets:
                if isinstance(t, ast.Subscript):
                    t = t.value
                if isinstance(t, ast.Attribute) and t.attr == "config" and isinstance(t.value, ast.Name) \
                        and t.value.id == "self":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == ["mlcore/learner.py:" + str(_base_config_line())], offenders


def _base_config_line() -> int:
    src = (ROOT / "mlcore" / "learner.py").read_text().splitlines()
    return next(i + 1 for i, line in enumerate(src) if "self.config = " in line)


@pytest.mark.parametrize(("method", "passed", "expected"), [
    ("reptile", {"ways": 5, "inner_steps": 5, "inner_lr": 1e-3, "test_inner_steps": 50, "inner_batch": 10,
                 "inner_optimizer": "adam", "inner_betas": [0.0, 0.999], "test_inner_batch": 5, "hidden": 8},
     {"ways": 5, "hidden": 8, "in_channels": 1, "inner_steps": 5, "inner_lr": 1e-3, "test_inner_steps": 50,
      "inner_batch": 10, "inner_optimizer": "adam", "inner_betas": [0.0, 0.999], "test_inner_batch": 5}),
    # the plain-SGD Reptile of older records keeps their shorter config
    ("reptile", {"ways": 5, "hidden": 8, "inner_batch": None},
     {"ways": 5, "hidden": 8, "in_channels": 1, "inner_steps": 5, "inner_lr": 0.1, "test_inner_steps": 10,
      "inner_batch": None}),
    ("metasgd", {"ways": 5, "hidden": 8, "inner_lr": 0.4},
     {"ways": 5, "hidden": 8, "in_channels": 1, "inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 1,
      "first_order": False, "learn_rates": True}),
    ("maml", {"ways": 5, "hidden": 8},
     {"ways": 5, "hidden": 8, "in_channels": 1, "inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3,
      "first_order": False, "learn_inner_lr": False}),
    ("fomaml", {"ways": 5, "hidden": 8},
     {"ways": 5, "hidden": 8, "in_channels": 1, "inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3,
      "first_order": True, "learn_inner_lr": False}),
])
def test_config_is_the_constructor_arguments_and_rebuilds_the_learner(method, passed, expected):
    from mlcore.registry import learner_class

    cls = learner_class(method)
    lrn = cls.from_config(passed)
    assert lrn.config == expected
    twin = cls.from_config(lrn.config)
    assert twin.config == lrn.config
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in lrn.state_dict().items()}


@pytest.mark.parametrize("name", ["reptile_omniglot_5w1s", "reptile_omniglot_20w1s", "metasgd_omniglot_5w1s"])
def test_reptile_and_metasgd_records_still_load(name):
    """Their checkpoints load into the rebuilt learner, whose config holds the record's model config."""
    import mlcore

    path = ROOT / "results" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    lrn = mlcore.load(path, device="cpu")
    model = mlcore.load_record(path).config["model"]
    assert {k: lrn.config[k] for k in model} == model
