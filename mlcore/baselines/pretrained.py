"""The transfer baseline: pre-train a classifier on all training classes, reuse its features.

Training is ordinary supervised learning: one Conv-4 with a 4,800-way linear head is
trained with cross-entropy on mini-batches of images from every class of
``vinyals/trainval`` (each rotation of a character is its own class). No episodes, no
notion of tasks. At test time the 4,800-way head is thrown away; the frozen backbone
embeds the support and query images of a new task, and the queries are labelled by

* ``classifier="linear"``: a new N-way logistic-regression head fitted on the support
  embeddings (full-batch Adam, a fixed number of steps), the "Baseline" of Chen et al.
  (2019, *A Closer Look at Few-shot Classification*), or
* ``classifier="centroid"``: the nearest class mean by cosine similarity (no fitting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..budget import pick
from ..data.omniglot import DRAWERS, ClassSet, rotate_quarter_turns
from ..learner import FewShotLearner, Recipe, check_task
from ..nets import Conv4

CLASSIFIERS = ("linear", "centroid")


@dataclass
class LabelledBatch:
    """A mini-batch of images with their global class labels (supervised pre-training)."""

    x: torch.Tensor  # (b, C, H, W)
    y: torch.Tensor  # (b,) in 0..num_classes-1


class ClassBatchSampler:
    """Epochs over every image of a :class:`~mlcore.data.omniglot.ClassSet`, shuffled, in mini-batches.

    An image is a (class, drawer) pair, so a split with C classes has 20*C images per
    epoch; the class's rotation is applied when the batch is gathered (on the device).
    The order of epoch ``e`` is a permutation drawn from a generator seeded by
    ``(seed, e)``, so :meth:`state_dict` only needs ``(epoch, position)`` for an exact
    resume. The last incomplete batch of an epoch is dropped (every batch has the same size).
    """

    def __init__(self, classes: ClassSet, batch_size: int, device: str | torch.device = "cpu", seed: int = 0):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        total = classes.num_classes * DRAWERS
        if batch_size > total:
            raise ValueError(f"batch_size = {batch_size} exceeds the {total} images of split {classes.name!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.device = torch.device(device)
        self.classes = classes.to(self.device)
        self.batch_size, self.seed, self.num_images = batch_size, seed, total
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    @property
    def batches_per_epoch(self) -> int:
        return self.num_images // self.batch_size

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_images, generator=g)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError(f"sampler state was saved with seed={state['seed']}, batch_size={state['batch_size']}; "
                             f"this sampler has seed={self.seed}, batch_size={self.batch_size}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)

    def sample_indices(self) -> torch.Tensor:
        """The next batch's flat image indices (class * 20 + drawer), advancing the state."""
        if self.position + self.batch_size > self.num_images:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        idx = self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def gather(self, idx: torch.Tensor) -> LabelledBatch:
        cs = self.classes
        idx = idx.to(self.device)
        cls, drawer = idx // DRAWERS, idx % DRAWERS
        x = cs.images[cs.class_char[cls], drawer]  # (b, C, H, W)
        return LabelledBatch(rotate_quarter_turns(x, cs.class_rot[cls]), cls)  # each class's quarter turns

    def sample(self) -> LabelledBatch:
        return self.gather(self.sample_indices())


