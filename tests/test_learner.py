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


# ----------------------------------------------------------------------------- the hooks fit calls, the samplers
def _sampler(classes, seed=0):
    from mlcore.data import EpisodeSampler

    return EpisodeSampler(classes, ways=5, shots=1, queries=2, batch_size=2, seed=seed)


def test_every_learner_has_the_training_hooks_as_no_ops():
    from mlcore.learner import FewShotLearner, MetaLearner, TrainingHooks
    from mlcore.memory.protonet import ProtoNet

    assert issubclass(FewShotLearner, TrainingHooks)
    lrn = ProtoNet(hidden=8)
    assert isinstance(lrn, MetaLearner)
    assert lrn.after_backward() is None and lrn.after_step() is None
    assert lrn.agree_to_stop(True) is True and lrn.agree_to_stop(False) is False


def test_fit_calls_the_hooks_on_every_step(test_classes):
    from mlcore.engine import fit
    from mlcore.memory.protonet import ProtoNet

    class Counting(ProtoNet):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.calls = []

        def after_backward(self):
            assert all(p.grad is not None for p in self.parameters() if p.requires_grad)
            self.calls.append("after_backward")

        def after_step(self):
            self.calls.append("after_step")

        def agree_to_stop(self, local):
            self.calls.append("agree_to_stop")
            return len(self.calls) >= 6  # vote to stop at the end of step 2

    lrn = Counting(hidden=8)
    r = fit(lrn, _sampler(test_classes), 5, progress=False)
    assert lrn.calls == ["after_backward", "after_step", "agree_to_stop"] * 2
    assert r.steps == 2 and r.stopped == "time limit reached after 2 of 5 steps"


def test_fit_says_what_a_learner_or_sampler_lacks(test_classes):
    from torch import nn

    from mlcore.engine import fit
    from mlcore.memory.protonet import ProtoNet

    class Bare(nn.Module):  # a meta_loss, but none of the hooks
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.device = torch.device("cpu")

        def meta_loss(self, batch):
            return (self.w ** 2).sum(), {}

    with pytest.raises(ValueError, match="Bare lacks.*FewShotLearner"):
        fit(Bare(), _sampler(test_classes), 1, progress=False)

    class NoState:
        def sample(self):
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match="NoState lacks"):
        fit(ProtoNet(hidden=8), NoState(), 1, progress=False)


def test_the_book_samplers_are_samplers(test_classes):
    from mlcore.baselines.pretrained import ClassBatchSampler
    from mlcore.data.sinusoid import SinusoidSampler
    from mlcore.learner import Sampler
    from mlcore.memory.mann import SequenceSampler
    from mlcore.metric.siamese import PairSampler

    assert isinstance(_sampler(test_classes), Sampler)
    assert isinstance(PairSampler(test_classes, classes_per_batch=4), Sampler)
    assert isinstance(SinusoidSampler(shots=5, queries=1, batch_size=2, seed=0), Sampler)
    assert isinstance(ClassBatchSampler(test_classes, batch_size=8), Sampler)
    assert isinstance(SequenceSampler(test_classes, 5, 3, 2, "cpu", 0), Sampler)


def test_the_engine_asks_no_learner_what_it_has():
    """fit calls the hooks the protocol declares; no ``hasattr`` probing in the engine or the distributed wrapper."""
    for name in ("engine.py", "distributed.py"):
        tree = ast.parse((ROOT / "mlcore" / name).read_text())
        probes = [n.lineno for n in ast.walk(tree)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "hasattr"]
        assert probes == [], f"{name}: hasattr at lines {probes}"


# ----------------------------------------------------------------------------- raw drawings in, logits out
def _raw_drawings():
    """Drawers 1 and 2 of the first 20 evaluation characters (one alphabet): raw bool (20, 105, 105) each."""
    import numpy as np

    from mlcore.data.omniglot import load_raw

    raw = load_raw(download_missing=False)
    rows = np.flatnonzero(~raw.background)[: 20 * 20: 20]
    return raw.unpack(rows), raw.unpack(rows + 1)


def test_a_loaded_learner_predicts_on_raw_drawings():
    """A learner from ``mlcore.load`` knows it was trained on 28 px images: bool, uint8 or float drawings at
    105 px, as tensors or arrays, give the logits of preprocessed input. A learner built in code (no record,
    ``input_size`` None) takes images as given."""
    import numpy as np

    import mlcore
    from mlcore.data import preprocess
    from mlcore.memory.protonet import ProtoNet

    path = ROOT / "results" / "protonet_omniglot_5w1s.json"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    lrn = mlcore.load(path, device="cpu")
    assert lrn.input_size == 28
    support, queries = _raw_drawings()
    y = torch.arange(20)
    with torch.no_grad():
        want = lrn.predict(preprocess(support), y, preprocess(queries))
        assert torch.equal(lrn.predict(torch.as_tensor(support), y, queries), want)  # tensor and ndarray
        assert torch.equal(lrn.predict(support.astype(np.uint8) * 255, y, queries[:, None]), want)
        assert torch.equal(lrn.predict(support.astype(np.float32), y, queries.astype(np.float32)), want)
    x = preprocess(support)
    assert lrn.as_input(x) is x  # model-ready input passes untouched
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        lrn.as_input(torch.zeros(1, 2, 1, 40, 40))
    built = ProtoNet(hidden=8)
    small = torch.rand(4, 1, 10, 10)
    assert built.input_size is None and built.as_input(small) is small


def test_the_lake_siamese_record_predicts_on_raw_105px_drawings():
    """``mlcore.load`` of the Lake-protocol record gives a net that knows it takes 56 px images and resizes
    raw 105 px drawings itself: no ``preprocess(..., size=56)`` needed, and the same logits as with it."""
    import mlcore
    from mlcore.data import preprocess

    path = ROOT / "results" / "siamese_omniglot_lake_20w1s.json"
    if not (ROOT / "results" / "siamese_omniglot_lake.pt").exists():
        # 20 MB: not committed; `python -m mlcore reproduce --only siamese_omniglot_lake_20w1s` regenerates it
        pytest.skip("the Lake-protocol Siamese weights are not in this checkout")
    net = mlcore.load(path, device="cpu")
    assert net.input_size == mlcore.load_record(path).config["model"]["image_size"] == 56
    support, queries = _raw_drawings()
    assert support.shape[1:] == (105, 105)
    with torch.no_grad():
        logits = net.predict(support, torch.arange(20), queries)
        assert torch.equal(logits, net.predict(preprocess(support, size=56), torch.arange(20),
                                               preprocess(queries, size=56)))
    assert logits.shape == (20, 20) and torch.isfinite(logits).all()
    # another drawing of each character, among the 20 of its alphabet: the record scores 74 % on such
    # within-alphabet trials (this one: 75 %), chance is 5 %
    assert (logits.argmax(-1) == torch.arange(20)).float().mean() >= 0.5
