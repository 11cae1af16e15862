"""RL^2 (Duan et al. 2016): a recurrent policy whose hidden state is the learning algorithm.

The agent sees, at each step, ``(state one-hot, previous action one-hot, previous reward, previous done)``
and keeps one GRU hidden state for a whole *trial* (``n`` episodes on one sampled task); the hidden
state is reset to zero only when a new trial (a new task) starts. The outer objective is the expected
total reward of the trial,

    R_meta(theta) = E_{task} [ sum_i sum_t r_i(s_t, a_t) ],

summed over the episodes ``i`` of the trial and their steps ``t`` -- :func:`rollout` returns exactly this
sum per trial as ``total``. It is maximised with PPO (Schulman et al. 2017) and GAE (Schulman et al.
2016; discount 0.99, lambda 0.3 as in the paper, which used TRPO) where one PPO "episode" is one
*trial*: returns and advantages flow across episode boundaries, so exploring in episode 1 is credited
with the reward it buys in episode 5.

Everything is batched: one update rolls out ``trials_per_update`` trials in lockstep (one GRU step for
all of them per time step), then re-runs the GRU over the stored input sequences for the PPO epochs.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..results import mean_ci95
from .baselines import POLICY_SEED_OFFSET
from .envs import TrialEnv, check_spec, cpu_threads, make_env


class RL2Policy(nn.Module):
    """GRU policy + value head over the RL^2 input ``(s, a_prev, r_prev, done_prev)``."""

    def __init__(self, num_states: int, num_actions: int, hidden: int = 256):
        super().__init__()
        if num_states < 1 or num_actions < 2 or hidden < 1:
            raise ValueError(f"need num_states >= 1, num_actions >= 2, hidden >= 1; got "
                             f"{num_states}, {num_actions}, {hidden}")
        self.num_states, self.num_actions, self.hidden = num_states, num_actions, hidden
        self.gru = nn.GRU(self.input_size, hidden, batch_first=True)
        self.pi = nn.Linear(hidden, num_actions)
        self.v = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.pi.weight, gain=0.01)  # near-uniform initial policy
        nn.init.zeros_(self.pi.bias)

    @property
    def input_size(self) -> int:
        return self.num_states + self.num_actions + 2

    def config(self) -> dict:
        return {"num_states": self.num_states, "num_actions": self.num_actions, "hidden": self.hidden}

    def initial_state(self, trials: int, device=None) -> torch.Tensor:
        """The hidden state at the start of a trial: zeros, so nothing leaks from one task to the next."""
        return torch.zeros(1, trials, self.hidden, device=device)

    def encode(self, state: torch.Tensor, prev_action: torch.Tensor | None, prev_reward: torch.Tensor,
               prev_done: torch.Tensor) -> torch.Tensor:
        """Build the (trials, input_size) input; ``prev_action=None`` at the first step of a trial."""
        s = F.one_hot(state, self.num_states).float()
        if prev_action is None:
            a = torch.zeros(state.shape[0], self.num_actions, device=state.device)
        else:
            a = F.one_hot(prev_action, self.num_actions).float()
        return torch.cat([s, a, prev_reward.float()[:, None], prev_done.float()[:, None]], -1)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None):
        """``inputs`` (trials, T, input_size) -> logits (trials, T, A), values (trials, T), last hidden."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"inputs must be (trials, T, {self.input_size}), got {tuple(inputs.shape)}")
        if hidden is None:
            hidden = self.initial_state(inputs.shape[0], inputs.device)
        out, hidden = self.gru(inputs, hidden)
        return self.pi(out), self.v(out)[..., 0], hidden


@dataclass
class Rollout:
    inputs: torch.Tensor    # (B, T, D) what the GRU saw
    actions: torch.Tensor   # (B, T)
    logp: torch.Tensor      # (B, T) log-prob of the actions under the rollout policy
    values: torch.Tensor    # (B, T)
    rewards: torch.Tensor   # (B, T)

    @property
    def total(self) -> torch.Tensor:
        """The meta-reward of each trial, R_meta = sum over episodes i and steps t of r_i(s_t, a_t)."""
        return self.rewards.sum(1)


