"""Gymnasium wrappers around :mod:`mlcore.rl.envs` (one trial = one Gymnasium episode).

Importing this module imports ``gymnasium`` and registers two ids::

    import gymnasium, mlcore.rl.gym_envs
    env = gymnasium.make("mlcore/BernoulliBandit-v0", arms=5, pulls=10)
    env = gymnasium.make("mlcore/TabularMDP-v0", episodes=10)

``reset(seed=s)`` draws a new task (arm means, or rewards and transitions) from the seeded
``np_random``; ``step(a)`` returns ``(state, reward, terminated, truncated, info)`` where ``terminated``
marks the end of the trial (all ``n`` pulls or episodes played -- the trial's length is part of the
task, not a time limit, so ``truncated`` is always False) and ``info["episode_done"]`` marks the end of
an inner episode. The observation is the current state (always 0 for bandits). The vectorised
classes in :mod:`mlcore.rl.envs` do the simulation, so both APIs draw from one implementation.
"""
from __future__ import annotations

from typing import ClassVar

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from .envs import BernoulliBandits, TabularMDPs, TrialEnv


class _TrialGymEnv(gymnasium.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def _build(self, seed: int) -> TrialEnv:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.inner = self._build(int(self.np_random.integers(2**31 - 1)))
        state = int(self.inner.reset()[0])
        return state, {"episode_done": False, "t": 0}

    def step(self, action):
        if not hasattr(self, "inner"):
            raise ValueError("call reset() before step()")
        a = np.asarray(action)
        if a.ndim != 0 or not np.issubdtype(a.dtype, np.integer) or not self.action_space.contains(int(a)):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        step = self.inner.step(torch.tensor([int(action)]))
        info = {"episode_done": bool(step.episode_done[0]), "t": self.inner.t}
        return int(step.state[0]), float(step.reward[0]), bool(step.trial_done[0]), False, info


class BernoulliBanditEnv(_TrialGymEnv):
    """One Bernoulli bandit trial: ``arms`` arms with means ~ U[0, 1], ``pulls`` pulls."""

    def __init__(self, arms: int = 5, pulls: int = 10):
        BernoulliBandits(arms, pulls, 1)  # validates the arguments with clear errors
        self.arms, self.pulls = arms, pulls
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(arms)

    def _build(self, seed):
        return BernoulliBandits(self.arms, self.pulls, 1, seed)

    @property
    def arm_means(self) -> np.ndarray:
        return self.inner.means[0].numpy()


class TabularMDPEnv(_TrialGymEnv):
    """One random tabular MDP trial (Duan et al. 2016): ``episodes`` episodes of ``horizon`` steps."""

    def __init__(self, episodes: int = 10, num_states: int = 10, num_actions: int = 5, horizon: int = 10):
        TabularMDPs(episodes, 1, 0, "cpu", num_states, num_actions, horizon)  # validates the arguments
        self.kw = {"num_states": num_states, "num_actions": num_actions, "horizon": horizon}
        self.episodes = episodes
        self.observation_space = spaces.Discrete(num_states)
        self.action_space = spaces.Discrete(num_actions)

    def _build(self, seed):
        return TabularMDPs(self.episodes, 1, seed, "cpu", **self.kw)


def register_envs() -> None:
    """Register ``mlcore/BernoulliBandit-v0`` and ``mlcore/TabularMDP-v0`` (idempotent)."""
    for env_id, entry in (("mlcore/BernoulliBandit-v0", "mlcore.rl.gym_envs:BernoulliBanditEnv"),
                          ("mlcore/TabularMDP-v0", "mlcore.rl.gym_envs:TabularMDPEnv")):
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry)


register_envs()