def fit_linear_probe(support_z: torch.Tensor, support_y: torch.Tensor, ways: int, steps: int, lr: float,
                     weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit B softmax-regression heads on (B, n, D) features at once; returns W (B, N, D), b (B, N)."""
    b, _, d = support_z.shape
    w = torch.zeros(b, ways, d, device=support_z.device, requires_grad=True)
    bias = torch.zeros(b, ways, device=support_z.device, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            logits = torch.einsum("bnd,bkd->bnk", support_z, w) + bias[:, None]
            # sum over tasks of each task's mean loss: the tasks' heads are independent
            loss = F.cross_entropy(logits.flatten(0, 1), support_y.flatten(), reduction="sum") / support_y.shape[1]
            loss = loss + weight_decay * w.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return w.detach(), bias.detach()


class Pretrained(FewShotLearner):
    """Conv-4 trained as a ``num_classes``-way classifier; new tasks via a linear probe or nearest centroid.

    Config: ``num_classes`` (the pre-training classes, 4,800 for ``vinyals/trainval``),
    ``classifier`` ("linear" or "centroid"), and the probe's ``probe_steps``, ``probe_lr``,
    ``probe_weight_decay``.
    """

    method = "pretrained"

    def __init__(self, hidden: int = 64, num_classes: int = 4800, classifier: str = "linear",
                 probe_steps: int = 100, probe_lr: float = 0.1, probe_weight_decay: float = 1e-3,
                 in_channels: int = 1):
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if not isinstance(probe_steps, int) or probe_steps < 1:
            raise ValueError(f"probe_steps must be a positive int, got {probe_steps!r}")
        if not math.isfinite(probe_lr) or probe_lr <= 0:
            raise ValueError(f"probe_lr must be a positive finite number, got {probe_lr!r}")
        super().__init__(hidden=hidden, num_classes=num_classes, classifier=classifier, probe_steps=probe_steps,
                         probe_lr=probe_lr, probe_weight_decay=probe_weight_decay, in_channels=in_channels)
        self.classifier = classifier
        self.probe_steps, self.probe_lr, self.probe_weight_decay = probe_steps, probe_lr, probe_weight_decay
        self.encoder = Conv4(in_channels, hidden, pool="max")
        self.head = torch.nn.Linear(hidden, num_classes)

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        # ``ways``/``shots`` only set the test task: pre-training ignores them (all classes at once).
        return Recipe(ways=ways, shots=shots, steps=pick(budget, smoke=30, full=6000), lr=1e-3,
                      lr_step=pick(budget, smoke=None, full=3000), lr_gamma=0.5, test_ways=ways, test_shots=shots,
                      model={"hidden": 64, "num_classes": 4800, "classifier": "linear"},
                      extra={"batch_size": pick(budget, smoke=64, full=128)})

    def make_train_sampler(self, recipe: Recipe, device, seed: int) -> ClassBatchSampler:
        from ..data.omniglot import load_split

        classes = load_split(recipe.train_split)
        if classes.num_classes != self.head.out_features:
            raise ValueError(f"split {recipe.train_split!r} has {classes.num_classes} classes but the head has "
                             f"{self.head.out_features}; set model num_classes={classes.num_classes}")
        return ClassBatchSampler(classes, recipe.extra.get("batch_size", 128), device, seed)

    def meta_loss(self, batch: LabelledBatch) -> tuple[torch.Tensor, dict]:
        """Plain supervised cross-entropy over all pre-training classes (named meta_loss for the engine)."""
        if not isinstance(batch, LabelledBatch):
            raise ValueError(f"Pretrained trains on LabelledBatch mini-batches from ClassBatchSampler, got "  # noqa: TRY004 (house style: ValueError for bad input)
                             f"{type(batch).__name__}")
        logits = self.head(self.encoder.embed(batch.x))
        loss = F.cross_entropy(logits, batch.y)
        return loss, {"acc": (logits.argmax(-1) == batch.y).float().mean().detach()}

    def _logits(self, sx, sy, qx, ways: int) -> torch.Tensor:
        b, n = sy.shape
        with torch.no_grad():  # the backbone is frozen: its features are fixed inputs to the new head
            z = self.encoder.embed(torch.cat([sx.flatten(0, 1), qx.flatten(0, 1)]))
        zs, zq = z[: b * n].view(b, n, -1), z[b * n:].view(b, qx.shape[1], -1)
        if self.classifier == "centroid":
            onehot = F.one_hot(sy, ways).to(zs.dtype)  # (B, n, N)
            means = onehot.transpose(1, 2) @ zs / onehot.sum(1).unsqueeze(-1)
            return 10.0 * F.normalize(zq, dim=-1) @ F.normalize(means, dim=-1).transpose(1, 2)
        # Linear probe on L2-normalised features: normalising makes one learning rate work
        # across tasks whose feature norms differ.
        zs, zq = F.normalize(zs, dim=-1), F.normalize(zq, dim=-1)
        w, bias = fit_linear_probe(zs, sy, ways, self.probe_steps, self.probe_lr, self.probe_weight_decay)
        return torch.einsum("bqd,bkd->bqk", zq, w) + bias[:, None]

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        support_x, query_x = self.as_input(support_x), self.as_input(query_x)  # raw drawings of any size
        ways = check_task(support_x, support_y, query_x)
        return self._logits(support_x[None], support_y[None].long(), query_x[None], ways)[0]

    def predict_batch(self, episodes) -> torch.Tensor:
        return self._logits(episodes.support_x, episodes.support_y, episodes.query_x, episodes.ways)
