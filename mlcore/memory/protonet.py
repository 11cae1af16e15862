"""Prototypical Networks (Snell et al. 2017), top to bottom.

A class is represented by the mean embedding of its support images (its *prototype*);
a query is scored by the negative squared Euclidean distance to each prototype. The
support set acts as the model's memory: writing is averaging, reading is a softmax over
distances.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..budget import pick
from ..data.episodes import Episode
from ..learner import FewShotLearner, Recipe, check_task
from ..nets import Conv4


def prototypes(support_z: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """Class means of support embeddings: (..., n, D), (..., n) -> (..., N, D)."""
    onehot = F.one_hot(support_y, ways).to(support_z.dtype)  # (..., n, N)
    counts = onehot.sum(-2).unsqueeze(-1)  # (..., N, 1)
    return onehot.transpose(-1, -2) @ support_z / counts


def prototype_logits(query_z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances: (..., m, D), (..., N, D) -> (..., m, N).

    Computed in at least float32, also under autocast: the expansion below cancels when embeddings are long
    and close together, which bf16's 8-bit mantissa cannot afford (chapter 8 shows it); the encoder, where the
    time goes, may still run in bf16.
    """
    dtype = torch.promote_types(query_z.dtype, torch.float32)
    with torch.autocast(query_z.device.type, enabled=False):
        query_z, protos = query_z.to(dtype), protos.to(dtype)
        # ||q - p||^2 expanded; clamp guards tiny negative values from cancellation
        d2 = (query_z.pow(2).sum(-1, keepdim=True) - 2 * query_z @ protos.transpose(-1, -2)
              + protos.pow(2).sum(-1).unsqueeze(-2))
    return -d2.clamp_min(0)


class ProtoNet(FewShotLearner):
    """Conv-4 (max-pool) embedding + prototype classifier."""

    method = "protonet"

    def __init__(self, hidden: int = 64, in_channels: int = 1):
        super().__init__(hidden=hidden, in_channels=in_channels)
        self.encoder = Conv4(in_channels, hidden, pool="max")

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        # Snell et al.: 60-way training episodes, 5 queries per class, shot = test shot,
        # Adam 1e-3 halved every 2,000 episodes.
        return Recipe(ways=pick(budget, smoke=20, full=60), shots=shots, queries=5, meta_batch=1,
                      steps=pick(budget, smoke=60, full=10000), lr=1e-3, lr_step=2000, lr_gamma=0.5,
                      test_ways=ways, test_shots=shots, model={"hidden": 64}, extra={"channels_last": True},
                      deviations={"steps": "Snell et al. trained until validation loss stopped improving, then "
                                           "retrained on train+val; a fixed 10,000 episodes here"})

    def _logits(self, sx, sy, qx, ways: int) -> torch.Tensor:
        b = sx.shape[0]
        z = self.encoder.embed(torch.cat([sx.flatten(0, 1), qx.flatten(0, 1)]))
        zs, zq = z[: sx.shape[0] * sx.shape[1]], z[sx.shape[0] * sx.shape[1]:]
        protos = prototypes(zs.view(b, sx.shape[1], -1), sy, ways)
        return prototype_logits(zq.view(b, qx.shape[1], -1), protos)

    def meta_loss(self, episodes: Episode) -> tuple[torch.Tensor, dict]:
        logits = self._logits(episodes.support_x, episodes.support_y, episodes.query_x, episodes.ways)
        loss = F.cross_entropy(logits.flatten(0, 1), episodes.query_y.flatten())
        acc = (logits.argmax(-1) == episodes.query_y).float().mean()
        return loss, {"acc": acc.detach()}

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        support_x, query_x = self.as_input(support_x), self.as_input(query_x)  # raw drawings of any size
        ways = check_task(support_x, support_y, query_x)
        return self._logits(support_x[None], support_y[None], query_x[None], ways)[0]

    def predict_batch(self, episodes: Episode) -> torch.Tensor:
        return self._logits(episodes.support_x, episodes.support_y, episodes.query_x, episodes.ways)
