"""Chapter 10's RL^2 ablations (mlcore.experiments.rl_ablations): the two design decisions of RL^2 taken away.

The reward input and the hidden state carried across the episodes of a trial; no training (< 5 s).
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from mlcore.experiments.rl_ablations import VARIANTS, AblatedRL2Policy
from mlcore.rl.baselines import RandomPolicy, run_policy
from mlcore.rl.envs import make_env
from mlcore.rl.rl2 import RL2Policy, evaluate_rl2


def _inputs(policy, T=6, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = []
    for t in range(T):
        state = torch.zeros(B, dtype=torch.long)
        a = None if t == 0 else torch.randint(policy.num_actions, (B,), generator=g)
        r = torch.rand(B, generator=g)
        done = torch.full((B,), t > 0 and t % 2 == 0)  # an episode ends every 2 steps
        xs.append(policy.encode(state, a, r, done))
    return torch.stack(xs, 1)


def test_full_variant_is_the_plain_rl2_policy():
    torch.manual_seed(0)
    a = AblatedRL2Policy(1, 4, 8, True, True)
    b = RL2Policy(1, 4, 8)
    b.load_state_dict(a.state_dict())
    x = _inputs(a)
    la, va, _ = a(x)
    lb, vb, _ = b(x)
    assert torch.allclose(la, lb) and torch.allclose(va, vb)
    assert VARIANTS["RL2 (full)"] == (True, True)


def test_no_reward_input_makes_the_policy_blind_to_rewards():
    torch.manual_seed(0)
    p = AblatedRL2Policy(1, 4, 8, reward_input=False)
    s, a, d = torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.bool)
    x1, x2 = p.encode(s, a, torch.zeros(3), d), p.encode(s, a, torch.ones(3) * 5, d)
    assert torch.equal(x1, x2) and x1.shape[-1] == p.input_size
    full = AblatedRL2Policy(1, 4, 8)
    assert not torch.equal(full.encode(s, a, torch.zeros(3), d), full.encode(s, a, torch.ones(3), d))


def test_hidden_reset_forgets_exactly_at_episode_boundaries():
    torch.manual_seed(0)
    p = AblatedRL2Policy(1, 4, 8, carry_hidden=False)
    x = _inputs(p, T=6)
    logits, _, _ = p(x)
    # stepping one input at a time with the same module (as a rollout does) gives the same outputs
    h = None
    for t in range(6):
        lt, _, h = p(x[:, t:t + 1], h)
        assert torch.allclose(lt[:, 0], logits[:, t], atol=1e-6)
    # after the reset at t = 2, outputs depend only on inputs from t = 2 on
    x2 = x.clone()
    x2[:, :2] = torch.randn_like(x2[:, :2])
    l2, _, _ = p(x2)
    assert torch.allclose(l2[:, 2:], logits[:, 2:], atol=1e-6)
    assert not torch.allclose(l2[:, :2], logits[:, :2])
    # the carried variant does remember the earlier inputs
    c = AblatedRL2Policy(1, 4, 8, carry_hidden=True)
    c.load_state_dict(p.state_dict())
    assert not torch.allclose(c(x2)[0][:, 2:], c(x)[0][:, 2:])


def win_stay_policy(arms: int) -> RL2Policy:
    """A hand-set RL^2 GRU that plays win-stay, lose-shift on a bandit, from its current input alone.

    Hidden unit j = tanh(10 (a_prev == j) + 10 r_prev - 15): about +1 after a win on arm j, about -1
    otherwise; the logits are 10 h. After a win it repeats the arm (probability 1 - 1e-8), after a loss
    (or at the first pull) it picks uniformly. The update gate is shut (z = sigmoid(-50)) and no hidden
    weight is set, so the hidden state carries nothing from one step to the next.
    """
    p = RL2Policy(1, arms, hidden=arms)
    with torch.no_grad():
        for t in (p.gru.weight_ih_l0, p.gru.weight_hh_l0, p.gru.bias_ih_l0, p.gru.bias_hh_l0, p.pi.weight,
                  p.pi.bias):
            t.zero_()
        H, reward_col = arms, 1 + arms  # inputs: state one-hot (1), previous action one-hot, reward, done
        p.gru.bias_ih_l0[H:2 * H] = -50.0                     # update gate z: shut
        w_n = p.gru.weight_ih_l0[2 * H:]                      # candidate n
        w_n[:, 1:1 + arms] = 10.0 * torch.eye(arms)
        w_n[:, reward_col] = 10.0
        p.gru.bias_ih_l0[2 * H:] = -15.0
        p.pi.weight.copy_(10.0 * torch.eye(arms))
    return p


def win_stay_reference(arms: int, pulls: int, trials: int = 200_000, seed: int = 0) -> float:
    """The rule simulated directly (numpy, no network): expected total reward per trial, arm means U[0, 1]."""
    rng = np.random.default_rng(seed)
    p = rng.random((trials, arms))
    a = rng.integers(0, arms, trials)
    total = np.zeros(trials)
    for _ in range(pulls):
        won = rng.random(trials) < p[np.arange(trials), a]
        total += won
        a = np.where(won, a, rng.integers(0, arms, trials))
    return float(total.mean())


def test_test_time_ablation_pairs_variants_on_the_same_trials(tmp_path):
    """A planted agent with known ablation effects, saved as an RL^2 record and ablated at test time.

    The win-stay agent scores what the rule scores when simulated directly (about 5.96 per 10-pull trial of
    3 arms); it needs the reward (without it, it plays uniformly: 0.5 per pull, 5.0 per trial, as the random
    baseline does) and no memory (a hidden state reset at every pull, i.e. every bandit episode, changes
    nothing: the same actions on every trial, a difference of exactly 0). Each paired difference and its CI
    equal the ones computed by hand from the per-trial totals of the same trials.
    """
    from mlcore.experiments.rl_ablations import test_time_ablation
    from mlcore.results import Record, atomic_torch_save, save_record

    spec, trials, seed = {"env": "bandit", "arms": 3, "pulls": 10}, 1000, 5
    policy = win_stay_policy(3)
    atomic_torch_save(policy.state_dict(), tmp_path / "agent.pt")
    save_record(Record(name="agent", method="rl2", dataset="bernoulli_bandit", checkpoint="agent.pt",
                       config={"spec": spec, "model": policy.config()}), tmp_path)
    out = test_time_ablation(tmp_path / "agent.json", trials=trials, seed=seed)
    assert set(out["variants"]) == set(VARIANTS) and out["trials"] == trials

    totals = {}
    for name, (reward_input, carry_hidden) in VARIANTS.items():
        p = AblatedRL2Policy(1, 3, 3, reward_input, carry_hidden)
        p.load_state_dict(policy.state_dict())
        totals[name] = evaluate_rl2(p, spec, trials, seed, keep_actions=True)["totals"].double().tolist()
    full = out["variants"]["RL2 (full)"]
    assert full["mean_total_reward"] == evaluate_rl2(policy, spec, trials, seed)["mean_total_reward"]
    for name, v in out["variants"].items():
        if name == "RL2 (full)":
            continue
        diff = [a - b for a, b in zip(totals[name], totals["RL2 (full)"])]
        d = v["paired_vs_full"]
        assert d["mean_difference"] == pytest.approx(statistics.fmean(diff), rel=1e-9, abs=1e-12)
        assert d["ci95"] == pytest.approx(1.96 * statistics.stdev(diff) / math.sqrt(trials), rel=1e-9, abs=1e-12)

    # the planted effects: the rule's own score; the reward is used, the memory is not
    expected = win_stay_reference(3, 10)
    assert abs(full["mean_total_reward"] - expected) < 2 * full["ci95"], (full, expected)
    reset = out["variants"]["hidden reset every episode"]
    assert reset["paired_vs_full"] == {"mean_difference": 0.0, "ci95": 0.0}
    assert reset["mean_total_reward"] == full["mean_total_reward"]
    blind = out["variants"]["no reward input"]
    rand = float(run_policy(RandomPolicy(), make_env(spec, trials, seed))["total"].double().mean())
    assert abs(blind["mean_total_reward"] - 5.0) < 2 * blind["ci95"], blind  # uniform play: 10 x E[p] = 5
    assert abs(blind["mean_total_reward"] - rand) < 2 * blind["ci95"], (blind, rand)
    d = blind["paired_vs_full"]
    assert d["mean_difference"] + d["ci95"] < 0, (d, full)  # taking the reward away costs, clearly
