"""N-way K-shot episodes, drawn straight from device-resident tensors.

An :class:`Episode` holds a *batch of tasks* (leading dimension ``B``). Labels inside a
task are ``0..N-1`` in class-major order. Indices are drawn with a CPU
``torch.Generator`` and the images gathered on the device, so the same seed gives the
same episodes on a laptop and on a GPU, and every method in the book is scored on the
very same test tasks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .omniglot import DRAWERS, ClassSet, rotate_quarter_turns


@dataclass
class Episode:
    """A batch of ``B`` few-shot tasks.

    support_x: (B, N*K, C, H, W)   support_y: (B, N*K) in 0..N-1, class-major
    query_x:   (B, N*Q, C, H, W)   query_y:   (B, N*Q)
    classes:   (B, N) global class indices of the split (useful for analysis)
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    ways: int
    shots: int
    queries: int
    classes: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> Episode:
        """Task ``i`` of the batch, keeping a leading batch dimension of 1."""
        sl = slice(i, i + 1)
        return Episode(self.support_x[sl], self.support_y[sl], self.query_x[sl], self.query_y[sl], self.ways,
                       self.shots, self.queries, None if self.classes is None else self.classes[sl])

    def to(self, device) -> Episode:
        return Episode(self.support_x.to(device), self.support_y.to(device), self.query_x.to(device),
                       self.query_y.to(device), self.ways, self.shots, self.queries,
                       None if self.classes is None else self.classes.to(device))


def _check_positive(**kw) -> None:
    for k, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}")


class EpisodeSampler:
    """Seeded sampler of N-way K-shot Q-query episodes from a :class:`~mlcore.data.omniglot.ClassSet`.

    Parameters
    ----------
    classes
        the split to draw from (its tensors are moved to ``device`` once).
    ways, shots, queries
        N, K, Q. ``shots + queries`` may not exceed the 20 drawers.
    batch_size
        tasks per call of :meth:`sample`.
    within_alphabet
        draw all N classes of a task from one alphabet (Lake's protocol).
    episode_rotation
        draw the N classes among the split's unrotated characters and rotate the whole task by
        one random multiple of 90 degrees (Sung et al.'s augmentation for Relation Networks),
        rather than treating each rotation of a character as a class of its own.
    seed
        seeds the CPU generator; :meth:`state_dict` captures it for exact resume.
    """

    def __init__(self, classes: ClassSet, ways: int, shots: int, queries: int, batch_size: int = 1,
                 device: str | torch.device = "cpu", seed: int = 0, within_alphabet: bool = False,
                 episode_rotation: bool = False):
        _check_positive(ways=ways, shots=shots, queries=queries, batch_size=batch_size)
        if ways < 2:
            raise ValueError(f"ways must be at least 2 (a 1-way task has nothing to classify), got {ways}")
        if shots + queries > DRAWERS:
            raise ValueError(f"shots + queries = {shots + queries} exceeds the {DRAWERS} drawings per Omniglot "
                             f"class; use shots + queries <= {DRAWERS}")
        if ways > classes.num_classes:
            raise ValueError(f"ways = {ways} exceeds the {classes.num_classes} classes of split "
                             f"{classes.name!r}; use ways <= {classes.num_classes}")
        self.device = torch.device(device)
        self.classes = classes.to(self.device)
        self.ways, self.shots, self.queries, self.batch_size = ways, shots, queries, batch_size
        self.within_alphabet = within_alphabet
        self.episode_rotation = episode_rotation
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._upright = None
        if episode_rotation:
            if within_alphabet:
                raise ValueError("episode_rotation and within_alphabet cannot be combined")
            self._upright = torch.nonzero(classes.class_rot.cpu() == 0).flatten()
            if len(self._upright) < ways:
                raise ValueError(f"episode_rotation needs >= {ways} unrotated classes; split {classes.name!r} has "
                                 f"{len(self._upright)}")
        if within_alphabet:
            alph = classes.class_alphabet.cpu()
            groups = [torch.nonzero(alph == a).flatten() for a in range(len(classes.alphabets))]
            self._groups = [g for g in groups if len(g) >= ways]
            if not self._groups:
                biggest = max(len(g) for g in groups)
                raise ValueError(f"within_alphabet needs an alphabet with >= {ways} classes; the largest in "
                                 f"{classes.name!r} has {biggest}")

    # -- resumable state ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    # -- sampling --------------------------------------------------------------------
    def _draw_classes(self, b: int) -> torch.Tensor:
        g = self.generator
        if self._upright is not None:
            pick = torch.rand(b, len(self._upright), generator=g).argsort(dim=1)[:, : self.ways]
            return self._upright[pick]
        if not self.within_alphabet:
            return torch.rand(b, self.classes.num_classes, generator=g).argsort(dim=1)[:, : self.ways]
        out = []
        for _ in range(b):
            grp = self._groups[int(torch.randint(len(self._groups), (1,), generator=g))]
            out.append(grp[torch.randperm(len(grp), generator=g)[: self.ways]])
        return torch.stack(out)

    def sample_indices(self, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (classes (B, N), drawers (B, N, K+Q)) on the CPU."""
        b = batch_size or self.batch_size
        cls = self._draw_classes(b)
        drawers = torch.rand(b, self.ways, DRAWERS, generator=self.generator).argsort(dim=2)
        drawers = drawers[:, :, : self.shots + self.queries]
        if self._upright is not None:
            # the episode's one rotation, carried in the drawer indices' spare high bits: k * DRAWERS
            turn = torch.randint(4, (b, 1, 1), generator=self.generator)
            drawers = drawers + turn * DRAWERS
        return cls, drawers

    def episode_from_indices(self, cls: torch.Tensor, drawers: torch.Tensor) -> Episode:
        cs, dev = self.classes, self.device
        cls_d, drw_d = cls.to(dev), drawers.to(dev)
        b, n, m = drw_d.shape
        turn, drw_d = drw_d // DRAWERS, drw_d % DRAWERS  # an episode-wide rotation, if episode_rotation
        chars = cs.class_char[cls_d]  # (B, N)
        x = cs.images[chars[..., None], drw_d]  # (B, N, K+Q, C, H, W)
        x = rotate_quarter_turns(x, (cs.class_rot[cls_d][..., None].expand(b, n, m) + turn) % 4)
        k, q = self.shots, self.queries
        labels = torch.arange(n, device=dev)
        sx = x[:, :, :k].reshape(b, n * k, *x.shape[3:])
        qx = x[:, :, k:].reshape(b, n * q, *x.shape[3:])
        sy = labels.repeat_interleave(k).expand(b, n * k)
        qy = labels.repeat_interleave(q).expand(b, n * q)
        return Episode(sx, sy.contiguous(), qx, qy.contiguous(), n, k, q, cls_d)

    def sample(self, batch_size: int | None = None) -> Episode:
        """A batch of tasks (``batch_size`` defaults to the sampler's)."""
        return self.episode_from_indices(*self.sample_indices(batch_size))

    def __iter__(self):
        while True:
            yield self.sample()

    def fixed_set(self, num_episodes: int, seed: int, chunk: int = 100):
        """Yield ``num_episodes`` single-task episodes from a generator seeded with ``seed``, in chunks.

        The sampler's own generator is untouched, so this can run in the middle of training.
        """
        _check_positive(num_episodes=num_episodes)
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        try:
            idx = [self.sample_indices(1) for _ in range(num_episodes)]
        finally:
            self.generator.set_state(saved)
        for start in range(0, num_episodes, chunk):
            part = idx[start:start + chunk]
            yield self.episode_from_indices(torch.cat([c for c, _ in part]), torch.cat([d for _, d in part]))
