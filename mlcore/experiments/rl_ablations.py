"""Study: RL^2's design decisions, tested by taking them away (chapter 10, question 2).

    python -m mlcore reproduce --only rl2_ablations_bandit_n10_k5

RL^2 (Duan et al. 2016) makes two choices that turn a recurrent policy into a learning algorithm:

1. **the reward is an input**: the GRU sees ``(state, previous action, previous reward, done)``; without
   the reward it cannot tell a good arm from a bad one, so it cannot learn *within* a task;
2. **the hidden state is carried across the episodes of a trial** and reset only between trials; reset
   at every episode boundary and nothing learnt in episode 1 survives into episode 2.

:class:`AblatedRL2Policy` is ``mlcore.rl.rl2.RL2Policy`` with either choice switched off;
:func:`run_ablations` trains the full agent and each ablation with the *same* trainer
(``mlcore.rl.rl2.train_rl2``, PPO + GAE) and budget, scores every agent on the *same* evaluation
trials (``mlcore.rl.rl2.evaluate_rl2``, seed ``EVAL_SEED``) and reports per-trial paired
differences with 95 % CIs; it also scores the trained full agent with each choice taken away at
test time only. :func:`test_time_ablation` does the latter for a trained RL^2 record (no training).

What is recorded: ``rl2_ablations_<setting>`` (per variant: mean total reward with 95 % CI,
training seconds and learning curve; paired differences to the full agent, retrained and at test
time). ``reproduce_ablations`` has the registry's ``fn`` signature.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import budget as budget_mod
from ..results import mean_ci95, record_dir, run_record, save_record
from ..rl.envs import check_spec, make_env, spec_name
from ..rl.rl2 import RL2Config, RL2Policy, evaluate_rl2, train_rl2
from .rl2_records import EVAL_SEED, load_rl2, rl2_config

#: variant name -> (reward input?, hidden state carried across episodes?)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "RL2 (full)": (True, True),
    "no reward input": (False, True),
    "hidden reset every episode": (True, False),
}


class AblatedRL2Policy(RL2Policy):
    """An RL^2 GRU policy with the reward input and/or the cross-episode memory removed.

    * ``reward_input=False`` zeroes the previous-reward entry of every input vector (the input keeps
      its size, so the network is otherwise identical);
    * ``carry_hidden=False`` zeroes the hidden state whenever the input's "previous step ended an
      episode" flag is set, i.e. at every episode boundary inside the trial. The mask is applied inside
      :meth:`forward`, so rollouts (one step at a time) and PPO's re-reading of whole trials agree.
    """

    def __init__(self, num_states: int, num_actions: int, hidden: int = 256, reward_input: bool = True,
                 carry_hidden: bool = True):
        super().__init__(num_states, num_actions, hidden)
        self.reward_input, self.carry_hidden = bool(reward_input), bool(carry_hidden)

    def config(self) -> dict:
        return {**super().config(), "reward_input": self.reward_input, "carry_hidden": self.carry_hidden}

    def encode(self, state, prev_action, prev_reward, prev_done):
        x = super().encode(state, prev_action, prev_reward, prev_done)
        if not self.reward_input:
            x = x.clone()
            x[:, self.num_states + self.num_actions] = 0.0  # the reward column
        return x

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None):
        if self.carry_hidden:
            return super().forward(inputs, hidden)
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"inputs must be (trials, T, {self.input_size}), got {tuple(inputs.shape)}")
        if hidden is None:
            hidden = self.initial_state(inputs.shape[0], inputs.device)
        outs = []
        for t in range(inputs.shape[1]):
            keep = 1.0 - inputs[:, t, -1]  # last input entry: the previous step ended an episode
            hidden = hidden * keep[None, :, None]
            out, hidden = self.gru(inputs[:, t:t + 1], hidden)
            outs.append(out)
        out = torch.cat(outs, 1)
        return self.pi(out), self.v(out)[..., 0], hidden


#: PPO updates per variant at the full budget: the full RL^2 recipe of chapter 6 reached 6.5 on 10-pull, 5-arm
#: bandits within ~60 updates on one CPU thread (rl2_bandit_n10_k5 learning curve), i.e. it has learnt to
#: explore by then, which is what an ablation needs (against an agent still playing randomly it says nothing)
FULL_UPDATES = 60


def ablation_config(spec: dict, budget: str | None = None) -> RL2Config:
    """One PPO budget for every variant: chapter 6's full RL^2 recipe, cut to a fixed number of updates."""
    spec = check_spec(spec)
    budget = budget_mod.current_budget(budget)
    scale = 0.1 if spec["env"] == "mdp" else 1.0
    if budget == "smoke":
        return RL2Config(spec=spec, hidden=32, updates=4, trials_per_update=64, lr=3e-3, epochs=4,
                         minibatches=2, reward_scale=scale)
    cfg = rl2_config(spec, "full")
    # a fixed update count, not chapter 6's wall-clock limit, so every variant gets the same training
    cfg.updates, cfg.time_limit_s = FULL_UPDATES, None
    return cfg