@torch.no_grad()
def rollout(policy: RL2Policy, env: TrialEnv, generator: torch.Generator, greedy: bool = False) -> Rollout:
    """Play every trial of ``env`` once with the hidden state carried across all its episodes."""
    B, T = env.trials, env.steps_per_trial
    state = env.reset()
    hidden = policy.initial_state(B, env.device)  # reset between trials
    prev_a, prev_r = None, torch.zeros(B, device=env.device)
    prev_d = torch.zeros(B, dtype=torch.bool, device=env.device)
    inputs, actions, logps, values, rewards = [], [], [], [], []
    for _ in range(T):
        x = policy.encode(state, prev_a, prev_r, prev_d)
        logits, value, hidden = policy(x[:, None], hidden)  # hidden carried across episodes of the trial
        logits, value = logits[:, 0], value[:, 0]
        if greedy:
            action = logits.argmax(-1)
        else:
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        step = env.step(action)
        inputs.append(x)
        actions.append(action)
        logps.append(torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0])
        values.append(value)
        rewards.append(step.reward)
        state, prev_a, prev_r, prev_d = step.state, action, step.reward, step.episode_done
    st = lambda xs: torch.stack(xs, 1)
    return Rollout(st(inputs), st(actions), st(logps), st(values), st(rewards))


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates over whole trials (B, T); the value after the trial's end is 0."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
        next_value = values[:, t]
    return adv


@dataclass
class RL2Config:
    """Hyper-parameters of one RL^2 training run (the record stores them)."""

    spec: dict
    hidden: int = 256
    updates: int = 300
    trials_per_update: int = 1000
    lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.3
    clip: float = 0.2
    epochs: int = 4
    minibatches: int = 4
    entropy: float = 0.01      # linearly decayed to 0 over training
    value_coef: float = 0.5
    grad_clip: float = 1.0
    reward_scale: float = 1.0  # rewards are multiplied by this inside the loss only (MDP returns are large)
    time_limit_s: float | None = None  # stop early (and say so in the curve) after this much training time
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def ppo_update(policy: RL2Policy, optimizer: torch.optim.Optimizer, ro: Rollout, cfg: RL2Config,
               entropy_coef: float, generator: torch.Generator) -> dict:
    """PPO-clip epochs over minibatches of whole trials; the GRU re-reads each trial from a zero state."""
    rewards = ro.rewards * cfg.reward_scale
    adv = gae(rewards, ro.values, cfg.gamma, cfg.gae_lambda)
    returns = adv + ro.values
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    B = ro.actions.shape[0]
    mb = max(1, B // cfg.minibatches)
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0}
    n = 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(B, generator=generator, device=generator.device).to(ro.actions.device)
        for i in range(0, B, mb):
            idx = perm[i:i + mb]
            logits, values, _ = policy(ro.inputs[idx])
            logp_all = torch.log_softmax(logits, -1)
            logp = logp_all.gather(-1, ro.actions[idx, :, None])[..., 0]
            ratio = torch.exp(logp - ro.logp[idx])
            a = adv[idx]
            pg = -torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
            vl = F.mse_loss(values, returns[idx])
            ent = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = pg + cfg.value_coef * vl - entropy_coef * ent
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            optimizer.step()
            with torch.no_grad():
                stats["approx_kl"] += float((ro.logp[idx] - logp).mean())
            stats["policy_loss"] += float(pg.detach())
            stats["value_loss"] += float(vl.detach())
            stats["entropy"] += float(ent.detach())
            n += 1
    return {k: v / n for k, v in stats.items()}


