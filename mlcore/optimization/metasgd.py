"""Meta-SGD (Li et al. 2017): MAML whose inner learning rate is a meta-learned tensor per parameter.

The inner step is θ' = θ − α ∘ ∇L_support(θ) with α the same shape as θ (element-wise
product), and α is trained by the outer loop together with θ. With α frozen at a constant
this is exactly MAML (tested). Following the paper, one inner step is used at training
and at test time.
"""
from __future__ import annotations

import torch
from torch import nn

from ..budget import pick
from ..learner import Recipe
from .maml import MAML, StepLR, check_lr, step_lrs


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


class MetaSGD(MAML):
    """Strided Conv-4 + head; ``alpha`` holds one learning rate per weight, initialised to ``inner_lr``."""

    method = "metasgd"

    def __init__(self, ways: int = 5, hidden: int = 64, in_channels: int = 1, inner_steps: int = 1,
                 inner_lr: float = 0.4, test_inner_steps: int = 1, first_order: bool = False,
                 learn_rates: bool = True):
        init = check_lr(inner_lr)
        config = {"ways": ways, "hidden": hidden, "in_channels": in_channels, "inner_steps": inner_steps,
                  "inner_lr": inner_lr, "test_inner_steps": test_inner_steps, "first_order": first_order,
                  "learn_rates": learn_rates}
        super().__init__(ways=ways, hidden=hidden, in_channels=in_channels, inner_steps=inner_steps,
                         inner_lr=init, test_inner_steps=test_inner_steps, first_order=first_order, config=config)
        self.alpha = nn.ParameterDict({
            _key(n): nn.Parameter(torch.full_like(p, init), requires_grad=learn_rates)
            for n, p in self.net.named_parameters()})

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        five = ways <= 5
        model = {"ways": ways, "inner_steps": 1, "test_inner_steps": 1, "inner_lr": 0.4 if five else 0.1}
        return Recipe(ways=ways, shots=shots, queries=5, meta_batch=pick(budget, smoke=4, full=32 if five else 16),
                      steps=pick(budget, smoke=30, full=cls.full_steps(ways, shots)), lr=1e-3,
                      test_ways=ways, test_shots=shots, model=model,
                      deviations={"recipe": "Li et al. give no complete Omniglot recipe; MAML's (Finn et al.) "
                                            "is used, with one inner step as in their paper"})

    def rates(self, steps: int) -> list[StepLR]:
        per_param = {n: self.alpha[_key(n)] for n, _ in self.net.named_parameters()}
        return step_lrs([per_param], steps)
