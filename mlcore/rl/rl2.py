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

Reproducibility. The learning rate, the entropy bonus and the entropy floor are annealed on the *update
index* only (:func:`rl2_schedule`), never on the wall clock, so ``updates=N`` is the same run on any
machine. A time limit (``RL2Config.time_limit_s`` or a ``deadline`` argument) only *stops* training: the
schedule is then cut where it was, and the curve's last row says so.

Training runs through :func:`mlcore.engine.fit`, the loop every method in the book trains with: one fit
step is one PPO update, which :class:`RL2Learner` does itself (fit's ``train_step`` hook) on the tasks
:class:`TaskSampler` draws. So the checkpoints are fit's: with ``run_dir`` the policy, optimiser, guard
counters, update index, generator and RNG states and curve are saved atomically every few updates, and
a second call with the same ``run_dir`` resumes the run exactly (a checkpoint of another config or seed
is refused). A non-finite loss or gradient stops training with :class:`mlcore.engine.NonFiniteLossError`
before the step is taken, naming the last good checkpoint, which is kept.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import PRECISIONS, NonFiniteLossError, fit
from ..learner import TrainableModule
from ..results import mean_ci95
from ..runtime import seeded_global_rng
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
        """``inputs`` (trials, nT, input_size) -> logits (trials, nT, A), values (trials, nT), last hidden.

        nT is the book's steps per trial: n episodes of T steps each."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"inputs must be (trials, steps, {self.input_size}), got {tuple(inputs.shape)}")
        if hidden is None:
            hidden = self.initial_state(inputs.shape[0], inputs.device)
        out, hidden = self.gru(inputs, hidden)
        return self.pi(out), self.v(out)[..., 0], hidden


@dataclass
class Rollout:
    inputs: torch.Tensor    # (B, nT, D) what the GRU saw
    actions: torch.Tensor   # (B, nT)
    logp: torch.Tensor      # (B, nT) log-prob of the actions under the rollout policy
    values: torch.Tensor    # (B, nT)
    rewards: torch.Tensor   # (B, nT)

    @property
    def total(self) -> torch.Tensor:
        """The meta-reward of each trial, R_meta = sum over episodes i and steps t of r_i(s_t, a_t)."""
        return self.rewards.sum(1)


@torch.no_grad()
def rollout(policy: RL2Policy, env: TrialEnv, generator: torch.Generator, greedy: bool = False) -> Rollout:
    """Play every trial of ``env`` once with the hidden state carried across all its episodes."""
    B, steps = env.trials, env.steps_per_trial
    state = env.reset()
    hidden = policy.initial_state(B, env.device)  # reset between trials
    prev_a, prev_r = None, torch.zeros(B, device=env.device)
    prev_d = torch.zeros(B, dtype=torch.bool, device=env.device)
    inputs, actions, logps, values, rewards = [], [], [], [], []
    for _ in range(steps):
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
    """Generalised advantage estimates over whole trials (B, nT); the value after the trial's end is 0."""
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
    """Hyper-parameters of one RL^2 training run (the record stores them).

    Schedules (:func:`rl2_schedule`) run over the *planned* ``updates``: the learning rate decays linearly
    to 10 %, the entropy bonus and the entropy floor to 0.

    Two guards against the policy collapsing before it has learnt to explore (the 10-episode MDP agent
    trained under the old wall-clock schedule went from entropy 1.60 to 0.36 nats in 37 updates, then its
    reward stayed flat):

    * ``entropy_floor`` -- a hinge penalty ``entropy_floor_coef * max(0, floor - H)`` on the mean policy
      entropy ``H`` of each minibatch, with ``floor = entropy_floor * log(num_actions)`` at the start of
      training, decayed to 0 with the schedule. Above the floor it does nothing; below it, it adds
      ``entropy_floor_coef`` (0.1) to the entropy coefficient (at most 0.01). It decays because a
      trained RL^2 agent *should* end almost deterministic (the 10-pull bandit agents finish at
      0.04 nats): only an *early* collapse is premature. ``0`` turns it off.
    * ``target_kl`` -- early stop of the PPO epochs (as in Stable-Baselines3 and CleanRL): before each
      minibatch step, the approximate KL(old || new) on that minibatch is measured, and once it exceeds
      ``target_kl`` the rest of this update's epochs are skipped. 8 epochs x 4 minibatches on one
      rollout can otherwise move the policy far past the region where the clipped objective is a good
      surrogate. ``None`` turns it off. (The reference runs' mean KL per update was 0.001-0.012, so
      it only cuts outlying updates.)

    ``precision="bfloat16"`` runs the PPO passes (the GRU re-reading the stored trials, forward and
    backward) under ``torch.autocast``: matrix products in bfloat16, weights, gradients, Adam's state and
    the losses in float32. Rollouts, and so the old log-probabilities and every evaluation, stay float32.
    Those passes are ~95 % of an update; on a CPU with bfloat16 instructions they run ~2.5x faster
    (``benchmarks/rl2_precision.py``). Checked on bandits only: bandit agents trained as in float32, but a
    25-episode MDP agent learned far less (278.7 against 308.6, one seed each; PPO's KL stop cut twice as many
    early updates), although its first update moves the policy alike in both (``rl2_precision_update.py``).

    ``time_limit_s`` is a safety stop, not a schedule: training ends after the first update that finishes
    this many seconds into the call; the curve's last row says ``stopped``. It is the one field a resumed
    run may change.
    """

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
    entropy: float = 0.01      # entropy bonus, linearly decayed to 0 over the planned updates
    entropy_floor: float = 0.25  # fraction of log(num_actions) below which the hinge penalty acts (decayed to 0)
    entropy_floor_coef: float = 0.1
    target_kl: float | None = 0.02  # stop this update's PPO epochs once a minibatch's approx KL exceeds it
    value_coef: float = 0.5
    grad_clip: float = 1.0
    reward_scale: float = 1.0  # rewards are multiplied by this inside the loss only (MDP returns are large)
    precision: str = "float32"  # "bfloat16": the PPO passes under autocast (rollouts stay float32)
    time_limit_s: float | None = None  # safety stop only (the curve says so); never changes the schedule
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> RL2Config:
        """Reject values that would fail (or silently do nothing) deep inside training."""
        ints = {"hidden": self.hidden, "updates": self.updates, "trials_per_update": self.trials_per_update,
                "epochs": self.epochs, "minibatches": self.minibatches}
        for k, v in ints.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"RL2Config.{k} must be an int >= 1, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"RL2Config.lr must be a positive finite number, got {self.lr!r}")
        for k in ("entropy", "entropy_floor", "entropy_floor_coef"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"RL2Config.{k} must be a finite number >= 0, got {v!r}")
        if self.target_kl is not None and not (math.isfinite(self.target_kl) and self.target_kl > 0):
            raise ValueError(f"RL2Config.target_kl must be None (off) or a positive number, got {self.target_kl!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"RL2Config.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.time_limit_s is not None and not self.time_limit_s >= 0:
            raise ValueError(f"RL2Config.time_limit_s must be None or >= 0 seconds, got {self.time_limit_s!r}")
        return self


def rl2_schedule(cfg: RL2Config, update: int) -> dict:
    """Learning rate, entropy coefficient and entropy-floor fraction at 0-based ``update``: a function of
    ``update / (cfg.updates - 1)`` alone, so two machines at the same update use the same values."""
    frac = min(1.0, update / max(1, cfg.updates - 1))
    return {"lr": cfg.lr * (1.0 - 0.9 * frac), "entropy_coef": cfg.entropy * (1.0 - frac),
            "entropy_floor": cfg.entropy_floor * (1.0 - frac)}


def ppo_update(policy: RL2Policy, optimizer: torch.optim.Optimizer, ro: Rollout, cfg: RL2Config,
               entropy_coef: float, generator: torch.Generator, entropy_floor: float = 0.0) -> dict:
    """PPO-clip epochs over minibatches of whole trials; the GRU re-reads each trial from a zero state.

    ``entropy_floor`` is in nats (the hinge of :class:`RL2Config`); ``cfg.target_kl`` may end the epochs
    early. Returns the means over the minibatches evaluated of the losses, the entropy, the approximate
    KL and the fraction of minibatches below the floor, plus ``ppo_steps`` (optimiser steps taken) and
    ``kl_stopped``. Raises :class:`mlcore.engine.NonFiniteLossError` before stepping on a non-finite loss or gradient.
    """
    rewards = ro.rewards * cfg.reward_scale
    adv = gae(rewards, ro.values, cfg.gamma, cfg.gae_lambda)
    returns = adv + ro.values
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    B = ro.actions.shape[0]
    mb = max(1, B // cfg.minibatches)
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "floor_active": 0.0}
    n, steps, kl_stopped = 0, 0, False
    for epoch in range(cfg.epochs):
        perm = torch.randperm(B, generator=generator, device=generator.device).to(ro.actions.device)
        for i in range(0, B, mb):
            idx = perm[i:i + mb]
            with torch.autocast(ro.inputs.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16"):
                logits, values, _ = policy(ro.inputs[idx])
            logits, values = logits.float(), values.float()  # the losses and the ratio in float32
            logp_all = torch.log_softmax(logits, -1)
            logp = logp_all.gather(-1, ro.actions[idx, :, None])[..., 0]
            logratio = logp - ro.logp[idx]
            ratio = torch.exp(logratio)
            a = adv[idx]
            pg = -torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
            vl = F.mse_loss(values, returns[idx])
            ent = -(logp_all.exp() * logp_all).sum(-1).mean()
            below = torch.clamp(entropy_floor - ent, min=0.0)  # 0 unless the policy is less random than the floor
            loss = pg + cfg.value_coef * vl - entropy_coef * ent + cfg.entropy_floor_coef * below
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"PPO loss is {float(loss.detach())} (epoch {epoch + 1}, minibatch {i // mb + 1})")
            with torch.no_grad():
                # KL(old || new) by the low-variance, non-negative estimator E[(r - 1) - log r] (as in CleanRL)
                kl = float(((ratio - 1) - logratio).mean())
            stats["approx_kl"] += kl
            stats["policy_loss"] += float(pg.detach())
            stats["value_loss"] += float(vl.detach())
            stats["entropy"] += float(ent.detach())
            stats["floor_active"] += float(below.detach() > 0)
            n += 1
            if cfg.target_kl is not None and kl > cfg.target_kl:
                kl_stopped = True  # measured before stepping: this minibatch's step is not taken
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            if not torch.isfinite(norm):
                raise NonFiniteLossError(f"gradient norm is {float(norm)} (epoch {epoch + 1}, minibatch {i // mb + 1})")
            optimizer.step()
            steps += 1
        if kl_stopped:
            break
    return {**{k: v / n for k, v in stats.items()}, "ppo_steps": steps, "kl_stopped": kl_stopped}


# ----------------------------------------------------------------------------- training, through mlcore.engine.fit
@dataclass
class TrialBatch:
    """One PPO update's batch: its tasks and the generator its actions and minibatches are drawn with."""

    update: int                 # 0-based update index: it alone sets the schedule (rl2_schedule)
    env: TrialEnv               # cfg.trials_per_update fresh tasks
    generator: torch.Generator  # the run's one generator (action sampling, minibatch order)


class TaskSampler:
    """fit's sampler for RL^2: update ``u`` plays the ``trials`` tasks of training seed
    ``10_000_000 + seed * 1_000_003 + u`` (disjoint from the evaluation seeds the book uses).

    Its state is the update index and the generator every rollout and PPO minibatch draws from, so
    fit's checkpoint holds what a resumed run needs to draw exactly what the uninterrupted one drew.
    """

    def __init__(self, spec: dict, trials: int, seed: int, device):
        self.spec, self.trials, self.seed, self.device = spec, trials, seed, torch.device(device)
        self.update = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def sample(self) -> TrialBatch:
        env = make_env(self.spec, self.trials, 10_000_000 + self.seed * 1_000_003 + self.update, self.device)
        batch = TrialBatch(self.update, env, self.generator)
        self.update += 1
        return batch

    def state_dict(self) -> dict:
        return {"update": self.update, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.update = int(state["update"])
        self.generator.set_state(state["generator"].cpu())  # a generator's state is a CPU tensor, on any device


class RL2Learner(TrainableModule):
    """What :func:`mlcore.engine.fit` trains for RL^2: the policy, one PPO update per fit step.

    fit's standard step (one loss, one optimizer step) is not PPO's: an update rolls the policy out on
    the batch's tasks, then takes up to ``epochs x minibatches`` steps at the learning rate the schedule
    gives that update. So the learner owns its update (:meth:`train_step`); fit keeps the loop around
    it: checkpoints, exact resume, NaN guard, time limit and progress bar.
    """

    def __init__(self, policy: RL2Policy, cfg: RL2Config):
        super().__init__()
        self.policy, self.cfg = policy, cfg
        # updates so far whose PPO epochs the KL stop cut / in which the entropy floor acted, and seconds spent
        # updating: every curve row carries them (a guard that fired between two logged rows still shows), and
        # they are module state (get_extra_state), so fit's checkpoint carries them over a resume
        self.kl_stops, self.floor_updates, self.seconds = 0, 0, 0.0

    def get_extra_state(self) -> dict:
        return {"kl_stops": self.kl_stops, "floor_updates": self.floor_updates, "seconds": self.seconds}

    def set_extra_state(self, state: dict) -> None:
        self.kl_stops, self.floor_updates, self.seconds = state["kl_stops"], state["floor_updates"], state["seconds"]

    @torch.no_grad()
    def meta_loss(self, batch: TrialBatch) -> tuple[torch.Tensor, dict]:
        """``-R_meta`` on the batch's tasks, from one rollout. No gradient: RL^2 learns by PPO (:meth:`train_step`)."""
        total = rollout(self.policy, batch.env, batch.generator).total.mean()
        return -total, {"mean_total_reward": float(total)}

    def train_step(self, batch: TrialBatch, optimizer: torch.optim.Optimizer, step: int) -> tuple[torch.Tensor, dict]:
        """One PPO update on the batch's tasks. Returns ``-R_meta`` of its rollout (the meta-loss before the
        update) and the numbers of the curve's row; :func:`ppo_update` raises on a NaN before stepping."""
        t0 = time.perf_counter()
        ro = rollout(self.policy, batch.env, batch.generator)
        sched = rl2_schedule(self.cfg, batch.update)  # the update index alone sets the schedule, never the clock
        for group in optimizer.param_groups:
            group["lr"] = sched["lr"]
        floor = sched["entropy_floor"] * math.log(self.policy.num_actions)  # in nats
        st = ppo_update(self.policy, optimizer, ro, self.cfg, sched["entropy_coef"], batch.generator, floor)
        self.kl_stops += int(st["kl_stopped"])
        self.floor_updates += int(st["floor_active"] > 0)
        self.seconds += time.perf_counter() - t0
        total = ro.total.mean()
        return -total, {"mean_total_reward": float(total), **st, "lr": sched["lr"],
                        "entropy_coef": sched["entropy_coef"], "entropy_floor": floor, "kl_stops": self.kl_stops,
                        "floor_updates": self.floor_updates, "wall_s": self.seconds}


def train_rl2(cfg: RL2Config, seed: int = 0, device=None, log_every: int = 10, progress: bool = False,
              policy: RL2Policy | None = None, run_dir: str | Path | None = None, checkpoint_every: int = 10,
              stop_after: int | None = None, deadline: float | None = None) -> tuple[RL2Policy, list[dict]]:
    """Meta-train an RL^2 policy on ``cfg.spec``'s task distribution with :func:`mlcore.engine.fit`, one fit
    step per PPO update. Every update draws ``cfg.trials_per_update`` fresh tasks (:class:`TaskSampler`).
    Returns the policy and a learning curve: one row every ``log_every`` updates from the first (and the
    last) with that update's reward, losses, policy entropy, approximate KL, PPO steps taken and schedule
    values, ``kl_stops`` / ``floor_updates``: how many updates so far had their epochs cut by
    ``target_kl`` / met the entropy floor, and ``wall_s``: seconds spent updating so far, over every call
    that made the run. ``progress`` shows fit's progress bar.

    ``run_dir``: checkpoint there every ``checkpoint_every`` updates and when training ends, and resume
    from an existing checkpoint (refused with a ValueError if it belongs to another config or seed).
    ``stop_after``: end this call after that many updates (a simulated crash, for tests; no row says so).
    ``deadline`` (a ``time.time()`` value, e.g. what ``reproduce --time-limit`` passes) and
    ``cfg.time_limit_s`` stop training early; the schedule is not changed, and the last row of the
    curve gets ``stopped``.
    """
    spec = check_spec(cfg.spec)
    cfg.check()
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
    device = torch.device(device or "cpu")
    # The policy's initialisation draws from torch's global CPU generator, seeded with ``seed`` for this
    # call only (a resumed checkpoint also restores that state inside the block): the caller's random
    # state is the same after training as before. Everything random in training uses the sampler's generator.
    with seeded_global_rng(seed):
        probe = make_env(spec, 1, 0, "cpu")
        if policy is None:
            policy = RL2Policy(probe.num_states, probe.num_actions, cfg.hidden)
        policy = policy.to(device)
        learner = RL2Learner(policy, cfg)
        optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.lr, eps=1e-5)
        sampler = TaskSampler(spec, cfg.trials_per_update, seed, device)
        # what a checkpoint must match to be resumed: everything that shapes the run except the safety stop
        fingerprint = {"config": {k: v for k, v in cfg.to_dict().items() if k != "time_limit_s"}, "seed": seed,
                       "policy": type(policy).__name__, "model": policy.config()}
        with cpu_threads(device):
            # fit logs every update (an entry is a few numbers, an update seconds of work); the curve keeps
            # every log_every-th of them, so it does not depend on where a run was interrupted
            result = fit(learner, sampler, cfg.updates, lr=cfg.lr, optimizer=optimizer, run_dir=run_dir,
                         checkpoint_every=checkpoint_every, log_every=1, progress=progress, stop_after=stop_after,
                         time_limit_s=cfg.time_limit_s, deadline=deadline, fingerprint=fingerprint)
    stopped = None
    if result.stopped is not None:  # fit stops at the earlier limit; the row says which (the deadline, if passed)
        if result.stopped.startswith("stop requested"):  # a STOP file in the run directory
            which = "stop requested"
        else:
            which = "time limit reached" if deadline is not None and time.time() >= deadline else "time_limit_s reached"
        stopped = f"{which} after {result.steps} of {cfg.updates} updates"
    return policy, _curve(result.history, cfg, log_every, stopped)


_PPO_STATS = ("policy_loss", "value_loss", "entropy", "approx_kl", "floor_active")


def _curve(history: list[dict], cfg: RL2Config, log_every: int, stopped: str | None) -> list[dict]:
    """fit's per-update history as the learning curve's rows: updates 1, 1 + log_every, ..., the last planned
    one, and, when this call was ``stopped`` by a time limit, the last one, which says so."""
    rows = []
    for entry in history:
        n = entry["step"]
        last = entry is history[-1]
        if (n - 1) % log_every != 0 and n != cfg.updates and not (stopped and last):
            continue
        row = {"update": n, "trials_seen": n * cfg.trials_per_update,
               "mean_total_reward": entry["mean_total_reward"], "wall_s": round(entry["wall_s"], 2),
               **{k: round(entry[k], 5) for k in _PPO_STATS},
               "ppo_steps": int(entry["ppo_steps"]), "kl_stopped": bool(entry["kl_stopped"]),
               "lr": round(entry["lr"], 8), "entropy_coef": round(entry["entropy_coef"], 8),
               "entropy_floor": round(entry["entropy_floor"], 5),
               "kl_stops": int(entry["kl_stops"]), "floor_updates": int(entry["floor_updates"])}
        if stopped and last:
            row["stopped"] = stopped
        rows.append(row)
    return rows


@torch.no_grad()
def evaluate_rl2(policy: RL2Policy, spec: dict, trials: int = 1000, seed: int = 2016, device=None,
                 greedy: bool = False, keep_actions: bool = False) -> dict:
    """Mean total reward per trial and its 95 % CI on ``trials`` tasks drawn with ``seed`` (the same tasks
    and noise the baselines see with :func:`mlcore.rl.baselines.run_policy`). ``keep_actions`` adds the
    actions and per-step rewards (trials, nT) and each trial's total."""
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
        out["actions"], out["rewards"], out["totals"] = ro.actions.cpu(), ro.rewards.cpu(), ro.total.cpu()
    return out


def cpu_seconds_per_update(spec: dict, trials: int, hidden: int = 256, repeats: int = 2) -> float:
    """Wall seconds of one RL^2 update on the CPU (rollout + PPO epochs) for ``trials`` trials."""
    cfg = RL2Config(spec=spec, hidden=hidden, updates=repeats, trials_per_update=trials)
    t = time.perf_counter()
    train_rl2(cfg, seed=0, device="cpu", log_every=10**9)
    return (time.perf_counter() - t) / repeats


__all__ = [
    "RL2Config",
    "RL2Learner",
    "RL2Policy",
    "Rollout",
    "TaskSampler",
    "TrialBatch",
    "cpu_seconds_per_update",
    "evaluate_rl2",
    "gae",
    "ppo_update",
    "rl2_schedule",
    "rollout",
    "train_rl2",
]
