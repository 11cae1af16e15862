"""Reptile (Nichol et al. 2018): move the initialisation towards the weights each task adapts to.

For every task of the meta-batch, run k steps of SGD from θ on the task's data (support
and query together, as Reptile makes no support/query split during meta-training) to
get φ_i; the outer update moves θ towards the mean φ̄ = mean_i φ_i.

How this fits the learner protocol: :meth:`Reptile.meta_loss` returns the surrogate
``½‖θ − stopgrad(φ̄)‖²``, whose gradient with respect to θ is exactly the Reptile
direction θ − φ̄. The engine's optimizer then steps along −(θ − φ̄) = φ̄ − θ. With plain
SGD at learning rate ε this is the paper's batched update θ ← θ + ε(φ̄ − θ); the book's
engine uses Adam (lr 1e-3), which the Reptile paper notes is a valid way to use the
Reptile direction as a gradient. No second-order term is ever computed; the inner loop
is vmapped over tasks like MAML's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import vmap

from ..budget import pick
from ..data.episodes import Episode
from ..learner import Recipe
from .maml import MAML, inner_loop


class Reptile(MAML):
    """Strided Conv-4 + head (same net as MAML); inner SGD, outer Reptile direction fed to Adam."""

    method = "reptile"

    def __init__(self, ways: int = 5, hidden: int = 64, in_channels: int = 1, inner_steps: int = 5,
                 inner_lr: float = 0.1, test_inner_steps: int = 10):
        super().__init__(ways=ways, hidden=hidden, in_channels=in_channels, inner_steps=inner_steps,
                         inner_lr=inner_lr, test_inner_steps=test_inner_steps, first_order=True)
        self.config = {"ways": ways, "hidden": hidden, "in_channels": in_channels,
                       "inner_steps": inner_steps, "inner_lr": inner_lr,
                       "test_inner_steps": test_inner_steps}

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        model = {"ways": ways, "inner_steps": 5, "inner_lr": 0.1, "test_inner_steps": 10}
        return Recipe(ways=ways, shots=shots, queries=5, meta_batch=pick(budget, smoke=4, full=32 if ways <= 5 else 16),
                      steps=pick(budget, smoke=30, full=cls.full_steps(ways, shots)), lr=1e-3,
                      test_ways=ways, test_shots=shots, model=model)

    def adapted_weights(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """φ_i for every task of a batch (leading dim B), from detached θ: ``(B, *param.shape)`` each."""
        theta = {k: v.detach() for k, v in self.start_params().items()}
        lrs = self.rates(self.inner_steps)
        with torch.enable_grad():
            return vmap(lambda x1, y1: inner_loop(self.net, theta, x1, y1, F.cross_entropy, lrs, first_order=True),
                        randomness="different")(x, y)

    def meta_loss(self, episodes: Episode, vectorize: bool = True) -> tuple[torch.Tensor, dict]:
        if episodes.ways != self.ways:
            raise ValueError(f"this learner's head has {self.ways} outputs; got a {episodes.ways}-way batch")
        x = torch.cat([episodes.support_x, episodes.query_x], dim=1)
        y = torch.cat([episodes.support_y, episodes.query_y], dim=1)
        phi = self.adapted_weights(x, y)
        loss = x.new_zeros(())
        shift = x.new_zeros(())
        for name, theta in self.start_params().items():
            target = phi[name].mean(0).detach()  # φ̄
            loss = loss + 0.5 * (theta - target).pow(2).sum()  # ∇_θ = θ − φ̄, the Reptile direction
            shift = shift + (theta.detach() - target).pow(2).sum()
        return loss, {"shift": shift.sqrt()}
