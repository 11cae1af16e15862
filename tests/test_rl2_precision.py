"""benchmarks/rl2_precision.py: both precisions timed on the same rollout, the drift measured, bad input refused."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "rl2_precision.py"
_spec = importlib.util.spec_from_file_location("rl2_precision", _path)
rp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rp)


def test_times_both_precisions_and_measures_the_drift_of_a_trained_policy(tmp_path):
    out = tmp_path / "rl2_precision.json"
    rp.main(["--settings", "bandit_n10_k5", "--rounds", "1", "--steps", "1", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["record"] == "rl2_bandit_n10_k5" and row["trials"] == 2000 and row["steps_per_trial"] == 10
    assert set(row["ppo_step_s"]) == {"float32", "bfloat16"} and all(s > 0 for s in row["ppo_step_s"].values())
    assert row["speedup"] == row["ppo_step_s"]["float32"] / row["ppo_step_s"]["bfloat16"]
    # a float32 sequence pass replays the rollout's log-probabilities; bfloat16 moves them a little
    assert row["fp32_sequence_vs_rollout_max_abs_logp_diff"] < 1e-4
    assert 0 < row["mean_abs_logp_diff"] < 0.01 and 0 < row["approx_kl"] < 1e-3


def test_refuses_zero_rounds():
    with pytest.raises(SystemExit, match="--rounds and --steps must be >= 1, got 0 and 4"):
        rp.main(["--rounds", "0"])
