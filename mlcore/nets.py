"""Backbones shared by the chapters: Conv-4 (max-pool or strided) and an MLP.

Both are plain ``nn.Module`` s with no hidden state besides batch-norm buffers, so
``torch.func.functional_call(model, params, x)`` works on them (the MAML chapter relies
on that).
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager

import torch
from torch import nn


def conv_block(in_ch: int, out_ch: int, pool: str = "max", track_running_stats: bool = True,
               padding: int = 1) -> nn.Sequential:
    """3x3 conv -> BN -> ReLU -> downsample (2x2 max-pool, 'stride' = stride-2 conv, or 'none').

    ``padding`` 1 keeps the side (Conv-4); 0 is the Relation Network's unpadded conv (side - 2).
    """
    if pool not in ("max", "stride", "none"):
        raise ValueError(f"pool must be 'max', 'stride' or 'none', got {pool!r}")
    if padding not in (0, 1):
        raise ValueError(f"padding must be 0 or 1, got {padding!r}")
    stride = 2 if pool == "stride" else 1
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=padding),
        nn.BatchNorm2d(out_ch, track_running_stats=track_running_stats),
        nn.ReLU(inplace=False),
    ]
    if pool == "max":
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(nn.Module):
    """The four-block embedding of the few-shot literature.

    ``pool='max'`` is ProtoNet / Matching Networks' version (28x28 -> 64x1x1);
    ``pool='stride'`` is MAML's Omniglot version (strided convs instead of pooling).
    ``out_dim`` (optional) adds a linear head, as MAML uses.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, pool: str = "max", out_dim: int | None = None,
                 track_running_stats: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, hidden, pool, track_running_stats),
            conv_block(hidden, hidden, pool, track_running_stats),
            conv_block(hidden, hidden, pool, track_running_stats),
            conv_block(hidden, hidden, pool, track_running_stats),
        )
        self.head = nn.Linear(hidden, out_dim) if out_dim else None
        self.hidden = hidden

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) -> (n, D), spatially averaged if more than 1x1 is left."""
        if x.ndim != 4:
            raise ValueError(f"Conv4 expects (n, C, H, W) images, got shape {tuple(x.shape)}")
        h = self.features(x)
        return h.mean(dim=(2, 3)) if h.shape[-1] * h.shape[-2] > 1 else h.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        return self.head(z) if self.head is not None else z


class MLP(nn.Module):
    """Fully connected ReLU net; ``MLP(1, [40, 40], 1)`` is Finn et al.'s sinusoid regressor."""

    def __init__(self, in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int):
        super().__init__()
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@contextmanager
def batch_statistics(module: nn.Module):
    """Within the block, every running-statistics batch norm of ``module`` normalises with the statistics of
    the batch it is given (transductive), and leaves its running statistics untouched.

    This is how Relation Networks' published numbers were measured (the authors' code never switches
    to eval mode); the book's own protocol uses the running statistics. The running buffers are hidden for the
    block (a batch norm without them normalises with the batch in train and eval mode alike), so an
    ``eval()`` inside the block, as :func:`mlcore.engine.evaluate` calls, cannot bring them back.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean, m.running_var) for m in bns]
    try:
        for m in bns:
            m.running_mean, m.running_var = None, None
            m.track_running_stats = False
        yield module
    finally:
        for m, (mean, var) in zip(bns, saved):
            m.running_mean, m.running_var = mean, var
            m.track_running_stats = True
