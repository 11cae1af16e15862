"""benchmarks/rl2_precision.py and rl2_precision_update.py: both precisions on the same rollout, timed, their drift
and one update traced; bad input refused."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def _benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rp, rpu = _benchmark("rl2_precision"), _benchmark("rl2_precision_update")


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


def test_one_update_per_precision_from_the_same_start_is_traced_step_by_step(tmp_path):
    out = tmp_path / "update.json"
    rpu.main(["bandit_n10_k5", "--out", str(out)])
    d = json.loads(out.read_text())
    runs = d["updates"]
    assert set(runs) == {"float32", "bfloat16"} and d["weights"] == "init" and d["kl_trials"] == 200
    for r in runs.values():
        # one trace row per optimiser step, KL from the start growing from zero over the update
        assert len(r["trace"]) == r["ppo_steps"] == 32 and not r["kl_stopped"]
        assert 0 < r["trace"][0]["kl"] < r["trace"][-1]["kl"] and r["trace"][-1]["weights_moved"] > 0
    # from the same weights and minibatches the two precisions take nearly the same first step
    assert d["first_minibatch_gradient"]["cosine"] > 0.99
    assert set(d["first_minibatch_gradient"]["per_tensor"]) >= {"gru.weight_hh_l0", "pi.weight", "v.weight"}


def test_exact_kl_is_zero_for_the_same_policy_and_positive_after_a_change():
    import torch

    from mlcore.rl.rl2 import RL2Policy

    torch.manual_seed(0)
    policy = RL2Policy(1, 3, 8)
    inputs = torch.randn(4, 5, policy.input_size)
    with torch.no_grad():
        old = torch.log_softmax(policy(inputs)[0], -1)
        assert rpu.exact_kl(old, policy, inputs) == pytest.approx(0.0, abs=1e-7)
        policy.pi.bias += torch.tensor([1.0, 0.0, -1.0])
    assert rpu.exact_kl(old, policy, inputs) > 1e-3


def test_an_update_from_a_training_checkpoint_runs_with_the_carried_and_a_fresh_adam(tmp_path):
    import math

    import torch

    from mlcore.experiments.rl2_records import SPECS, rl2_config
    from mlcore.rl.rl2 import train_rl2

    cfg = rl2_config(SPECS["bandit_n10_k5"], "full")
    train_rl2(cfg, seed=0, run_dir=tmp_path / "run", stop_after=2)
    out = tmp_path / "update.json"
    rpu.main(["bandit_n10_k5", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(out)])
    d = json.loads(out.read_text())
    runs = d["updates"]
    assert d["weights"] == "update2" and d["update"] == 2
    assert set(runs) == {f"{p}_{a}_adam" for p in ("float32", "bfloat16") for a in ("carried", "fresh")}
    model = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    n_weights = sum(v.numel() for k, v in model.items() if k.startswith("policy."))
    for key, r in runs.items():
        first = r["trace"][0]["weights_moved"]
        if key.endswith("_fresh_adam"):
            # a fresh Adam's first step moves every coordinate by at most the learning rate
            assert first <= d["lr"] * math.sqrt(n_weights) * 1.0001
            assert "first_step_by_rms_quartile" not in r
        else:  # the quartiles split the first step's length, nothing lost
            quartiles = r["first_step_by_rms_quartile"]
            assert len(quartiles) == 4 and math.sqrt(sum(q * q for q in quartiles)) == pytest.approx(first, rel=1e-4)
    assert d["checkpoint_config"]["spec"] == SPECS["bandit_n10_k5"] and d["checkpoint_config"]["updates"] == 200
    with pytest.raises(SystemExit, match=r"--checkpoint: .*last.pt trained .*, not bandit_n10_k10"):
        rpu.main(["bandit_n10_k10", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(out)])
    # the carried moments make a different first step than a fresh Adam's
    assert runs["float32_carried_adam"]["trace"][0]["weights_moved"] != pytest.approx(
        runs["float32_fresh_adam"]["trace"][0]["weights_moved"], rel=1e-3)


def test_refuses_a_missing_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="--checkpoint: no file at .*last.pt; pass a run directory's last.pt"):
        rpu.main(["bandit_n10_k5", "--checkpoint", str(tmp_path / "last.pt")])
