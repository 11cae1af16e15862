"""RL^2 training is a function of its config and seed alone: schedule on the update index (not the clock),
exact resume from a run directory, KL early stop and entropy floor, NaN guard. Tiny configs: seconds each.
(Training runs through mlcore.engine.fit; tests/test_rl2_engine.py checks it against the plain PPO loop.)"""
from __future__ import annotations

import copy
import types

import pytest
import torch

from mlcore import engine
from mlcore.engine import CHECKPOINT_NAME, NonFiniteLossError
from mlcore.rl import rl2
from mlcore.rl.envs import make_env
from mlcore.rl.rl2 import RL2Config, RL2Policy, ppo_update, rl2_schedule, rollout, train_rl2

SPEC = {"env": "bandit", "arms": 3, "pulls": 5}


def tiny(**kw) -> RL2Config:
    base = {"spec": SPEC, "hidden": 8, "updates": 6, "trials_per_update": 16, "epochs": 2, "minibatches": 2,
            "lr": 3e-3}
    return RL2Config(**{**base, **kw})


def no_clock(history: list[dict]) -> list[dict]:
    """The curve without what the wall clock writes into it."""
    return [{k: v for k, v in row.items() if k not in ("wall_s", "stopped")} for row in history]


def same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- (a) exact resume
@pytest.mark.parametrize("log_every, guards", [(1, {}), (4, {"target_kl": 2e-5, "entropy_floor": 1.0})],
                         ids=["every-update", "guards-firing"])
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, log_every, guards):
    k = 3
    cfg = lambda: tiny(updates=2 * k, **guards)
    ref, ref_curve = train_rl2(cfg(), seed=1, log_every=log_every)
    # "crash" after k updates (the checkpoint at update 2 is overwritten by the one at k, at the call's end)
    _, part = train_rl2(cfg(), seed=1, log_every=log_every, run_dir=tmp_path, checkpoint_every=2, stop_after=k)
    assert [r["update"] for r in part] == [r["update"] for r in ref_curve if r["update"] <= k]
    state = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert state["step"] == k and state["sampler"]["update"] == k
    torch.manual_seed(12345)  # whatever happened to the global RNG in between, the checkpoint restores it
    resumed, curve = train_rl2(cfg(), seed=1, log_every=log_every, run_dir=tmp_path, checkpoint_every=2)
    assert same_params(resumed, ref)
    assert no_clock(curve) == no_clock(ref_curve) and curve[-1]["update"] == 2 * k
    assert not same_params(resumed, RL2Policy(1, 3, 8))  # it trained
    if guards:  # the guard counters carried over the interruption (row 5 counts updates 1-5)
        assert curve[-1]["kl_stops"] > 0 and curve[-1]["floor_updates"] > 0
    # a finished run resumed again trains nothing and returns the same policy and curve
    again, curve2 = train_rl2(cfg(), seed=1, log_every=log_every, run_dir=tmp_path)
    assert same_params(again, ref) and curve2 == curve


# ----------------------------------------------------------------------------- (b) schedule vs clock
def test_schedule_is_a_function_of_the_update_index():
    cfg = tiny(updates=11, lr=1e-3, entropy=0.01, entropy_floor=0.2)
    first, mid, last = rl2_schedule(cfg, 0), rl2_schedule(cfg, 5), rl2_schedule(cfg, 10)
    assert first == pytest.approx({"lr": 1e-3, "entropy_coef": 0.01, "entropy_floor": 0.2})
    assert mid == pytest.approx({"lr": 0.55e-3, "entropy_coef": 0.005, "entropy_floor": 0.1})
    assert last == pytest.approx({"lr": 1e-4, "entropy_coef": 0.0, "entropy_floor": 0.0})


def _fake_clock(monkeypatch, seconds_per_call: float, first: float = 0.0):
    """Replace the clock fit's time limit reads: the first call returns ``first``, each later one
    ``seconds_per_call`` more (fit reads it once when it starts and once after every update)."""
    calls = []

    def now():
        calls.append(None)
        return first if len(calls) == 1 else first + seconds_per_call * (len(calls) - 1)

    monkeypatch.setattr(engine, "time", types.SimpleNamespace(time=now, perf_counter=lambda: 0.0))


