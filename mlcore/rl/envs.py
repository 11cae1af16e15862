"""Task distributions for meta-RL, simulated as tensors: thousands of trials in one step call.

A *trial* is one task drawn from the distribution and played for ``n`` episodes (Duan et al. 2016).
Both families share one interface, :class:`TrialEnv`:

* :class:`BernoulliBandits` -- ``k`` arms with means ``p ~ U[0, 1]``; a trial is ``n`` pulls
  (an episode is one pull: one state, horizon 1).
* :class:`TabularMDPs` -- 10 states, 5 actions, horizon 10, start state 0, rewards ``N(mu, 1)`` with
  ``mu ~ N(1, 1)`` per (state, action), transitions ``P(.|s, a) ~ Dirichlet(1, ..., 1)``; a trial is
  ``n`` episodes.

Everything random (task parameters, then reward and transition noise) comes from one
``torch.Generator`` seeded by ``seed``. Each step draws the same number of random numbers whatever the
actions are, so two policies run on ``make_env(spec, trials, seed)`` face the same tasks and the same
noise stream (common random numbers): their difference in total reward is the policies' doing.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch


@contextmanager
def cpu_threads(device, n: int = 1):
    """On the CPU, run with ``n`` torch threads and restore the old setting afterwards. RL^2's GRU steps
    are small matrix products; on a busy machine extra threads spend more time waiting for each other
    than computing (we measured 25 s instead of 1.3 s per update with 2 threads on 2 loaded cores)."""
    if torch.device(device).type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class Step:
    """What one call to :meth:`TrialEnv.step` returns, each of shape ``(trials,)``."""

    state: torch.Tensor          # long: the state the agent is in now (0 after an episode ends)
    reward: torch.Tensor         # float: reward of the action just taken
    episode_done: torch.Tensor   # bool: the action ended an episode (the next state is the start state)
    trial_done: torch.Tensor     # bool: the action ended the trial (all n episodes played)


class TrialEnv:
    """A batch of ``trials`` independent tasks, stepped in lockstep.

    Subclasses set ``num_states``, ``num_actions``, ``horizon``, ``episodes`` and implement
    ``_sample_tasks`` and ``_transition``.
    """

    num_states: int
    num_actions: int
    horizon: int
    episodes: int

    def __init__(self, trials: int, seed: int = 0, device: str | torch.device = "cpu"):
        if not isinstance(trials, int) or trials < 1:
            raise ValueError(f"trials must be a positive int, got {trials!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.trials = trials
        self.seed = seed
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._sample_tasks()
        self.reset()

    @property
    def steps_per_trial(self) -> int:
        return self.episodes * self.horizon

    def reset(self) -> torch.Tensor:
        """Start every trial again on the SAME tasks (noise continues from the generator); returns states."""
        self.t = 0
        self.state = torch.zeros(self.trials, dtype=torch.long, device=self.device)
        return self.state.clone()

    def _check_action(self, action: torch.Tensor) -> torch.Tensor:
        if not isinstance(action, torch.Tensor):
            raise ValueError(f"action must be a torch.Tensor of shape ({self.trials},), got {type(action).__name__}")  # noqa: TRY004
        if action.shape != (self.trials,):
            raise ValueError(f"action must have shape ({self.trials},) (one action per trial), "
                             f"got {tuple(action.shape)}")
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise ValueError(f"action must be an integer tensor, got dtype {action.dtype}")
        if bool((action < 0).any()) or bool((action >= self.num_actions).any()):
            raise ValueError(f"actions must lie in [0, {self.num_actions}), got min {int(action.min())} "
                             f"max {int(action.max())}")
        if self.t >= self.steps_per_trial:
            raise ValueError(f"the trial is over after {self.steps_per_trial} steps; call reset() first")
        return action.to(self.device)

    def step(self, action: torch.Tensor) -> Step:
        action = self._check_action(action)
        reward, next_state = self._transition(self.state, action)
        self.t += 1
        episode_done = self.t % self.horizon == 0
        trial_done = self.t == self.steps_per_trial
        if episode_done:
            next_state = torch.zeros_like(next_state)
        self.state = next_state
        full = lambda v: torch.full((self.trials,), v, dtype=torch.bool, device=self.device)
        return Step(next_state.clone(), reward, full(episode_done), full(trial_done))

    def _sample_tasks(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transition(self, state, action):  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_reward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class BernoulliBandits(TrialEnv):
    """``k``-armed Bernoulli bandits, arm means ``p ~ U[0, 1]``, ``n`` pulls per trial."""

    num_states = 1
    horizon = 1

    def __init__(self, arms: int, pulls: int, trials: int, seed: int = 0, device: str | torch.device = "cpu"):
        if not isinstance(arms, int) or arms < 2:
            raise ValueError(f"a bandit needs arms >= 2 (an int), got {arms!r}")
        if not isinstance(pulls, int) or pulls < 1:
            raise ValueError(f"pulls (n) must be an int >= 1, got {pulls!r}")
        self.num_actions = arms
        self.episodes = pulls
        super().__init__(trials, seed, device)

    def _sample_tasks(self) -> None:
        self.means = torch.rand(self.trials, self.num_actions, generator=self.generator, device=self.device)

    def _transition(self, state, action):
        u = torch.rand(self.trials, generator=self.generator, device=self.device)
        p = self.means.gather(1, action[:, None])[:, 0]
        return (u < p).float(), state

    def expected_reward(self, state, action):
        return self.means.gather(1, action[:, None])[:, 0]


class TabularMDPs(TrialEnv):
    """Random tabular MDPs as in Duan et al. (2016) §4.2, ``n`` episodes of ``horizon`` steps per trial."""

    def __init__(self, episodes: int, trials: int, seed: int = 0, device: str | torch.device = "cpu",
                 num_states: int = 10, num_actions: int = 5, horizon: int = 10):
        for name, v, lo in (("episodes (n)", episodes, 1), ("num_states", num_states, 1),
                            ("num_actions", num_actions, 2), ("horizon", horizon, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.num_states, self.num_actions, self.horizon, self.episodes = num_states, num_actions, horizon, episodes
        super().__init__(trials, seed, device)

    def _sample_tasks(self) -> None:
        g, B, S, A = self.generator, self.trials, self.num_states, self.num_actions
        self.reward_means = 1.0 + torch.randn(B, S, A, generator=g, device=self.device)
        # flat Dirichlet(1,...,1) = normalised Exponential(1) draws
        e = -torch.log1p(-torch.rand(B, S, A, S, generator=g, device=self.device))
        self.transitions = e / e.sum(-1, keepdim=True)

    def _transition(self, state, action):
        g, B = self.generator, self.trials
        noise = torch.randn(B, generator=g, device=self.device)
        u = torch.rand(B, 1, generator=g, device=self.device)
        idx = torch.arange(B, device=self.device)
        reward = self.reward_means[idx, state, action] + noise
        cdf = self.transitions[idx, state, action].cumsum(-1)
        next_state = torch.searchsorted(cdf, u * cdf[:, -1:])[:, 0].clamp_(max=self.num_states - 1)
        return reward, next_state

    def expected_reward(self, state, action):
        idx = torch.arange(self.trials, device=self.device)
        return self.reward_means[idx, state, action]


def check_spec(spec: dict) -> dict:
    """Validate a task-distribution spec: ``{"env": "bandit", "arms": k, "pulls": n}`` or
    ``{"env": "mdp", "episodes": n}``; returns a normalised copy."""
    if not isinstance(spec, dict) or spec.get("env") not in ("bandit", "mdp"):
        raise ValueError(f"spec must be a dict with env 'bandit' or 'mdp', got {spec!r}")
    if spec["env"] == "bandit":
        extra = set(spec) - {"env", "arms", "pulls"}
        if extra or "arms" not in spec or "pulls" not in spec:
            raise ValueError(f"bandit spec needs exactly arms and pulls, got {spec!r}")
    else:
        extra = set(spec) - {"env", "episodes", "num_states", "num_actions", "horizon"}
        if extra or "episodes" not in spec:
            raise ValueError(f"mdp spec needs episodes (and optionally num_states/num_actions/horizon), got {spec!r}")
    return dict(spec)


def make_env(spec: dict, trials: int, seed: int = 0, device: str | torch.device = "cpu") -> TrialEnv:
    """Build the batch of ``trials`` tasks that ``spec`` describes (see :func:`check_spec`)."""
    spec = check_spec(spec)
    kind = spec.pop("env")
    if kind == "bandit":
        return BernoulliBandits(spec["arms"], spec["pulls"], trials, seed, device)
    return TabularMDPs(spec.pop("episodes"), trials, seed, device, **spec)


def spec_name(spec: dict) -> str:
    """Short name used in record names: ``bandit_n10_k5``, ``mdp_n10``."""
    spec = check_spec(spec)
    if spec["env"] == "bandit":
        return f"bandit_n{spec['pulls']}_k{spec['arms']}"
    return f"mdp_n{spec['episodes']}"
