"""benchmarks/time_to_accuracy.py: stops at the target on validation checks, keeps its timeline, rejects bad input."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mlcore.runs import parse_recipe_sets

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"
_spec = importlib.util.spec_from_file_location("time_to_accuracy", _path)
tta = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tta)


def test_stops_at_the_first_check_that_reaches_the_target(tmp_path, monkeypatch):
    out = tmp_path / "tta.json"
    scored, real_evaluate = [], tta.evaluate

    def evaluate(learner, sampler, episodes, seed):
        scored.append((sampler.classes.name, episodes, seed))
        return real_evaluate(learner, sampler, episodes, seed=seed)

    monkeypatch.setattr(tta, "evaluate", evaluate)
    # ProtoNet's smoke recipe: 5w1s checks sit near 55-60 % after 5 steps (chance 20 %), so 0.4 is met at once
    rep = tta.time_to_accuracy("protonet", 5, 1, 0.4, "cpu", check_every=5, check_episodes=20, max_minutes=1,
                               overrides={"meta_batch": 2}, final_episodes=40, out=out, budget="smoke")
    assert rep["reached"] and len(rep["timeline"]) == 1 and rep["steps"] == 5
    assert rep["recipe"]["meta_batch"] == 2
    assert rep["timeline"][0]["check_accuracy"] >= 0.4
    # the stop is decided on validation classes (not trained on); only the final verdict sees the test episodes
    assert scored == [("vinyals/val", 20, tta.CHECK_SEED), ("vinyals/test", 40, tta.EVAL_SEED)]
    assert rep["check_split"] == "vinyals/val" and rep["recipe"]["train_split"] == "vinyals/train"
    assert json.loads(out.read_text()) == json.loads(json.dumps(rep))
    assert [p.name for p in tmp_path.iterdir()] == ["tta.json"]
    assert rep["precision"] == "float32" and rep["channels_last"]  # the recipe's memory format, as in training


def test_bfloat16_training_is_recorded_and_scored_in_float32(monkeypatch):
    dtypes = []
    real_evaluate = tta.evaluate

    def evaluate(learner, sampler, episodes, seed):
        dtypes.append(torch.is_autocast_enabled("cpu"))
        return real_evaluate(learner, sampler, episodes, seed=seed)

    monkeypatch.setattr(tta, "evaluate", evaluate)
    rep = tta.time_to_accuracy("protonet", 5, 1, 0.4, "cpu", check_every=5, check_episodes=20, max_minutes=1,
                               final_episodes=20, budget="smoke", precision="bfloat16")
    assert rep["precision"] == "bfloat16" and rep["timeline"][0]["check_accuracy"] >= 0.4
    assert dtypes == [False, False]


def test_gives_up_after_max_minutes_and_says_the_target_was_not_met(tmp_path):
    # a budget of 0.6 s and checks every 10,000 steps: training stops at the budget, inside the first chunk,
    # and the one check and the test score come after it (a smoke ProtoNet step takes ~10-50 ms)
    rep = tta.time_to_accuracy("protonet", 5, 1, 1.0, "cpu", check_every=10_000, check_episodes=5,
                               max_minutes=0.01, final_episodes=20, budget="smoke")
    assert not rep["reached"] and not rep["target_met"]
    assert 1 <= rep["steps"] < 10_000 and len(rep["timeline"]) == 1


def test_the_lower_ci_rule_waits_until_the_whole_interval_clears_the_target(monkeypatch):
    # checks planted at 0.5 +- 0.2, then 0.8 +- 0.1: the mean rule stops at the first, the lower-CI rule at the second
    planted = iter([{"accuracy": 0.5, "ci95": 0.2}, {"accuracy": 0.8, "ci95": 0.1}, {"accuracy": 0.9, "ci95": 0.0}])
    real_evaluate = tta.evaluate

    def evaluate(learner, sampler, episodes, seed):
        return next(planted) if sampler.classes.name == "vinyals/val" else real_evaluate(learner, sampler, episodes,
                                                                                          seed=seed)

    monkeypatch.setattr(tta, "evaluate", evaluate)
    rep = tta.time_to_accuracy("protonet", 5, 1, 0.45, "cpu", check_every=1, check_episodes=5, max_minutes=1,
                               final_episodes=5, budget="smoke", stop_on="lower-ci")
    assert rep["steps"] == 2 and rep["stop_on"] == "lower-ci"
    assert [t["check_ci95"] for t in rep["timeline"]] == [0.2, 0.1]


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match=r"stop_on must be one of \('mean', 'lower-ci'\), got 'median'"):
        tta.time_to_accuracy("protonet", 5, 1, 0.5, "cpu", budget="smoke", stop_on="median")
    with pytest.raises(ValueError, match="target is an accuracy"):
        tta.time_to_accuracy("protonet", 5, 1, 98.5, "cpu", budget="smoke")
    with pytest.raises(ValueError, match="key=value"):
        parse_recipe_sets(["meta_batch"])
    with pytest.raises(ValueError, match="shares .* characters with the check split 'vinyals/val'"):
        tta.time_to_accuracy("protonet", 5, 1, 0.5, "cpu", overrides={"train_split": "vinyals/trainval"},
                             budget="smoke")
    with pytest.raises(ValueError, match="unknown recipe field"):
        tta.time_to_accuracy("protonet", 5, 1, 0.5, "cpu", overrides={"inner_lr": 0.1}, budget="smoke")
    assert parse_recipe_sets(["meta_batch=16", "train_split=vinyals/train"]) == {
        "meta_batch": 16, "train_split": "vinyals/train"}


def test_cuda_graph_is_refused_where_it_cannot_replay_the_recipe():
    from mlcore.learner import Recipe
    from mlcore.memory.protonet import ProtoNet
    from mlcore.optimization.maml import MAML

    with pytest.raises(ValueError, match="--cuda-graph needs a CUDA device, got cpu"):
        tta.time_to_accuracy("maml", 5, 1, 0.5, "cpu", budget="smoke", cuda_graph=True)
    with pytest.raises(ValueError, match="captures a float32 meta-step; drop --precision"):
        tta.time_to_accuracy("maml", 5, 1, 0.5, "cpu", budget="smoke", cuda_graph=True, precision="bfloat16")
    with pytest.raises(ValueError, match="captures a MAML-family meta-step; ProtoNet is not one"):
        tta.graphed_chunks(ProtoNet(), None, Recipe(ways=5, shots=1))
    with pytest.raises(ValueError, match="schedule or gradient clipping would be skipped"):
        tta.graphed_chunks(MAML(ways=5), None, Recipe(ways=5, shots=1, grad_clip=1.0))
