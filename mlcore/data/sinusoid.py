"""Sinusoid regression tasks (Finn et al. 2017): y = A sin(x + phi)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SinusoidTasks:
    """A batch of sinusoid tasks: support (B, K, 1), query (B, Q, 1), plus each task's amplitude and phase."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    amplitude: torch.Tensor
    phase: torch.Tensor

    def curve(self, x: torch.Tensor) -> torch.Tensor:
        """True y of every task at points ``x`` (P,) -> (B, P)."""
        return self.amplitude[:, None] * torch.sin(x[None, :] + self.phase[:, None])


class SinusoidSampler:
    """Seeded sampler: A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5] (the paper's ranges)."""

    def __init__(self, shots: int = 10, queries: int = 10, batch_size: int = 25, seed: int = 0,
                 device: str | torch.device = "cpu", amplitude=(0.1, 5.0), phase=(0.0, math.pi),
                 x_range=(-5.0, 5.0)):
        for k, v in {"shots": shots, "queries": queries, "batch_size": batch_size}.items():
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive int, got {v!r}")
        self.shots, self.queries, self.batch_size = shots, queries, batch_size
        self.device = torch.device(device)
        self.amplitude, self.phase, self.x_range = amplitude, phase, x_range
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def sample(self, batch_size: int | None = None) -> SinusoidTasks:
        b, g = batch_size or self.batch_size, self.generator
        amp = torch.empty(b).uniform_(*self.amplitude, generator=g)
        ph = torch.empty(b).uniform_(*self.phase, generator=g)
        x = torch.empty(b, self.shots + self.queries, 1).uniform_(*self.x_range, generator=g)
        y = amp[:, None, None] * torch.sin(x + ph[:, None, None])
        d = self.device
        k = self.shots
        return SinusoidTasks(x[:, :k].to(d), y[:, :k].to(d), x[:, k:].to(d), y[:, k:].to(d), amp.to(d), ph.to(d))