def test_same_updates_same_run_on_a_fast_or_a_slow_machine(monkeypatch):
    ref, ref_curve = train_rl2(tiny(), seed=2, log_every=1)
    # a slow machine: every update takes 1/20 of the time limit, so it never stops. The old code annealed
    # over "whichever budget ends first" and would have decayed lr and entropy by the clock here.
    _fake_clock(monkeypatch, seconds_per_call=2.0)
    slow, slow_curve = train_rl2(tiny(time_limit_s=100.0), seed=2, log_every=1)
    assert no_clock(slow_curve) == no_clock(ref_curve) and same_params(slow, ref)
    assert all("stopped" not in r for r in slow_curve)
    assert [r["lr"] for r in slow_curve] == [round(rl2_schedule(tiny(), u)["lr"], 8) for u in range(6)]
    # a machine that runs out of time: it stops early, and what it did is the reference's first updates
    _fake_clock(monkeypatch, seconds_per_call=20.0)
    cut, cut_curve = train_rl2(tiny(time_limit_s=100.0), seed=2, log_every=1)
    n = len(cut_curve)
    assert 1 <= n < 6 and cut_curve[-1]["stopped"] == f"time_limit_s reached after {n} of 6 updates"
    assert no_clock(cut_curve) == no_clock(ref_curve[:n])
    partial, _ = train_rl2(tiny(), seed=2, log_every=1, stop_after=n)
    assert same_params(cut, partial)


def test_process_deadline_stops_without_changing_the_schedule():
    _, ref_curve = train_rl2(tiny(), seed=3, log_every=1)
    _, curve = train_rl2(tiny(), seed=3, log_every=1, deadline=0.0)  # long past: stop after the first update
    assert len(curve) == 1 and curve[0]["stopped"] == "time limit reached after 1 of 6 updates"
    assert no_clock(curve) == no_clock(ref_curve[:1])


# ----------------------------------------------------------------------------- (c) KL stop, entropy floor
def _rollout(policy, trials=32, seed=0):
    env = make_env(SPEC, trials, seed)
    return rollout(policy, env, torch.Generator().manual_seed(seed))


def test_kl_early_stop_ends_the_epochs():
    torch.manual_seed(0)
    policy = RL2Policy(1, 3, hidden=8)
    ro = _rollout(policy)
    stats = {}
    for target in (None, 1e-9):
        p = copy.deepcopy(policy)
        opt = torch.optim.Adam(p.parameters(), lr=0.05)
        cfg = tiny(epochs=4, minibatches=2, target_kl=target)
        stats[target] = ppo_update(p, opt, ro, cfg, 0.0, torch.Generator().manual_seed(0))
    assert stats[None]["ppo_steps"] == 8 and not stats[None]["kl_stopped"]
    # the first minibatch is scored by the rollout policy itself (KL 0); after one step the KL exceeds the target
    assert stats[1e-9]["ppo_steps"] == 1 and stats[1e-9]["kl_stopped"]
    assert stats[1e-9]["approx_kl"] > 0
    # the curve says when it happened
    _, curve = train_rl2(tiny(updates=2, target_kl=1e-9), seed=0, log_every=1)
    assert all(r["kl_stopped"] and r["ppo_steps"] == 1 and r["kl_stops"] == r["update"] for r in curve)
    _, curve = train_rl2(tiny(updates=2, target_kl=None), seed=0, log_every=1)
    assert all(not r["kl_stopped"] and r["ppo_steps"] == 4 and r["approx_kl"] >= 0 for r in curve)
    assert curve[-1]["kl_stops"] == 0


