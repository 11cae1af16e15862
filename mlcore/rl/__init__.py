"""RL-based meta-learning (Duan et al. 2016, RL^2): task distributions, classic baselines, a GRU agent.

Modules: ``envs`` (vectorised Bernoulli bandits and tabular MDPs), ``baselines`` (random, greedy,
epsilon-greedy, UCB1, Thompson, Gittins, PSRL, BEB), ``rl2`` (GRU policy + PPO/GAE), ``experiments``
(records), ``gym_envs`` (Gymnasium wrappers; imports gymnasium, so it is never imported from here).
This file stays free of heavy imports: only the registry's dicts.
"""
LEARNERS: dict[str, str] = {}  # RL^2 is not a few-shot classifier; its records come from REPRODUCTIONS

_SETTINGS = {
    "bandit_n10_k5": {"env": "bandit", "arms": 5, "pulls": 10},
    "bandit_n10_k10": {"env": "bandit", "arms": 10, "pulls": 10},
    "bandit_n100_k5": {"env": "bandit", "arms": 5, "pulls": 100},
    "bandit_n100_k10": {"env": "bandit", "arms": 10, "pulls": 100},
    "mdp_n10": {"env": "mdp", "episodes": 10},
    "mdp_n25": {"env": "mdp", "episodes": 25},
}

REPRODUCTIONS: dict[str, dict] = {}
for _key, _spec in _SETTINGS.items():
    REPRODUCTIONS[f"rl2_{_key}"] = {"fn": "mlcore.rl.experiments:reproduce_rl2", "spec": _spec, "method": "rl2",
                                    "eval_fn": "mlcore.rl.experiments:eval_record"}
    REPRODUCTIONS[f"baselines_{_key}"] = {"fn": "mlcore.rl.experiments:reproduce_baselines", "spec": _spec}
del _key, _spec
# chapter 10's question 2: RL^2 retrained without the reward input / without memory across episodes
REPRODUCTIONS["rl2_ablations_bandit_n10_k5"] = {"fn": "mlcore.rl_ablations:reproduce_ablations",
                                                "spec": _SETTINGS["bandit_n10_k5"]}
