"""Handwritten digits framed like Omniglot's characters: the new domain of the domain-shift study.

scikit-learn's bundled ``load_digits`` (1,797 images, 8x8 pixels, 16 grey levels, from the UCI
"Optical Recognition of Handwritten Digits" set; it ships inside scikit-learn, so nothing is
downloaded). The digits are scaled to ink = 1 on a 0 background (Omniglot's convention), upsampled
bilinearly to 20x20 and padded to 28x28 (Omniglot's characters sit inside a margin too), so image
size and framing match what a network trained on Omniglot saw; strokes are thicker and blurrier than
Omniglot's pen strokes -- that *is* part of the shift. :class:`DigitEpisodes` draws seeded N-way
K-shot episodes of them, the same :class:`~mlcore.data.episodes.Episode` as Omniglot's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..runtime import get_device
from .episodes import Episode

DIGITS_SOURCE = ("scikit-learn load_digits: 1,797 8x8 handwritten digits (UCI Optical Recognition of "
                 "Handwritten Digits test set), bundled with scikit-learn, no download")


def load_digits_28(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits as ``(images (n, 1, size, size) float in [0, 1], ink = 1; labels (n,))``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits domain-shift test needs scikit-learn (pip install scikit-learn); "
                          "its load_digits data ship inside the package, nothing is downloaded") from e
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # 16 = full ink, 0 = background
    # the 8x8 digits fill their frame; Omniglot characters sit inside a margin: upsample to 5/7 of the
    # side and pad, so the frame is not a trivial difference between the domains
    inner = round(size * 5 / 7)
    x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    pad = (size - inner) // 2
    x = F.pad(x, (pad, size - inner - pad, pad, size - inner - pad))
    return x, torch.as_tensor(d.target, dtype=torch.long)


class DigitEpisodes:
    """Seeded N-way K-shot Q-query episodes of digits, with the ``fixed_set`` that
    :func:`mlcore.engine.evaluate` uses.

    Each episode picks N of the 10 digit classes, then K + Q distinct images of each (every class
    has >= 174 images). Labels are 0..N-1 class-major, as in :class:`mlcore.data.episodes.EpisodeSampler`.
    """

    def __init__(self, ways: int = 5, shots: int = 1, queries: int = 15, device=None,
                 images: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        if images is None:
            images, labels = load_digits_28()
        self.num_classes = int(labels.max()) + 1
        self.by_class = [torch.nonzero(labels == c).flatten() for c in range(self.num_classes)]
        smallest = min(len(i) for i in self.by_class)
        if not 2 <= ways <= self.num_classes:
            raise ValueError(f"ways must be in [2, {self.num_classes}] for digits, got {ways}")
        if shots < 1 or queries < 1 or shots + queries > smallest:
            raise ValueError(f"need shots >= 1, queries >= 1 and shots + queries <= {smallest} "
                             f"(images in the smallest digit class); got {shots} + {queries}")
        self.images = images
        self.ways, self.shots, self.queries = ways, shots, queries
        self.device = get_device(device)

    def _episode(self, g: torch.Generator, b: int) -> Episode:
        n, k, q = self.ways, self.shots, self.queries
        idx = torch.empty(b, n, k + q, dtype=torch.long)
        cls = torch.empty(b, n, dtype=torch.long)
        for i in range(b):
            cls[i] = torch.randperm(self.num_classes, generator=g)[:n]
            for j, c in enumerate(cls[i].tolist()):
                pool = self.by_class[c]
                idx[i, j] = pool[torch.randperm(len(pool), generator=g)[: k + q]]
        x = self.images[idx].to(self.device)  # (B, N, K+Q, 1, H, W)
        labels = torch.arange(n, device=self.device)
        sx = x[:, :, :k].reshape(b, n * k, *x.shape[3:])
        qx = x[:, :, k:].reshape(b, n * q, *x.shape[3:])
        sy = labels.repeat_interleave(k).expand(b, n * k).contiguous()
        qy = labels.repeat_interleave(q).expand(b, n * q).contiguous()
        return Episode(sx, sy, qx, qy, n, k, q, cls.to(self.device))

    def fixed_set(self, num_episodes: int, seed: int, chunk: int = 100):
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        g = torch.Generator().manual_seed(seed)
        done = 0
        while done < num_episodes:
            b = min(chunk, num_episodes - done)
            yield self._episode(g, b)
            done += b


def ink_statistics(x: torch.Tensor) -> dict:
    """Mean ink per image and fraction of pixels with ink > 0.5: how the two domains differ at a glance."""
    return {"mean_ink": float(x.mean()), "inked_fraction": float((x > 0.5).float().mean()),
            "n": int(x.shape[0]), "std_ink": float(x.flatten(1).mean(1).std()) if x.shape[0] > 1 else math.nan}
