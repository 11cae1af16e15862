"""Tests of mlcore.rl: task distributions, baselines (incl. Gittins vs exact Bayes-optimal DP), RL^2, records."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mlcore.rl.baselines import (
    PSRL,
    UCB1,
    EpsilonGreedy,
    Gittins,
    Greedy,
    MDPGreedy,
    RandomPolicy,
    Thompson,
    bayes_optimal_value,
    gittins_table,
    index_policy_value,
    plan,
    run_policy,
)
from mlcore.rl.envs import BernoulliBandits, TabularMDPs, make_env
from mlcore.rl.rl2 import RL2Config, RL2Policy, evaluate_rl2, gae, rollout, train_rl2


# ----------------------------------------------------------------------------- environments
def test_bandit_arm_means_and_rewards_follow_the_distribution():
    env = BernoulliBandits(arms=3, pulls=50, trials=20000, seed=0)
    m = env.means
    assert m.min() >= 0 and m.max() <= 1
    assert abs(float(m.mean()) - 0.5) < 0.01 and abs(float(m.var()) - 1 / 12) < 0.005  # U[0, 1]
    # pulling arm 1 every step: each trial's success frequency estimates its own p
    rewards = torch.stack([env.step(torch.ones(20000, dtype=torch.long)).reward for _ in range(50)], 1)
    assert set(rewards.unique().tolist()) <= {0.0, 1.0}
    err = rewards.mean(1) - m[:, 1]
    assert abs(float(err.mean())) < 0.003           # unbiased
    assert float(err.var()) < float((m[:, 1] * (1 - m[:, 1])).mean() / 50) * 1.1  # binomial spread


def test_mdp_parameters_rewards_and_transitions():
    env = TabularMDPs(episodes=2, trials=20000, seed=1)
    P = env.transitions
    assert P.shape == (20000, 10, 5, 10) and bool((P >= 0).all())
    assert torch.allclose(P.sum(-1), torch.ones(20000, 10, 5), atol=1e-5)  # rows sum to 1
    assert abs(float(P.mean()) - 0.1) < 1e-3 and abs(float(P[..., 0].var()) - 9 / 1100) < 5e-4  # flat Dirichlet
    mu = env.reward_means
    assert abs(float(mu.mean()) - 1.0) < 0.01 and abs(float(mu.std()) - 1.0) < 0.01  # mu ~ N(1, 1)
    s0 = env.state.clone()
    a = torch.full((20000,), 3, dtype=torch.long)
    step = env.step(a)
    noise = step.reward - env.expected_reward(s0, a)
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - 1.0) < 0.03  # N(mu, 1)
    onehot = torch.nn.functional.one_hot(step.state, 10).float()
    assert (onehot - P[:, 0, 3]).mean(0).abs().max() < 0.01  # next states drawn from P(.|0, 3)


def test_mdp_episode_structure_and_trial_end():
    env = TabularMDPs(episodes=2, trials=5, seed=0, horizon=3)
    assert env.steps_per_trial == 6 and bool((env.state == 0).all())
    flags = []
    for _ in range(6):
        st = env.step(torch.zeros(5, dtype=torch.long))
        flags.append((bool(st.episode_done[0]), bool(st.trial_done[0])))
        if st.episode_done[0]:
            assert bool((st.state == 0).all())  # every episode starts in state 0
    assert flags == [(False, False), (False, False), (True, False), (False, False), (False, False), (True, True)]
    with pytest.raises(ValueError, match="trial is over"):
        env.step(torch.zeros(5, dtype=torch.long))


def test_seeding_is_deterministic():
    a = run_policy(Thompson(), make_env({"env": "bandit", "arms": 5, "pulls": 20}, 100, seed=3))["total"]
    b = run_policy(Thompson(), make_env({"env": "bandit", "arms": 5, "pulls": 20}, 100, seed=3))["total"]
    c = run_policy(Thompson(), make_env({"env": "bandit", "arms": 5, "pulls": 20}, 100, seed=4))["total"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    m1 = make_env({"env": "mdp", "episodes": 2}, 10, seed=7)
    m2 = make_env({"env": "mdp", "episodes": 2}, 10, seed=7)
    assert torch.equal(m1.transitions, m2.transitions) and torch.equal(m1.reward_means, m2.reward_means)
    assert torch.equal(run_policy(PSRL(), m1)["total"], run_policy(PSRL(), m2)["total"])


@pytest.mark.parametrize("kwargs, match", [
    ({"arms": 1, "pulls": 10}, "arms >= 2"),
    ({"arms": 5, "pulls": 0}, "pulls"),
    ({"arms": 2.5, "pulls": 10}, "arms >= 2"),
])
def test_bad_bandit_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BernoulliBandits(trials=4, **kwargs)


def test_bad_actions_and_specs():
    env = BernoulliBandits(arms=3, pulls=5, trials=4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.step(torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        env.step(torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        env.step(torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        env.step([0, 0, 0, 0])
    with pytest.raises(ValueError, match="episodes"):
        TabularMDPs(episodes=0, trials=2)
    with pytest.raises(ValueError, match="trials"):
        BernoulliBandits(arms=2, pulls=3, trials=0)
    with pytest.raises(ValueError, match="env 'bandit' or 'mdp'"):
        make_env({"env": "cartpole"}, 2)
    with pytest.raises(ValueError, match="bandit policy"):
        Greedy().begin(TabularMDPs(episodes=1, trials=2), torch.Generator())


# ----------------------------------------------------------------------------- baselines
def _clear_two_arm_bandit(trials=500, pulls=50):
    env = BernoulliBandits(arms=2, pulls=pulls, trials=trials, seed=0)
    env.means = torch.tensor([[0.1, 0.9]]).repeat(trials, 1)  # arm 1 clearly best
    return env


@pytest.mark.parametrize("policy", [Greedy(), EpsilonGreedy(0.05), UCB1(c=1.0), UCB1(c=0.2, prior=True),
                                    Thompson(), Gittins()], ids=lambda p: p.name)
def test_bandit_baselines_find_the_clearly_best_arm(policy):
    env = _clear_two_arm_bandit()
    res = run_policy(policy, env, keep_actions=True)
    frac_best = float((res["actions"] == 1).float().mean())
    assert frac_best > 0.85, f"{policy.name} pulled the best arm only {frac_best:.2f} of the time"
    assert float(res["total"].mean()) > 0.85 * 0.9 * 50


def test_random_policy_pulls_uniformly():
    res = run_policy(RandomPolicy(), _clear_two_arm_bandit(), keep_actions=True)
    assert abs(float((res["actions"] == 1).float().mean()) - 0.5) < 0.01
    assert abs(float(res["total"].mean()) - 25.0) < 1.0


def test_gittins_index_matches_gittins_table():
    # Gittins (1979) / Gittins, Glazebrook & Weber (2011) tables, Bernoulli arm with Beta(1, 1) prior
    g = gittins_table(0.9, 100)
    assert abs(float(g[0, 0]) - 0.7029) < 5e-4
    assert bool((g[1:20, 0] > g[:19, 0]).all()) and bool((g[0, 1:20] < g[0, :19]).all())  # monotone
    posterior_mean = (1 + torch.arange(20.0))[:, None] / (2 + torch.arange(20.0)[:, None] + torch.arange(20.0))
    assert bool((g[:20, :20] >= posterior_mean - 1e-3).all())  # index >= mean (exploration bonus)


@pytest.mark.parametrize("pulls", [4, 8])
def test_gittins_is_near_bayes_optimal_on_small_instances(pulls):
    """Exact expected reward under the prior, 2 arms: Bayes-optimal DP >= Gittins >= greedy, Gittins within 0.2 %."""
    best = bayes_optimal_value(pulls, arms=2)
    table = gittins_table(1 - 1 / pulls, 100)
    gittins = index_policy_value(lambda s, f: float(table[s, f]), pulls)
    greedy = index_policy_value(lambda s, f: (1 + s) / (2 + s + f), pulls)
    assert best + 1e-9 >= gittins >= greedy - 1e-9
    assert gittins >= 0.998 * best
    assert best > pulls / 2  # learning beats the prior mean
    # the vectorised policy on sampled bandits agrees with the exact expectation
    res = run_policy(Gittins(gamma=1 - 1 / pulls, depth=100),
                     make_env({"env": "bandit", "arms": 2, "pulls": pulls}, 40000, seed=5))["total"]
    assert abs(float(res.mean()) - gittins) < 4 * float(res.std()) / 200


def test_mdp_planning_and_baselines_on_a_known_mdp():
    env = TabularMDPs(episodes=20, trials=64, seed=0)
    env.reward_means = torch.full_like(env.reward_means, -1.0)
    env.reward_means[:, :, 2] = 3.0  # action 2 is best everywhere: optimum = 3 per step
    q = plan(env.reward_means, env.transitions, env.horizon)
    assert bool((q[0].argmax(-1) == 2).all()) and torch.allclose(q[0].max(-1).values, torch.full((64, 10), 30.0))
    rand = float(run_policy(RandomPolicy(), env)["total"].mean())
    assert abs(rand - 200 * (3 - 4) / 5) < 15  # random: mean reward (3 - 1 - 1 - 1 - 1) / 5 per step
    for policy in (MDPGreedy(), MDPGreedy(epsilon=0.05), MDPGreedy(bonus=0.5), PSRL()):
        res = run_policy(policy, env, keep_actions=True)
        last_episode = (res["actions"][:, -10:] == 2).float().mean()
        assert last_episode > 0.9, (policy.name, float(last_episode))  # converged to the optimal action
        assert float(res["total"].mean()) > 0.6 * 600, policy.name        # optimum: 3 x 200 steps


# ----------------------------------------------------------------------------- RL^2
def test_gae_limits():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[0.5, 0.5, 0.5]])
    assert torch.allclose(gae(r, torch.zeros_like(r), 1.0, 1.0), torch.tensor([[6.0, 5.0, 3.0]]))  # reward-to-go
    assert torch.allclose(gae(r, v, 0.9, 0.0), r + 0.9 * torch.tensor([[0.5, 0.5, 0.0]]) - v)      # TD residual


def test_gru_hidden_persists_across_episodes_and_resets_between_trials():
    env = make_env({"env": "mdp", "episodes": 3, "horizon": 2}, 6, seed=0)
    policy = RL2Policy(env.num_states, env.num_actions, hidden=32)
    g = torch.Generator().manual_seed(0)
    ro = rollout(policy, env, g)
    # the step-by-step rollout equals one pass over the whole trial from a zero state: no reset at episode ends
    logits, _, _ = policy(ro.inputs)
    assert torch.allclose(torch.log_softmax(logits, -1).gather(-1, ro.actions[..., None])[..., 0], ro.logp, atol=1e-5)
    done_col = env.num_states + env.num_actions + 1
    assert ro.inputs[:, [2, 4], done_col].eq(1).all() and ro.inputs[:, [1, 3, 5], done_col].eq(0).all()
    # a reward seen in episode 1 changes the action distribution in episode 3 (memory across episodes)
    x = ro.inputs.clone()
    x[:, 1, done_col - 1] += 5.0
    with torch.no_grad():
        assert (policy(x)[0][:, 5] - policy(ro.inputs)[0][:, 5]).abs().max() > 1e-4
    # a new trial starts from zeros: a second rollout on the same tasks and seeds repeats the first exactly
    env2 = make_env({"env": "mdp", "episodes": 3, "horizon": 2}, 6, seed=0)
    ro2 = rollout(policy, env2, torch.Generator().manual_seed(0))
    assert torch.equal(ro.actions, ro2.actions) and torch.allclose(ro.logp, ro2.logp)
    assert torch.equal(policy.initial_state(6), torch.zeros(1, 6, 32))


def test_policy_rejects_bad_inputs():
    policy = RL2Policy(1, 3, hidden=8)
    with pytest.raises(ValueError, match=r"\(trials, steps, 6\)"):
        policy(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="num_actions >= 2"):
        RL2Policy(1, 1)


def test_short_rl2_training_beats_random():
    """20 PPO updates of 256 trials (2-armed bandits, 10 pulls, GRU 64): random scores 5.0 on these trials;
    the trained agent must reach at least 5.4 (1,000 evaluation trials, CI about +-0.16)."""
    torch.manual_seed(0)
    spec = {"env": "bandit", "arms": 2, "pulls": 10}
    cfg = RL2Config(spec=spec, hidden=64, updates=20, trials_per_update=256, lr=3e-3, epochs=10, minibatches=4)
    policy, history = train_rl2(cfg, seed=0)
    res = evaluate_rl2(policy, spec, 1000, seed=2016)
    rand = float(run_policy(RandomPolicy(), make_env(spec, 1000, 2016))["total"].mean())
    assert res["mean_total_reward"] > rand + 0.4, (res, rand)
    assert history[-1]["update"] == 20


def test_bfloat16_ppo_passes_train_like_float32_and_see_the_rollout_policy():
    """``precision="bfloat16"`` (the PPO passes under autocast, rollouts in float32): on the first minibatch,
    before any step, a float32 pass sees exactly the rollout's policy and a bfloat16 pass sees it within a KL
    far below ``target_kl`` (0.02) but not zero (autocast is on); the short training run of the test above
    still beats random play by 0.4."""
    from mlcore.rl.rl2 import ppo_update

    spec = {"env": "bandit", "arms": 5, "pulls": 100}
    first_kl = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        cfg = RL2Config(spec=spec, hidden=64, trials_per_update=64, epochs=1, minibatches=1, precision=precision)
        policy = RL2Policy(1, 5, hidden=64)
        torch.nn.init.normal_(policy.pi.weight, std=0.5)  # logits of order 1, as a trained policy's
        ro = rollout(policy, make_env(spec, 64, 0), torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        stats = ppo_update(policy, opt, ro, cfg, entropy_coef=0.01, generator=torch.Generator().manual_seed(0))
        first_kl[precision] = stats["approx_kl"]
    assert first_kl["float32"] < 1e-9 < first_kl["bfloat16"] < 1e-4, first_kl

    spec = {"env": "bandit", "arms": 2, "pulls": 10}
    cfg = RL2Config(spec=spec, hidden=64, updates=20, trials_per_update=256, lr=3e-3, epochs=10, minibatches=4,
                    precision="bfloat16")
    policy, _ = train_rl2(cfg, seed=0)
    res = evaluate_rl2(policy, spec, 1000, seed=2016)
    rand = float(run_policy(RandomPolicy(), make_env(spec, 1000, 2016))["total"].mean())
    assert res["mean_total_reward"] > rand + 0.4, (res, rand)


def test_rl2_config_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match=r"RL2Config.precision must be one of \('float32', 'bfloat16'\), got 'float16'"):
        RL2Config(spec={"env": "bandit", "arms": 2, "pulls": 10}, precision="float16").check()


# ----------------------------------------------------------------------------- records, CLI, Gymnasium
def test_records_and_cli_eval(tmp_path):
    from mlcore.experiments.rl2_records import eval_record, reproduce_baselines, reproduce_rl2

    spec = {"env": "bandit", "arms": 3, "pulls": 5}
    (bpath,) = reproduce_baselines("smoke", 0, tmp_path, "cpu", spec)
    rec = json.loads(bpath.read_text())
    scores = rec["metrics"]["baselines"]
    assert set(scores) >= {"random", "Gittins", "Thompson", "UCB1", "greedy"}
    # known values: random play earns E[mu] = 0.5 per pull, 2.5 per trial; knowing the best arm earns
    # 5 E[max of 3 U(0, 1)] = 5 * 3/4 = 3.75; Gittins learns within the trial: well above random, below that
    rand, gittins = scores["random"], scores["Gittins"]
    assert abs(rand["mean_total_reward"] - 2.5) < 2 * rand["ci95"], rand
    assert rand["mean_total_reward"] + 0.25 < gittins["mean_total_reward"] < 3.75, (rand, gittins)
    (path,) = reproduce_rl2("smoke", 0, tmp_path, "cpu", spec,
                            overrides={"updates": 3, "hidden": 16, "time_limit_s": 0.0}, progress=False)
    rec = json.loads(path.read_text())
    assert rec["metrics"]["updates_done"] == 1  # the time limit stops training and the record says so
    assert rec["metrics"]["learning_curve"][-1]["stopped"] == "time_limit_s reached after 1 of 3 updates"
    assert rec["config"]["time_limited"] == {"planned_steps": 3, "steps_run": 1,
                                             "reason": "time_limit_s reached after 1 of 3 updates"}
    assert rec["method"] == "rl2" and (tmp_path / rec["checkpoint"]).exists()
    # re-scoring the saved agent on the record's own trials (same seed, same number) gives its number exactly,
    # and fresh trials give another draw of the same agent
    same = eval_record(path, episodes=rec["metrics"]["trials"], seed=rec["config"]["eval_seed"])
    m = rec["metrics"]
    assert (same["mean_total_reward"], same["ci95"]) == (m["mean_total_reward"], m["ci95"])
    again = eval_record(path, episodes=100, seed=123)
    assert again["trials"] == 100 and again["mean_total_reward"] != m["mean_total_reward"]
    out = subprocess.run([sys.executable, "-m", "mlcore", "eval", str(path), "--seed", "123", "--episodes", "50"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["record"] == rec["name"] and line["trials"] == 50


def test_reproduce_steps_sets_updates(tmp_path):
    from mlcore.experiments.rl2_records import SPECS, reproduce_rl2, rl2_config

    spec = {"env": "bandit", "arms": 3, "pulls": 5}
    # the full recipe is a number of updates, not a wall-clock budget
    assert all(rl2_config(s, "full").time_limit_s is None for s in SPECS.values())
    (path,) = reproduce_rl2("full", 0, tmp_path, "cpu", spec, steps=2, progress=False,
                            overrides={"trials_per_update": 16, "hidden": 8, "epochs": 1, "minibatches": 1})
    rec = json.loads(path.read_text())
    assert rec["config"]["rl2"]["updates"] == 2 and rec["config"]["rl2"]["time_limit_s"] is None
    assert rec["metrics"]["updates_done"] == 2 and "time_limited" not in rec["config"]
    with pytest.raises(ValueError, match="updates"):
        reproduce_rl2("full", 0, tmp_path, "cpu", spec, steps=0)


def test_deadline_stops_rl2_and_says_so(tmp_path):
    """`reproduce --time-limit` (a deadline argument) stops RL^2's training without touching its schedule: the
    config keeps the planned updates, the curve's rows carry the planned schedule's values, and the record
    says how many updates ran."""
    import time

    from mlcore.experiments.rl2_records import reproduce_rl2
    from mlcore.rl.rl2 import RL2Config, rl2_schedule

    spec = {"env": "bandit", "arms": 3, "pulls": 5}
    (path,) = reproduce_rl2("full", 0, tmp_path, "cpu", spec, steps=100000, progress=False,
                            overrides={"trials_per_update": 16, "hidden": 8, "epochs": 1, "minibatches": 1},
                            deadline=time.time() + 1.0)
    rec = json.loads(path.read_text())
    assert rec["config"]["rl2"]["time_limit_s"] is None and rec["config"]["rl2"]["updates"] == 100000
    done = rec["metrics"]["updates_done"]
    assert 0 < done < 100000
    assert rec["metrics"]["learning_curve"][-1]["stopped"].startswith("time limit reached")
    assert rec["config"]["time_limited"]["planned_steps"] == 100000 and rec["config"]["time_limited"]["steps_run"] == done
    cfg = RL2Config(**rec["config"]["rl2"])
    for row in rec["metrics"]["learning_curve"]:  # the schedule is cut, not compressed into the time left
        assert row["lr"] == round(rl2_schedule(cfg, row["update"] - 1)["lr"], 8)
    assert rec["metrics"]["learning_curve"][-1]["lr"] > 0.99 * cfg.lr


def test_rl_package_does_not_import_gymnasium():
    code = "import sys, mlcore.rl, mlcore.experiments.rl2_records, mlcore.rl.rl2; print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip() == "False", out.stderr


def test_gymnasium_api_and_checker():
    gymnasium = pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    import mlcore.rl.gym_envs  # noqa: F401  (registers the ids)

    for env_id, kw, steps in (("mlcore/BernoulliBandit-v0", {"arms": 4, "pulls": 7}, 7),
                              ("mlcore/TabularMDP-v0", {"episodes": 2}, 20)):
        env = gymnasium.make(env_id, **kw)
        check_env(env.unwrapped, skip_render_check=True)
        runs = []
        for _ in range(2):
            _obs, _info = env.reset(seed=11)
            total, n, term, trunc = 0.0, 0, False, False
            while not (term or trunc):
                obs, r, term, trunc, _info = env.step(n % env.action_space.n)
                assert env.observation_space.contains(obs)
                total, n = total + r, n + 1
            runs.append(total)
        assert n == steps and runs[0] == runs[1] and not trunc
        with pytest.raises(ValueError, match="action"):
            env.unwrapped.step(99)
    with pytest.raises(ValueError, match="arms >= 2"):
        gymnasium.make("mlcore/BernoulliBandit-v0", arms=1, pulls=3)


def test_rl2_paper_numbers_live_in_reporting_under_the_baselines_names():
    from mlcore import reference
    from mlcore.experiments import rl2_records
    from mlcore.rl import SPECS
    from mlcore.rl.baselines import bandit_baselines, mdp_baselines

    paper = reference.RL2_PAPER
    assert rl2_records.PAPER is paper and set(SPECS) <= set(paper)
    assert paper["bandit_n100_k10"] == {"random": 49.9, "Gittins": 82.8, "Thompson": 76.7, "OTS": 81.4,
                                        "UCB1": 82.4, "epsilon-greedy": 77.4, "greedy": 77.1, "RL2": 83.5}
    assert paper["mdp_n25"]["PSRL"] == reference.RL2_MDPS[25]["PSRL"] == 408.8
    ours = set(bandit_baselines(10)) | set(mdp_baselines(10))
    for row in paper.values():  # every column we also run is spelled as our policy is
        assert set(row) - ours <= {"OTS", "OPSRL", "UCRL2", "RL2"}


def test_full_recipe_stops_ppo_on_kl_except_for_long_bandit_trials():
    from mlcore.experiments.rl2_records import SPECS, rl2_config

    kl = {key: rl2_config(spec, "full").target_kl for key, spec in SPECS.items()}
    assert kl == {"bandit_n10_k5": 0.02, "bandit_n10_k10": 0.02, "bandit_n100_k5": None, "bandit_n100_k10": None,
                  "mdp_n10": 0.02, "mdp_n25": 0.02}


def test_full_recipe_doubles_the_entropy_floor_and_trains_in_bfloat16_only_for_100_pull_5_armed_bandits():
    from mlcore.experiments.rl2_records import SPECS, rl2_config

    full = {key: rl2_config(spec, "full") for key, spec in SPECS.items()}
    assert {key: c.entropy_floor for key, c in full.items()} == {
        key: (0.5 if key == "bandit_n100_k5" else 0.25) for key in SPECS}
    assert {key: c.precision for key, c in full.items()} == {
        key: ("bfloat16" if key == "bandit_n100_k5" else "float32") for key in SPECS}
    smoke = rl2_config(SPECS["bandit_n100_k5"], "smoke")  # the smoke pipeline check is unchanged
    assert (smoke.entropy_floor, smoke.precision) == (0.25, "float32")


def test_kept_rewards_are_each_step_of_the_trial_and_add_up_to_its_total():
    """The per-step rewards behind a within-trial analysis (chapter 6): same trials, same totals."""
    spec = {"env": "mdp", "episodes": 3}
    env = make_env(spec, 64, 7, "cpu")
    res = run_policy(RandomPolicy(), env, keep_actions=True)
    assert res["rewards"].shape == res["actions"].shape == (64, env.steps_per_trial)
    torch.testing.assert_close(res["rewards"].sum(1), res["total"])
    torch.manual_seed(0)
    policy = RL2Policy(10, 5, hidden=16)
    out = evaluate_rl2(policy, spec, 64, seed=7, device="cpu", keep_actions=True)
    assert out["rewards"].shape == out["actions"].shape == (64, env.steps_per_trial)
    torch.testing.assert_close(out["rewards"].sum(1), out["totals"])
    assert abs(float(out["totals"].mean()) - out["mean_total_reward"]) < 1e-4