def test_entropy_floor_pushes_a_collapsed_policy_back_up():
    torch.manual_seed(0)
    policy = RL2Policy(1, 3, hidden=8)
    with torch.no_grad():
        policy.pi.bias.copy_(torch.tensor([6.0, 0.0, 0.0]))  # collapsed: arm 0 almost always
    ro = _rollout(policy)

    def entropy(p):
        with torch.no_grad():
            logp = torch.log_softmax(p(ro.inputs)[0], -1)
            return float(-(logp.exp() * logp).sum(-1).mean())

    h0, after = entropy(policy), {}
    for floor in (0.0, 1.0):
        p = copy.deepcopy(policy)
        opt = torch.optim.Adam(p.parameters(), lr=0.05)
        cfg = tiny(epochs=4, minibatches=2, entropy_floor_coef=1.0, target_kl=None)
        st = ppo_update(p, opt, ro, cfg, 0.0, torch.Generator().manual_seed(0), entropy_floor=floor)
        after[floor] = (entropy(p), st["floor_active"])
    assert h0 < 0.1
    assert after[0.0][1] == 0.0 and after[1.0][1] == 1.0  # the hinge acts on every minibatch below the floor
    assert after[1.0][0] > after[0.0][0] + 0.1 and after[1.0][0] > h0 + 0.1
    # through train_rl2: a floor at the uniform policy's entropy is active from the first update, and the
    # curve logs it (in nats) with the entropy
    _, curve = train_rl2(tiny(updates=2, entropy_floor=1.0), seed=0, log_every=1)
    assert curve[0]["floor_active"] == 1.0 and curve[0]["entropy_floor"] == pytest.approx(1.0986, abs=1e-4)
    assert curve[0]["floor_updates"] == 1
    assert curve[-1]["entropy_floor"] == 0.0 and "entropy" in curve[0]


# ----------------------------------------------------------------------------- (d) mismatched run dir
@pytest.mark.parametrize("change, match", [({"lr": 1e-2}, r"lr: 0\.003 -> 0\.01"),
                                           ({"updates": 7}, r"updates: 6 -> 7"),
                                           ({"seed": 9}, r"seed: 4 -> 9")])
def test_a_run_dir_of_another_config_is_refused(tmp_path, change, match):
    train_rl2(tiny(), seed=4, run_dir=tmp_path, stop_after=1)
    seed = change.pop("seed", 4)
    with pytest.raises(ValueError, match=match) as err:
        train_rl2(tiny(**change), seed=seed, run_dir=tmp_path)
    assert "\n" not in str(err.value) and "belongs to a different run" in str(err.value)


def test_a_resumed_run_may_change_only_its_time_limit(tmp_path):
    train_rl2(tiny(), seed=4, run_dir=tmp_path, stop_after=2)
    _, curve = train_rl2(tiny(time_limit_s=1e6), seed=4, log_every=1, run_dir=tmp_path)
    assert curve[-1]["update"] == 6


def test_bad_config_values_are_refused():
    for bad, match in (({"target_kl": 0.0}, "target_kl"), ({"entropy_floor": -1.0}, "entropy_floor"),
                       ({"updates": 0}, "updates"), ({"time_limit_s": -1.0}, "time_limit_s")):
        with pytest.raises(ValueError, match=match):
            train_rl2(tiny(**bad))


# ----------------------------------------------------------------------------- (e) NaN guard
def test_nan_loss_stops_naming_the_update_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    ref, ref_curve = train_rl2(tiny(), seed=5, log_every=1)
    real_gae, calls = rl2.gae, []

    def gae_nan_at_update_3(*args):
        calls.append(None)
        adv = real_gae(*args)
        return adv * float("nan") if len(calls) == 3 else adv

    monkeypatch.setattr(rl2, "gae", gae_nan_at_update_3)
    with pytest.raises(NonFiniteLossError, match=r"PPO loss is nan .* at step 3; .*last good checkpoint is "
                                                 r".*last\.pt \(step 2\)"):
        train_rl2(tiny(), seed=5, log_every=1, run_dir=tmp_path, checkpoint_every=1)
    state = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert state["step"] == 2
    # fixed (here: the fault removed), the same command resumes from the last good update to the same run
    monkeypatch.setattr(rl2, "gae", real_gae)
    resumed, curve = train_rl2(tiny(), seed=5, log_every=1, run_dir=tmp_path, checkpoint_every=1)
    assert same_params(resumed, ref) and no_clock(curve) == no_clock(ref_curve)


def test_non_finite_gradient_is_caught_before_the_step():
    torch.manual_seed(0)
    policy = RL2Policy(1, 3, hidden=8)
    ro = _rollout(policy)
    before = copy.deepcopy(policy)
    policy.v.weight.register_hook(lambda g: g * float("inf"))
    opt = torch.optim.Adam(policy.parameters(), lr=0.01)
    with pytest.raises(NonFiniteLossError, match="gradient norm"):
        ppo_update(policy, opt, ro, tiny(), 0.0, torch.Generator().manual_seed(0))
    assert same_params(policy, before)  # nothing was stepped