def run_ablations(spec: dict, budget: str | None = None, seed: int = 0, trials: int | None = None,
                  variants: dict[str, tuple[bool, bool]] | None = None, device="cpu") -> dict:
    """Train and score every variant; returns ``{variant: {...}, "paired": {variant: diff vs full}}``."""
    spec = check_spec(spec)
    budget = budget_mod.current_budget(budget)
    cfg = ablation_config(spec, budget)
    trials = trials or budget_mod.pick(budget, smoke=200, full=1000)
    variants = variants or VARIANTS
    probe = make_env(spec, 1, 0)
    out: dict = {"variants": {}, "paired_vs_full": {}}
    totals = {}
    for name, (reward_input, carry_hidden) in variants.items():
        torch.manual_seed(seed)  # a study seeds its whole run; every variant starts from the same init
        policy = AblatedRL2Policy(probe.num_states, probe.num_actions, cfg.hidden, reward_input, carry_hidden)
        t0 = time.perf_counter()
        policy, history = train_rl2(cfg, seed=seed, device=device, log_every=max(1, cfg.updates // 10),
                                    policy=policy)
        wall = time.perf_counter() - t0
        res = evaluate_rl2(policy, spec, trials, EVAL_SEED, device, keep_actions=True)
        totals[name] = res["totals"].double()
        out["variants"][name] = {"reward_input": reward_input, "carry_hidden": carry_hidden,
                                 "mean_total_reward": res["mean_total_reward"], "ci95": res["ci95"],
                                 "train_wall_s": round(wall, 2),
                                 "learning_curve": [{k: h[k] for k in ("update", "mean_total_reward")}
                                                    for h in history]}
        if reward_input and carry_hidden:
            full_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    ref = next(iter(variants))
    for name in variants:
        if name == ref:
            continue
        mean, ci = mean_ci95(totals[name] - totals[ref])  # same tasks, same noise: paired per trial
        out["paired_vs_full"][name] = {"mean_difference": mean, "ci95": ci}
    # test-time ablation: the trained full agent's weights, with the reward or the memory taken away
    # when it is scored (what the learned algorithm relies on, free of retraining noise)
    out["test_time"] = {}
    for name, (reward_input, carry_hidden) in variants.items():
        if name == ref or VARIANTS.get(ref) != (True, True):
            continue
        policy = AblatedRL2Policy(probe.num_states, probe.num_actions, cfg.hidden, reward_input, carry_hidden)
        policy.load_state_dict(full_state)
        res = evaluate_rl2(policy, spec, trials, EVAL_SEED, device, keep_actions=True)
        mean, ci = mean_ci95(res["totals"].double() - totals[ref])
        out["test_time"][name] = {"mean_total_reward": res["mean_total_reward"], "ci95": res["ci95"],
                                  "paired_vs_full": {"mean_difference": mean, "ci95": ci}}
    out["config"] = cfg.to_dict()
    out["trials"] = trials
    return out


def test_time_ablation(record_path, trials: int = 1000, seed: int = EVAL_SEED, device="cpu") -> dict:
    """Score a trained RL^2 record's agent intact and with each ablation applied at test time only.

    The weights are the record's (``mlcore.experiments.rl2_records.load_rl2``); every variant sees the same
    ``trials`` tasks drawn with ``seed``, so differences to the intact agent are paired per trial.
    Cheap (no training): this is what the chapter runs live.
    """
    trained, rec = load_rl2(record_path, device)
    spec = rec.config["spec"]
    totals, out = {}, {"record": rec.name, "trials": trials, "seed": seed, "variants": {}}
    for name, (reward_input, carry_hidden) in VARIANTS.items():
        policy = AblatedRL2Policy(trained.num_states, trained.num_actions, trained.hidden, reward_input, carry_hidden)
        policy.load_state_dict(trained.state_dict())
        res = evaluate_rl2(policy.to(device), spec, trials, seed, device, keep_actions=True)
        totals[name] = res["totals"].double()
        out["variants"][name] = {"mean_total_reward": res["mean_total_reward"], "ci95": res["ci95"]}
    ref = next(iter(VARIANTS))
    for name in VARIANTS:
        if name != ref:
            mean, ci = mean_ci95(totals[name] - totals[ref])
            out["variants"][name]["paired_vs_full"] = {"mean_difference": mean, "ci95": ci}
    return out


def reproduce_ablations(budget: str | None = None, seed: int = 0, out_dir=None, device=None,
                        spec: dict | None = None, **_ignored) -> list[Path]:
    """Registry entry point: write ``rl2_ablations_<setting>[_<budget>].json`` (CPU; ~15 min at full budget)."""
    budget = budget_mod.current_budget(budget)
    spec = check_spec(spec or {"env": "bandit", "arms": 5, "pulls": 10})
    t0 = time.perf_counter()
    res = run_ablations(spec, budget, seed, device="cpu")
    name = f"rl2_ablations_{spec_name(spec)}" + ("" if budget == "full" else f"_{budget}")
    out = record_dir(out_dir, budget)
    rec = run_record(
        t0, name=name, method="rl2_ablation", dataset="bernoulli_bandit" if spec["env"] == "bandit"
        else "tabular_mdp", episodes=res["trials"], seed=seed,
        config={"spec": spec, "rl2": res["config"], "eval_seed": EVAL_SEED,
                "variants": {k: list(v) for k, v in VARIANTS.items()}},
        metrics={"variants": res["variants"], "paired_vs_full": res["paired_vs_full"],
                 "test_time": res["test_time"]},
        train_wall_s=sum(v["train_wall_s"] for v in res["variants"].values()),
        budget=budget)
    return [save_record(rec, out)]


__all__ = [
    "VARIANTS",
    "AblatedRL2Policy",
    "ablation_config",
    "reproduce_ablations",
    "run_ablations",
    "test_time_ablation",
]
