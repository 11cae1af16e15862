"""benchmarks/matching_ablation.py: each variant changes only what it names; collect pairs it with the recipe's record."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mlcore.memory.matching import MatchingNet
from mlcore.runs import build_recipe

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "matching_ablation.py"
_spec = importlib.util.spec_from_file_location("matching_ablation", _path)
ma = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ma)


@pytest.mark.parametrize("variant", sorted(ma.VARIANTS))
def test_a_variant_is_the_recipe_with_its_overrides_and_the_tests_setting(variant):
    ways, shots, overrides, baseline = ma.VARIANTS[variant]
    recipe = MatchingNet.recipe(ways, shots, "full").to_dict()
    _, ablated = build_recipe("matching", ways, shots, "full", overrides)
    assert all(recipe[k] != v for k, v in overrides.items())  # every override changes something
    assert (ablated.test_ways, ablated.test_shots) == (ways, shots) and ablated.steps == ma.STEPS
    assert baseline == f"matching_omniglot_{ways}w{shots}s"
    if "model" in overrides:  # a model override keeps every other model field as the recipe has it
        assert set(overrides["model"]) == set(recipe["model"])
        assert {k for k, v in overrides["model"].items() if v != recipe["model"][k]} == {"scale"}


def test_collect_pairs_each_variant_with_the_recipes_record(tmp_path):
    rec = {"config": {"recipe": {"steps": 3000}, "time_limited": {"planned_steps": 5000}}, "accuracy": 0.9,
           "ci95": 0.003, "episodes": 1000, "metrics": {"train_curve": [{"step": 3000, "acc": 0.95}]},
           "train_wall_s": 900.0, "git_commit": "abc", "hardware": {"cpu_threads": 1}, "created": "2026-11-30"}
    (tmp_path / "matching_ablation").mkdir()
    (tmp_path / "matching_ablation" / "matching_ablation_train_60way_20w1s.json").write_text(json.dumps(rec))
    out = tmp_path / "out.json"
    row = ma.collect(tmp_path, out)["variants"]["train_60way_20w1s"]
    assert json.loads(out.read_text())["variants"] == {"train_60way_20w1s": row}
    assert (row["steps"], row["planned_steps"], row["test"]) == (3000, 5000, "20w1s")
    recipe_record = json.loads((ma.ROOT / "results" / "matching_omniglot_20w1s.json").read_text())
    assert row["recipe_record"]["accuracy"] == recipe_record["accuracy"]
    with pytest.raises(SystemExit, match="run them first"):
        ma.collect(tmp_path / "empty", tmp_path / "none.json")


def test_run_refuses_a_non_positive_time_limit(capsys):
    with pytest.raises(SystemExit):
        ma.main(["run", "scale_1_20w1s", "--hours", "-1"])
    assert "--hours must be > 0" in capsys.readouterr().err
