"""benchmarks/fresh_episodes.py: a record re-scored on its own episodes is itself; on fresh ones it is checked."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "fresh_episodes.py"
_spec = importlib.util.spec_from_file_location("fresh_episodes", _path)
fresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fresh)


def test_rescoring_on_the_records_own_trials_reproduces_it_and_fresh_trials_are_compared():
    from mlcore.experiments.rl2_records import EVAL_SEED

    same = fresh.rescore("rl2_bandit_n10_k5", EVAL_SEED)
    # the committed weights on the trials the record was scored on: the record's number, to the last digit
    assert same["fresh"] == same["reference"] and same["difference"] == 0.0 and same["within"]
    other = fresh.rescore("rl2_bandit_n10_k5", 123, episodes=200)
    assert other["fresh"] != other["reference"] and other["metric"] == "mean_total_reward"
    assert other["difference_ci95"] == pytest.approx((other["reference_ci95"] ** 2 + other["fresh_ci95"] ** 2) ** 0.5)
    assert other["within"] == (abs(other["difference"]) <= other["difference_ci95"])


def test_a_partial_rerun_keeps_the_other_records_rows(tmp_path):
    out = tmp_path / "fresh.json"
    out.write_text('{"benchmark": "fresh_episodes", "git_commit": "abc", "hardware": {"cpu_threads": 1},'
                   ' "rows": [{"record": "reptile_omniglot_5w1s", "fresh": 0.95}]}')
    fresh.main(["rl2_bandit_n10_k5", "--episodes", "50", "--spread", "0", "--out", str(out)])
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["record"] for r in rows] == ["reptile_omniglot_5w1s", "rl2_bandit_n10_k5"]
    assert rows[0]["fresh"] == 0.95 and rows[0]["git_commit"] == "abc"  # kept, with the commit that scored it
    assert rows[1]["git_commit"] and rows[1]["hardware"]["cpu_threads"] == 1
