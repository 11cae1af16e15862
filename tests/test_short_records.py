"""benchmarks/short_records.py: lists missing reproductions and records trained short of their recipe."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mlcore.results import RESULTS_DIR

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "short_records.py"
_spec = importlib.util.spec_from_file_location("short_records", _path)
sr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sr)


def test_missing_cut_and_time_limited_records_are_listed(tmp_path):
    assert dict(sr.short_records(tmp_path))["maml_omniglot_5w5s"] == "no record"
    src = RESULTS_DIR / "maml_omniglot_5w5s.json"
    rec = json.loads(src.read_text())
    full_steps = sr.build_recipe("maml", 5, 5, "full")[1].steps
    rec["config"]["recipe"]["steps"] = full_steps  # as a run of the whole recipe records it: not listed
    (tmp_path / src.name).write_text(json.dumps(rec))
    assert "maml_omniglot_5w5s" not in dict(sr.short_records(tmp_path))
    rec["config"]["recipe"]["steps"] = 10  # as a `--steps 10` run would record it
    (tmp_path / src.name).write_text(json.dumps(rec))
    assert dict(sr.short_records(tmp_path))["maml_omniglot_5w5s"].startswith("--steps cut: 10 of ")
    rec["config"]["time_limited"] = {"planned_steps": 1500, "steps_run": 10, "reason": "deadline"}
    (tmp_path / src.name).write_text(json.dumps(rec))
    assert dict(sr.short_records(tmp_path))["maml_omniglot_5w5s"] == "time limit: 10 of 1500 steps"
