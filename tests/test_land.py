"""benchmarks/land.py: a finished run's record and weights land together; an early-stopped one only when asked."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "land.py"
_spec = importlib.util.spec_from_file_location("land", _path)
land_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(land_mod)


def _run_output(folder: Path, name: str, config: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"name": name, "config": config}))
    (folder / f"{name}.pt").write_bytes(b"weights")


def test_land_copies_record_and_weights(tmp_path):
    src, results = tmp_path / "records", tmp_path / "results"
    src.mkdir(), results.mkdir()
    _run_output(src, "matching_omniglot_5w1s", {"recipe": {"steps": 10}})
    landed = land_mod.land(src, ["matching_omniglot_5w1s"], results)
    assert landed == [results / "matching_omniglot_5w1s.json"]
    assert (results / "matching_omniglot_5w1s.pt").read_bytes() == b"weights"
    assert not list(results.glob("*.landing"))


def test_land_refuses_an_early_stopped_run_and_a_missing_checkpoint(tmp_path):
    src, results = tmp_path / "records", tmp_path / "results"
    src.mkdir(), results.mkdir()
    _run_output(src, "a", {"time_limited": {"planned_steps": 10, "steps_run": 4, "reason": "stop requested"}})
    with pytest.raises(SystemExit, match="stopped early"):
        land_mod.land(src, ["a"], results)
    assert not list(results.iterdir())  # nothing half-landed
    assert land_mod.land(src, ["a"], results, interim=True) == [results / "a.json"]
    (src / "b.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"no b\.pt"):
        land_mod.land(src, ["b"], results)


def test_only_omniglot_few_shot_records_are_scored_under_the_protocols(tmp_path):
    rl2 = tmp_path / "rl2_mdp_n10.json"
    rl2.write_text(json.dumps({"name": "rl2_mdp_n10", "dataset": "tabular_mdp", "ways": None, "shots": None}))
    fewshot = tmp_path / "maml_omniglot_5w1s.json"
    fewshot.write_text(json.dumps({"name": "maml_omniglot_5w1s", "dataset": "omniglot", "ways": 5, "shots": 1}))
    assert not land_mod.has_protocols(rl2)
    assert land_mod.has_protocols(fewshot)
