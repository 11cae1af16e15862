"""RL-based meta-learning (Duan et al. 2016, RL^2): task distributions, classic baselines, a GRU agent.

Modules: ``envs`` (vectorised Bernoulli bandits and tabular MDPs), ``baselines`` (random, greedy,
epsilon-greedy, UCB1, Thompson, Gittins, PSRL, BEB), ``rl2`` (GRU policy + PPO/GAE), ``gym_envs``
(Gymnasium wrappers; imports gymnasium, so it is never imported from here). The records are written by
the study :mod:`mlcore.experiments.rl2_records`.
This file stays free of heavy imports: only plain dicts (the settings, the registry's). The paper's numbers
are reporting, not family code: :data:`mlcore.reference.RL2_PAPER`.
"""
LEARNERS: dict[str, str] = {}  # RL^2 is not a few-shot classifier; its records come from REPRODUCTIONS

#: the book's meta-RL settings (Duan et al. 2016), for the registry's records and the study's tables
SPECS: dict[str, dict] = {
    "bandit_n10_k5": {"env": "bandit", "arms": 5, "pulls": 10},
    "bandit_n10_k10": {"env": "bandit", "arms": 10, "pulls": 10},
    "bandit_n100_k5": {"env": "bandit", "arms": 5, "pulls": 100},
    "bandit_n100_k10": {"env": "bandit", "arms": 10, "pulls": 100},
    "mdp_n10": {"env": "mdp", "episodes": 10},
    "mdp_n25": {"env": "mdp", "episodes": 25},
}

REPRODUCTIONS: dict[str, dict] = {}
_STUDY = "mlcore.experiments.rl2_records"
for _key, _spec in SPECS.items():
    REPRODUCTIONS[f"rl2_{_key}"] = {"fn": f"{_STUDY}:reproduce_rl2", "spec": _spec, "method": "rl2",
                                    "eval_fn": f"{_STUDY}:eval_record"}
    REPRODUCTIONS[f"baselines_{_key}"] = {"fn": f"{_STUDY}:reproduce_baselines", "spec": _spec}
del _key, _spec, _STUDY
# chapter 10's question 2: RL^2 retrained without the reward input / without memory across episodes
REPRODUCTIONS["rl2_ablations_bandit_n10_k5"] = {
    "fn": "mlcore.experiments.rl_ablations:reproduce_ablations", "spec": SPECS["bandit_n10_k5"]}
