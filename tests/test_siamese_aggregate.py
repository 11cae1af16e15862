"""benchmarks/siamese_aggregate.py: one network, two rules for combining shots, scored on the record's own episodes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mlcore.engine import EVAL_SEED, evaluate
from mlcore.experiments.siamese_omniglot import fixed_test_sampler, reproduce
from mlcore.metric.siamese import class_scores
from mlcore.runs import load

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "siamese_aggregate.py"
_spec = importlib.util.spec_from_file_location("siamese_aggregate", _path)
sa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sa)


def test_class_scores_take_the_max_or_the_mean_of_each_class_shots():
    sim = torch.tensor([[4.0, -2.0, 1.0, 1.0]])  # one query, two shots of class 0 then two of class 1
    y = torch.tensor([0, 0, 1, 1])
    assert class_scores(sim, y, 2, "max").tolist() == [[4.0, 1.0]]
    assert class_scores(sim, y, 2, "mean_logit").tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="aggregate must be"):
        class_scores(sim, y, 2, "median")


def test_both_rules_in_one_pass_equal_two_evaluations_and_the_record(tmp_path):
    paths = reproduce("smoke", out_dir=tmp_path, test_episodes=4, steps=2, progress=False)
    path = next(p for p in paths if p.stem.startswith("siamese_omniglot_5w5s"))
    row = sa.score_rules(path)
    assert row["reproduces_record"] is True and row["record_rule"] == "max"
    learner = load(path)
    learner.aggregate = "mean_logit"  # the independent reference: the learner's own predict through evaluate
    ref = evaluate(learner, fixed_test_sampler(5, 5, 15, "vinyals/test", learner.device, False,
                                               learner.encoder.image_size), 4, seed=EVAL_SEED)
    assert row["rules"]["mean_logit"]["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    assert row["mean_logit_minus_max"]["accuracy"] == pytest.approx(
        row["rules"]["mean_logit"]["accuracy"] - row["rules"]["max"]["accuracy"], abs=1e-6)
    assert sum(row["episodes_where"].values()) <= row["episodes"] == 4
