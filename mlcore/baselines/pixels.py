"""Nearest class mean in raw pixel space: the no-learning yardstick.

No training and no features: a query takes the label of the class whose support images' mean is
nearest in squared Euclidean distance over pixels. It tells how much a learned embedding adds over
raw pixels on the same episodes (chapters 9 and 10, the domain-shift study).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.episodes import Episode


class PixelCentroids(torch.nn.Module):
    """No learning at all: classify a query by its nearest class mean in raw pixel space."""

    needs_grad_at_test = False

    def predict_batch(self, ep: Episode) -> torch.Tensor:
        n = ep.ways
        s = ep.support_x.flatten(2)  # (B, N*K, D)
        onehot = F.one_hot(ep.support_y, n).float()  # (B, N*K, N)
        protos = onehot.transpose(1, 2) @ s / onehot.sum(1)[..., None]  # (B, N, D)
        return -torch.cdist(ep.query_x.flatten(2), protos) ** 2