def train_rl2(cfg: RL2Config, seed: int = 0, device=None, log_every: int = 10, progress: bool = False,
              policy: RL2Policy | None = None) -> tuple[RL2Policy, list[dict]]:
    """Meta-train an RL^2 policy on ``cfg.spec``'s task distribution. Every update draws
    ``cfg.trials_per_update`` fresh tasks (training seeds ``seed * 1_000_003 + update``, disjoint from
    the evaluation seeds the book uses). Returns the policy and a learning curve."""
    spec = check_spec(cfg.spec)
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    probe = make_env(spec, 1, 0, "cpu")
    if policy is None:
        policy = RL2Policy(probe.num_states, probe.num_actions, cfg.hidden)
    policy = policy.to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    history = []
    with cpu_threads(device):
        _train_loop(policy, opt, cfg, spec, seed, device, g, history, log_every, progress)
    return policy, history


def _train_loop(policy, opt, cfg, spec, seed, device, g, history, log_every, progress) -> None:
    t0 = time.perf_counter()
    for u in range(cfg.updates):
        env = make_env(spec, cfg.trials_per_update, 10_000_000 + seed * 1_000_003 + u, device)
        ro = rollout(policy, env, g)
        frac = u / max(1, cfg.updates - 1)
        if cfg.time_limit_s is not None:
            # anneal over whichever budget ends first, so a run stopped by its clock has finished its schedule
            clock = (time.perf_counter() - t0) / cfg.time_limit_s if cfg.time_limit_s > 0 else 1.0
            frac = min(1.0, max(frac, clock))
        for pg in opt.param_groups:  # linear learning-rate decay to 10 %
            pg["lr"] = cfg.lr * (1.0 - 0.9 * frac)
        st = ppo_update(policy, opt, ro, cfg, cfg.entropy * (1.0 - frac), g)
        if u % log_every == 0 or u == cfg.updates - 1:
            row = {"update": u + 1, "trials_seen": (u + 1) * cfg.trials_per_update,
                   "mean_total_reward": float(ro.total.mean()), "wall_s": round(time.perf_counter() - t0, 2),
                   **{k: round(v, 5) for k, v in st.items()}}
            history.append(row)
            if progress:
                print(json.dumps({"rl2_train": row}), flush=True)
        if cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s and u < cfg.updates - 1:
            history.append({"update": u + 1, "trials_seen": (u + 1) * cfg.trials_per_update,
                            "mean_total_reward": float(ro.total.mean()),
                            "wall_s": round(time.perf_counter() - t0, 2), "stopped": "time_limit_s reached"})
            break


@torch.no_grad()
def evaluate_rl2(policy: RL2Policy, spec: dict, trials: int = 1000, seed: int = 2016, device=None,
                 greedy: bool = False, keep_actions: bool = False) -> dict:
    """Mean total reward per trial and its 95 % CI on ``trials`` tasks drawn with ``seed`` (the same tasks
    and noise the baselines see with :func:`mlcore.rl.baselines.run_policy`)."""
    device = torch.device(device or next(policy.parameters()).device)
    policy = policy.to(device).eval()
    env = make_env(spec, trials, seed, device)
    g = torch.Generator(device=device)
    g.manual_seed(seed + POLICY_SEED_OFFSET)  # never the env's stream
    with cpu_threads(device):
        ro = rollout(policy, env, g, greedy=greedy)
    mean, ci = mean_ci95(ro.total.cpu())
    out = {"mean_total_reward": mean, "ci95": ci, "trials": trials, "seed": seed,
           "policy": "argmax" if greedy else "sample"}
    if keep_actions:
        out["actions"] = ro.actions.cpu()
        out["totals"] = ro.total.cpu()
    return out


def cpu_seconds_per_update(spec: dict, trials: int, hidden: int = 256, repeats: int = 2) -> float:
    """Wall seconds of one RL^2 update on the CPU (rollout + PPO epochs) for ``trials`` trials."""
    cfg = RL2Config(spec=spec, hidden=hidden, updates=repeats, trials_per_update=trials)
    t = time.perf_counter()
    train_rl2(cfg, seed=0, device="cpu", log_every=10**9)
    return (time.perf_counter() - t) / repeats


__all__ = [
    "RL2Config",
    "RL2Policy",
    "Rollout",
    "cpu_seconds_per_update",
    "evaluate_rl2",
    "gae",
    "ppo_update",
    "rollout",
    "train_rl2",
]
