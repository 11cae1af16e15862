"""RL-based meta-learning (Duan et al. 2016, RL^2): task distributions, classic baselines, a GRU agent.

Modules: ``envs`` (vectorised Bernoulli bandits and tabular MDPs), ``baselines`` (random, greedy,
epsilon-greedy, UCB1, Thompson, Gittins, PSRL, BEB), ``rl2`` (GRU policy + PPO/GAE), ``gym_envs``
(Gymnasium wrappers; imports gymnasium, so it is never imported from here). The records are written by
the study :mod:`mlcore.experiments.rl2_records`.
This file stays free of heavy imports: only plain dicts (the settings, the paper's numbers, the registry's).
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

#: Duan et al. (2016), Tables 1 and 2, mean total reward per trial over 1,000 trials, per setting and policy
PAPER: dict[str, dict[str, float]] = {
    "bandit_n10_k5": {"random": 5.0, "Gittins": 6.6, "Thompson": 5.7, "OTS": 6.5, "UCB1": 6.7,
                      "epsilon-greedy": 6.6, "greedy": 6.6, "RL2": 6.7},
    "bandit_n10_k10": {"random": 5.0, "Gittins": 6.6, "Thompson": 5.5, "OTS": 6.2, "UCB1": 6.7,
                       "epsilon-greedy": 6.6, "greedy": 6.6, "RL2": 6.7},
    "bandit_n10_k50": {"random": 5.1, "Gittins": 6.5, "Thompson": 5.2, "OTS": 5.5, "UCB1": 6.6,
                       "epsilon-greedy": 6.5, "greedy": 6.5, "RL2": 6.8},
    "bandit_n100_k5": {"random": 49.9, "Gittins": 78.3, "Thompson": 74.7, "OTS": 77.9, "UCB1": 78.0,
                       "epsilon-greedy": 75.4, "greedy": 74.8, "RL2": 78.7},
    "bandit_n100_k10": {"random": 49.9, "Gittins": 82.8, "Thompson": 76.7, "OTS": 81.4, "UCB1": 82.4,
                        "epsilon-greedy": 77.4, "greedy": 77.1, "RL2": 83.5},
    "bandit_n100_k50": {"random": 49.8, "Gittins": 85.2, "Thompson": 64.5, "OTS": 67.7, "UCB1": 84.3,
                        "epsilon-greedy": 78.3, "greedy": 78.0, "RL2": 84.9},
    "mdp_n10": {"random": 100.1, "PSRL": 138.1, "OPSRL": 144.1, "UCRL2": 146.6, "BEB": 150.2,
                "epsilon-greedy": 132.8, "greedy": 134.8, "RL2": 156.2},
    "mdp_n25": {"random": 250.2, "PSRL": 408.8, "OPSRL": 425.2, "UCRL2": 424.1, "BEB": 427.8,
                "epsilon-greedy": 377.3, "greedy": 368.8, "RL2": 445.7},
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
