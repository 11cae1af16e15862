"""Classic exploration strategies: the comparison columns of Duan et al. (2016), Tables 1 and 2.

Every policy acts on a whole batch of trials at once and follows one small protocol::

    policy.begin(env, generator)         # a new batch of trials starts: forget everything
    action = policy.act(state)           # (trials,) long
    policy.observe(state, action, step)  # what the environment answered

:func:`run_policy` plays a policy through every trial of an environment and returns the total reward
per trial. All policies are Bayesian where the paper's are: bandit arms carry a Beta(1, 1) prior (the true
prior of ``p ~ U[0, 1]``), MDP rewards a N(1, 1) prior on their means with unit noise (the true prior) and
transition rows a flat Dirichlet(1) prior (the true prior).

Bandits: random, greedy, epsilon-greedy, UCB1, Thompson sampling, Gittins index.
MDPs: random, greedy / epsilon-greedy (certainty equivalence), BEB (greedy + count bonus), PSRL.
"""
from __future__ import annotations

import functools

import torch

from ..runtime import seeded_global_rng
from .envs import BernoulliBandits, Step, TabularMDPs, TrialEnv, cpu_threads


def argmax_random_ties(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Row-wise argmax of ``scores`` (B, A), ties broken uniformly at random (seeded)."""
    best = scores == scores.max(-1, keepdim=True).values
    u = torch.rand(scores.shape, generator=generator, device=scores.device)
    return (u * best).argmax(-1)


class Policy:
    """Base class: a policy for a batch of trials."""

    name = "policy"

    def begin(self, env: TrialEnv, generator: torch.Generator) -> None:
        self.env, self.g = env, generator

    def act(self, state: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, state: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        pass


class RandomPolicy(Policy):
    name = "random"

    def act(self, state):
        return torch.randint(self.env.num_actions, (self.env.trials,), generator=self.g, device=self.env.device)


# ----------------------------------------------------------------------------- bandits
class BanditPolicy(Policy):
    """Keeps per-arm successes and failures; the posterior of arm i is Beta(1 + s_i, 1 + f_i)."""

    def begin(self, env, generator):
        if not isinstance(env, BernoulliBandits):
            raise ValueError(f"{self.name} is a bandit policy; got {type(env).__name__}")  # noqa: TRY004 (house style: ValueError for bad arguments)
        super().begin(env, generator)
        self.successes = torch.zeros(env.trials, env.num_actions, device=env.device)
        self.failures = torch.zeros_like(self.successes)

    def observe(self, state, action, step):
        self.successes.scatter_add_(1, action[:, None], step.reward[:, None])
        self.failures.scatter_add_(1, action[:, None], 1.0 - step.reward[:, None])

    @property
    def pulls(self) -> torch.Tensor:
        return self.successes + self.failures

    def posterior_mean(self) -> torch.Tensor:
        return (1.0 + self.successes) / (2.0 + self.pulls)


class Greedy(BanditPolicy):
    """Pull the arm with the highest posterior mean (an unpulled arm counts as 1/2)."""

    name = "greedy"

    def act(self, state):
        return argmax_random_ties(self.posterior_mean(), self.g)


class EpsilonGreedy(BanditPolicy):
    """With probability ``epsilon`` a uniformly random arm, else the greedy arm."""

    name = "epsilon-greedy"

    def __init__(self, epsilon: float = 0.1):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        self.epsilon = epsilon

    def act(self, state):
        greedy = argmax_random_ties(self.posterior_mean(), self.g)
        rand = torch.randint(self.env.num_actions, greedy.shape, generator=self.g, device=greedy.device)
        explore = torch.rand(greedy.shape, generator=self.g, device=greedy.device) < self.epsilon
        return torch.where(explore, rand, greedy)


class UCB1(BanditPolicy):
    """UCB1 (Auer et al. 2002): ``mean_i + c * sqrt(2 ln t / n_i)``.

    ``c = 1`` with empirical means and one initial pull per arm is the textbook algorithm. With
    ``prior=True`` the mean is the Beta(1, 1) posterior mean and ``n_i`` counts the two prior
    pseudo-pulls, so no forced round-robin is needed -- this is the variant whose ``c`` Duan et al.
    tuned; small ``c`` trades exploration for short horizons.
    """

    name = "UCB1"

    def __init__(self, c: float = 1.0, prior: bool = False):
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c, self.prior = c, prior

    def act(self, state):
        n = self.pulls
        t = n.sum(-1, keepdim=True) + 1.0
        if self.prior:
            score = self.posterior_mean() + self.c * torch.sqrt(2.0 * torch.log(t + 2.0) / (n + 2.0))
        else:
            mean = self.successes / n.clamp(min=1.0)
            score = mean + self.c * torch.sqrt(2.0 * torch.log(t) / n.clamp(min=1.0))
            score = torch.where(n == 0, torch.full_like(score, float("inf")), score)
        return argmax_random_ties(score, self.g)


class Thompson(BanditPolicy):
    """Thompson sampling (1933): pull the arm whose Beta(1 + s, 1 + f) posterior sample is largest."""

    name = "Thompson"

    def act(self, state):
        seed = int(torch.randint(2**62, (), generator=self.g))
        # torch's Beta sampler takes no generator: seed the global one (this device's) for this block only
        with seeded_global_rng(seed, self.env.device):
            sample = torch.distributions.Beta(1.0 + self.successes, 1.0 + self.failures).sample()
        return sample.argmax(-1)


@functools.lru_cache(maxsize=16)
def gittins_table(gamma: float, depth: int, grid: int = 1001) -> torch.Tensor:
    """Gittins indices of a Bernoulli arm with a Beta(1, 1) prior and discount ``gamma``.

    Returns ``G`` of shape (depth, depth): ``G[s, f]`` is the index after ``s`` successes and ``f``
    failures (``s + f < depth``). Computed by calibration (Gittins 1979): the index of a state is the
    per-step retirement reward ``lam`` at which one is indifferent between retiring forever
    (``lam / (1 - gamma)``) and pulling once more and then acting optimally. For every ``lam`` on a grid
    of ``grid`` values in [0, 1] one backward DP over the tree of posteriors gives
    ``cont(s, f; lam) - lam / (1 - gamma)``, a decreasing function of ``lam``; the index is its root,
    located on the grid and refined by linear interpolation. The tree is truncated at ``s + f = depth``
    where the value is approximated by ``max(lam, mean) / (1 - gamma)`` (the posterior has nearly
    stopped moving there).
    """
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must lie in (0, 1), got {gamma}")
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    with cpu_threads("cpu"):
        return _calibrate(gamma, depth, grid)


def _calibrate(gamma: float, depth: int, grid: int) -> torch.Tensor:
    lam = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)[:, None]           # (L, 1)
    retire = lam / (1.0 - gamma)
    s = torch.arange(depth + 1, dtype=torch.float64)
    mean = (1.0 + s) / (2.0 + depth)                                              # level depth: s + f = depth
    value = torch.maximum(retire, mean[None, :] / (1.0 - gamma))                  # (L, depth + 1)
    table = torch.full((depth, depth), float("nan"), dtype=torch.float64)
    for d in range(depth - 1, -1, -1):  # level d holds states s = 0..d, f = d - s
        s = torch.arange(d + 1, dtype=torch.float64)
        p = (1.0 + s) / (2.0 + d)
        cont = p + gamma * (p * value[:, 1:d + 2] + (1.0 - p) * value[:, :d + 1])  # (L, d + 1)
        gap = cont - retire                                                       # decreasing in lam
        # first grid point where retiring is at least as good, then interpolate the root between neighbours
        k = (gap <= 0).to(torch.int64).argmax(0).clamp(min=1)
        g_hi, g_lo = gap.gather(0, k[None])[0], gap.gather(0, (k - 1)[None])[0]
        l_hi, l_lo = lam[k, 0], lam[k - 1, 0]
        root = l_lo + (l_hi - l_lo) * g_lo / (g_lo - g_hi).clamp(min=1e-300)
        table[s.long(), (d - s).long()] = root
        value = torch.maximum(retire, cont)
    return table.float()


class Gittins(BanditPolicy):
    """Pull the arm with the highest Gittins index (Beta(1, 1) prior, discount ``gamma``).

    The Gittins index is optimal for the infinite discounted problem; for a trial of ``n`` pulls we use
    ``gamma = 1 - 1/n`` (effective horizon ``n``) unless told otherwise. Tests compare it with the
    exact finite-horizon Bayes-optimal policy (:func:`bayes_optimal_value`) on small instances.
    """

    name = "Gittins"

    def __init__(self, gamma: float | None = None, depth: int | None = None):
        self.gamma, self.depth = gamma, depth

    def begin(self, env, generator):
        super().begin(env, generator)
        n = env.episodes
        gamma = self.gamma if self.gamma is not None else 1.0 - 1.0 / max(n, 2)
        depth = self.depth or max(n + 50, 100)  # an arm is pulled at most n times in a trial
        self.table = gittins_table(round(gamma, 12), depth).to(env.device)
        self.used_gamma = gamma

    def act(self, state):
        s, f = self.successes.long(), self.failures.long()
        return argmax_random_ties(self.table[s, f], self.g)


def bayes_optimal_value(pulls: int, arms: int = 2) -> float:
    """Expected total reward of the Bayes-optimal policy for ``arms`` Bernoulli arms with Beta(1, 1)
    priors over ``pulls`` pulls, by exact dynamic programming over posterior counts (small sizes only)."""
    if arms < 2 or pulls < 1:
        raise ValueError(f"need arms >= 2 and pulls >= 1, got arms={arms}, pulls={pulls}")

    @functools.cache
    def v(counts: tuple, left: int) -> float:
        if left == 0:
            return 0.0
        best = -1.0
        for i in range(arms):
            s, f = counts[2 * i], counts[2 * i + 1]
            p = (1 + s) / (2 + s + f)
            win = list(counts); win[2 * i] += 1
            lose = list(counts); lose[2 * i + 1] += 1
            q = p * (1 + v(tuple(win), left - 1)) + (1 - p) * v(tuple(lose), left - 1)
            best = max(best, q)
        return best

    return v((0,) * (2 * arms), pulls)


def index_policy_value(index, pulls: int, arms: int = 2) -> float:
    """Exact expected total reward (under the Beta(1, 1) prior) of the policy pulling the arm with the
    highest ``index(s, f)``; ties split evenly. Used to test Gittins against :func:`bayes_optimal_value`."""

    @functools.cache
    def v(counts: tuple, left: int) -> float:
        if left == 0:
            return 0.0
        scores = [index(counts[2 * i], counts[2 * i + 1]) for i in range(arms)]
        top = max(scores)
        best = [i for i in range(arms) if abs(scores[i] - top) < 1e-9]
        total = 0.0
        for i in best:
            s, f = counts[2 * i], counts[2 * i + 1]
            p = (1 + s) / (2 + s + f)
            win = list(counts); win[2 * i] += 1
            lose = list(counts); lose[2 * i + 1] += 1
            total += p * (1 + v(tuple(win), left - 1)) + (1 - p) * v(tuple(lose), left - 1)
        return total / len(best)

    return v((0,) * (2 * arms), pulls)


# ----------------------------------------------------------------------------- MDPs
class MDPPolicy(Policy):
    """Posterior over an MDP: reward means N((1 + sum r) / (1 + n), 1 / (1 + n)), transition rows
    Dirichlet(1 + counts). Plans once per episode by finite-horizon value iteration (:func:`plan`)."""

    def begin(self, env, generator):
        if not isinstance(env, TabularMDPs):
            raise ValueError(f"{self.name} is an MDP policy; got {type(env).__name__}")  # noqa: TRY004
        super().begin(env, generator)
        B, S, A = env.trials, env.num_states, env.num_actions
        self.visits = torch.zeros(B, S, A, device=env.device)
        self.reward_sum = torch.zeros(B, S, A, device=env.device)
        self.next_counts = torch.zeros(B, S, A, S, device=env.device)
        self.h = 0
        self.q = None

    def observe(self, state, action, step):
        idx = torch.arange(self.env.trials, device=self.env.device)
        self.visits[idx, state, action] += 1.0
        self.reward_sum[idx, state, action] += step.reward
        if not bool(step.episode_done[0]):  # the last step's successor is the reset, not a transition
            self.next_counts[idx, state, action, step.state] += 1.0
        self.h = 0 if bool(step.episode_done[0]) else self.h + 1

    def reward_mean(self) -> torch.Tensor:
        return (1.0 + self.reward_sum) / (1.0 + self.visits)

    def transition_mean(self) -> torch.Tensor:
        c = 1.0 + self.next_counts
        return c / c.sum(-1, keepdim=True)

    def model(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def act(self, state):
        if self.h == 0:
            self.q = plan(*self.model(), self.env.horizon)
        idx = torch.arange(self.env.trials, device=self.env.device)
        return self.choose(self.q[self.h][idx, state])

    def choose(self, q_row: torch.Tensor) -> torch.Tensor:
        return argmax_random_ties(q_row, self.g)


def plan(reward: torch.Tensor, transition: torch.Tensor, horizon: int) -> list[torch.Tensor]:
    """Finite-horizon value iteration: ``Q[h]`` (B, S, A) for steps h = 0..horizon-1 of an episode."""
    v = torch.zeros(reward.shape[:2], device=reward.device, dtype=reward.dtype)
    qs = []
    for _ in range(horizon):
        q = reward + torch.einsum("bsan,bn->bsa", transition, v)
        v = q.max(-1).values
        qs.append(q)
    return qs[::-1]


class MDPGreedy(MDPPolicy):
    """Certainty equivalence: plan in the posterior-mean MDP, act greedily (``epsilon`` > 0: epsilon-greedy);
    ``bonus`` > 0 adds BEB's exploration bonus ``bonus / (1 + n(s, a))`` (Kolter & Ng 2009)."""

    def __init__(self, epsilon: float = 0.0, bonus: float = 0.0):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        if bonus < 0:
            raise ValueError(f"bonus must be >= 0, got {bonus}")
        self.epsilon, self.bonus = epsilon, bonus
        self.name = "BEB" if bonus > 0 else ("epsilon-greedy" if epsilon > 0 else "greedy")

    def model(self):
        return self.reward_mean() + self.bonus / (1.0 + self.visits), self.transition_mean()

    def choose(self, q_row):
        greedy = argmax_random_ties(q_row, self.g)
        if self.epsilon == 0:
            return greedy
        rand = torch.randint(self.env.num_actions, greedy.shape, generator=self.g, device=greedy.device)
        explore = torch.rand(greedy.shape, generator=self.g, device=greedy.device) < self.epsilon
        return torch.where(explore, rand, greedy)


class PSRL(MDPPolicy):
    """Posterior sampling for RL (Osband et al. 2013): each episode, sample an MDP from the posterior
    and follow its optimal policy for the whole episode."""

    name = "PSRL"

    def model(self):
        seed = int(torch.randint(2**62, (), generator=self.g))
        # torch's Gamma sampler takes no generator: seed the global one (this device's) for this block only
        with seeded_global_rng(seed, self.env.device):
            reward = self.reward_mean() + torch.randn_like(self.visits) / torch.sqrt(1.0 + self.visits)
            gam = torch._standard_gamma(1.0 + self.next_counts)
        return reward, gam / gam.sum(-1, keepdim=True)


# ----------------------------------------------------------------------------- running
POLICY_SEED_OFFSET = 7_777_777  # the policy's own random numbers never share a stream with the env's


def run_policy(policy: Policy, env: TrialEnv, seed: int | None = None, keep_actions: bool = False) -> dict:
    """Play ``policy`` through all trials of ``env`` (from its current reset). Returns ``total`` (trials,)
    rewards summed over the trial and, with ``keep_actions``, ``actions`` and ``rewards`` (trials, steps).

    The policy's generator is seeded with ``seed`` (default: the env's seed + ``POLICY_SEED_OFFSET``);
    it must differ from the env's seed, or tie-breaking would read the arm means' random numbers."""
    seed = env.seed + POLICY_SEED_OFFSET if seed is None else seed
    if seed == env.seed:
        raise ValueError("the policy seed must differ from the environment seed (they would share random numbers)")
    with cpu_threads(env.device):
        return _run(policy, env, seed, keep_actions)


def _run(policy: Policy, env: TrialEnv, seed: int, keep_actions: bool) -> dict:
    g = torch.Generator(device=env.device)
    g.manual_seed(seed)
    state = env.reset()
    policy.begin(env, g)
    total = torch.zeros(env.trials, device=env.device)
    actions, rewards = [], []
    for _ in range(env.steps_per_trial):
        action = policy.act(state)
        step = env.step(action)
        policy.observe(state, action, step)
        total += step.reward
        state = step.state
        if keep_actions:
            actions.append(action)
            rewards.append(step.reward)
    out = {"total": total}
    if keep_actions:
        out["actions"], out["rewards"] = torch.stack(actions, 1), torch.stack(rewards, 1)
    return out


def bandit_baselines(pulls: int) -> dict[str, Policy]:
    """The bandit columns, with the settings used for the book's tables.

    UCB1 and epsilon-greedy use the constants below, chosen once by :func:`tune` on trials drawn with a
    different seed from the evaluation trials (see ``mlcore.experiments.rl2_records``).
    """
    return {
        "random": RandomPolicy(),
        "Gittins": Gittins(),
        "Thompson": Thompson(),
        "UCB1": UCB1(c=UCB1_C.get(pulls, 0.2), prior=True),
        "UCB1 (textbook)": UCB1(c=1.0, prior=False),
        "epsilon-greedy": EpsilonGreedy(EPSILON.get(pulls, 0.05)),
        "greedy": Greedy(),
    }


def mdp_baselines(episodes: int) -> dict[str, Policy]:
    return {
        "random": RandomPolicy(),
        "PSRL": PSRL(),
        "BEB": MDPGreedy(bonus=BEB_BONUS.get(episodes, 1.0)),
        "epsilon-greedy": MDPGreedy(epsilon=MDP_EPSILON.get(episodes, 0.1)),
        "greedy": MDPGreedy(),
    }


# Constants picked by tune() on 1,000 tuning trials drawn with seed 1 (the evaluation trials use seed 2016);
# keys are the trial length n. Grids: UCB1 c in {0.05, 0.1, 0.2, 0.3, 0.5} (best at k = 5 and k = 10 alike),
# epsilon in {0.01, 0.05, 0.1, 0.2}, BEB bonus in {0.25, 0.5, 1, 2}, MDP epsilon in {0.02, 0.05, 0.1, 0.2}.
UCB1_C: dict[int, float] = {10: 0.05, 100: 0.2}
EPSILON: dict[int, float] = {10: 0.01, 100: 0.01}
BEB_BONUS: dict[int, float] = {10: 0.25, 25: 1.0}
MDP_EPSILON: dict[int, float] = {10: 0.02, 25: 0.02}


def tune(make_policy, values, spec: dict, trials: int = 1000, seed: int = 1, device="cpu") -> dict:
    """Mean total reward of ``make_policy(v)`` for each ``v`` on ``trials`` tuning trials (seed != eval seed)."""
    from .envs import make_env

    out = {}
    for v in values:
        env = make_env(spec, trials, seed, device)
        out[v] = float(run_policy(make_policy(v), env)["total"].mean())
    return out
