"""A learned metric between *tasks*, and nearest-task transfer (the source article's §4.1).

The article proposes learning a similarity f_theta(T_i, T_j) between tasks by minimising

    L(theta) = sum_{(i, j)} ( f_theta(T_i, T_j) - y_ij )^2,

and, for a new task, transferring what was learned on the most similar training task. The pieces:

* **Tasks.** :class:`Task` (a support set, optional queries, the alphabet it came from);
  :func:`make_task`, :func:`alphabet_split`.
* **The metric.** :class:`TaskSimilarity`, a symmetric head on two task embeddings, and
  :func:`similarity_loss`, the article's sum of squares. Two ways to embed a task:
  :class:`SetTaskEncoder` (Deep Sets over the support images, trained end to end with the head,
  :func:`train_set_similarity`) and :class:`LearnedTaskMetric` (an MLP on fixed mean embeddings,
  trained on any labels with :func:`train_task_metric`). :func:`gain_labels` turns a *measured*
  transfer matrix into the labels y_ij: "this source helps this task", not a proxy.
* **Task2Vec** (Achille et al. 2019): :func:`task2vec`, the diagonal Fisher of a fixed probe on the
  task, and :func:`task2vec_similarity`.
* **Transfer.** :func:`train_feature_net` trains a source network (and says how well it generalises
  to held-out drawings); :func:`feature_bank` embeds every image under every network once;
  :func:`frozen_transfer_accuracy` solves a new task by nearest centroids on a source's frozen
  features, for every source at once; :func:`ensemble_transfer_accuracy` does it with several;
  :func:`fine_tune_accuracy` fine-tunes every weight instead.
* **Retrieval from the support set alone.** :func:`support_loo_score`, each source's leave-one-out
  log-likelihood on the new task's support set; :func:`rank_correlation` to judge any score
  against measured transfer.

Every network here trains through :func:`mlcore.engine.fit`, the loop of every learner in the book:
:class:`SetSimilarity` on :class:`TaskPairSampler`'s pairs, :class:`SourceClassifier` on
:class:`DrawingSampler`'s drawings, :class:`LearnedTaskMetric` on all its labelled pairs at once.

The study that runs all of it and writes its record is :mod:`mlcore.experiments.task_similarity`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.omniglot import DRAWERS, ClassSet
from ..engine import fit
from ..learner import TrainableModule
from ..nets import Conv4
from .siamese import distort


def seeded(seed: int, build):
    """``build()`` under ``torch.manual_seed(seed)``, leaving the caller's global RNG state as it was.

    Networks are initialised from the global generator; seeding it here makes every function of
    this module reproducible without changing the random stream of the code that calls it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# --------------------------------------------------------------------------- tasks
@dataclass
class Task:
    """A classification task: ``support`` (n, 1, H, W) with labels, optional ``query``; ``alphabet`` index."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    alphabet: int
    chars: list[int]
    query_x: torch.Tensor | None = None
    query_y: torch.Tensor | None = None

    def to(self, device) -> Task:
        """The same task with its images on ``device`` (labels stay where they are)."""
        return Task(self.support_x.to(device), self.support_y.to(device), self.alphabet, self.chars,
                    None if self.query_x is None else self.query_x.to(device), self.query_y)


def alphabet_split(cs: ClassSet, target_ways: int, alphabets: int | None = None) -> list[tuple[list, list]]:
    """Per alphabet: (source class indices, target class indices = its last ``target_ways`` characters)."""
    out = []
    for a in range(len(cs.alphabets) if alphabets is None else alphabets):
        idx = torch.nonzero(cs.class_alphabet.cpu() == a).flatten().tolist()
        if len(idx) < target_ways + 2 * 4:
            raise ValueError(f"alphabet {cs.alphabets[a]!r} has {len(idx)} characters; need >= {target_ways + 8}")
        out.append((idx[:-target_ways], idx[-target_ways:]))
    return out


def make_task(cs: ClassSet, chars: list[int], alphabet: int, shots: int, queries: int,
              generator: torch.Generator) -> Task:
    """A task over ``chars`` with ``shots`` support and ``queries`` query drawings per class (labels 0..N-1)."""
    if shots + queries > DRAWERS:
        raise ValueError(f"shots + queries = {shots + queries} exceeds the {DRAWERS} drawings of a character")
    dr = torch.rand(len(chars), DRAWERS, generator=generator).argsort(1)
    imgs = cs.images[torch.tensor(chars)[:, None], dr[:, : shots + queries]]  # (N, S+Q, 1, H, W)
    labels = torch.arange(len(chars))
    task = Task(imgs[:, :shots].flatten(0, 1), labels.repeat_interleave(shots), alphabet, list(chars))
    if queries:
        task.query_x, task.query_y = imgs[:, shots:].flatten(0, 1), labels.repeat_interleave(queries)
    return task


def random_subset(items: list[int], k: int, generator: torch.Generator, exclude: list[int] = ()) -> list[int]:
    pool = [i for i in items if i not in set(exclude)]
    return [pool[int(j)] for j in torch.randperm(len(pool), generator=generator)[:k]]


# --------------------------------------------------------------------------- task embeddings + similarity
class SetTaskEncoder(nn.Module):
    """Permutation-invariant task embedding: rho(mean_i phi(x_i)) over a task's support images."""

    def __init__(self, hidden: int = 32, dim: int = 32):
        super().__init__()
        self.phi = Conv4(1, hidden, pool="max")
        self.rho = nn.Sequential(nn.Linear(hidden, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward(self, support_x: torch.Tensor) -> torch.Tensor:
        """(n, 1, H, W) -> (dim,), or a batch (T, n, 1, H, W) -> (T, dim)."""
        batched = support_x.ndim == 5
        x = support_x if batched else support_x[None]
        z = self.phi.embed(x.flatten(0, 1)).view(x.shape[0], x.shape[1], -1).mean(1)
        e = self.rho(z)
        return e if batched else e[0]


class TaskSimilarity(nn.Module):
    """f_theta(T_i, T_j) in (0, 1), symmetric in its arguments: an MLP on ``(abs(e_i - e_j), e_i * e_j)``."""

    def __init__(self, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, e_i: torch.Tensor, e_j: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(torch.cat([(e_i - e_j).abs(), e_i * e_j], -1)).squeeze(-1))


def similarity_loss(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The article's §4.1 objective: sum over pairs of (f_theta(T_i, T_j) - y_ij)^2."""
    return ((f - y) ** 2).sum()


def sample_task_pairs(cs: ClassSet, split: list[tuple[list, list]], pairs: int, ways: int, shots: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """``pairs`` task pairs from the source characters, half from one alphabet (disjoint characters).

    Returns (x_i (P, ways*shots, 1, H, W), x_j, y (P,), alphabets [(a_i, a_j)]).
    """
    xi, xj, ys, al = [], [], [], []
    A = len(split)
    for p in range(pairs):
        same = p % 2 == 0
        a = int(torch.randint(A, (1,), generator=generator))
        b = a if same else (a + 1 + int(torch.randint(A - 1, (1,), generator=generator))) % A
        ci = random_subset(split[a][0], ways, generator)
        cj = random_subset(split[b][0], ways, generator, exclude=ci)
        xi.append(make_task(cs, ci, a, shots, 0, generator).support_x)
        xj.append(make_task(cs, cj, b, shots, 0, generator).support_x)
        ys.append(float(same))
        al.append((a, b))
    return torch.stack(xi), torch.stack(xj), torch.tensor(ys), al


class TaskPairSampler:
    """Batches of labelled task pairs (:func:`sample_task_pairs`) from one seeded generator, for :func:`~mlcore.engine.fit`."""

    def __init__(self, cs: ClassSet, split, pairs: int, ways: int, shots: int, seed: int = 0):
        self.cs, self.split, self.pairs, self.ways, self.shots = cs, split, pairs, ways, shots
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_i, x_j, y): the two tasks' support images and 1 for a same-alphabet pair, else 0."""
        xi, xj, y, _ = sample_task_pairs(self.cs, self.split, self.pairs, self.ways, self.shots, self.generator)
        return xi, xj, y

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class SetSimilarity(TrainableModule):
    """SetTaskEncoder + TaskSimilarity trained end to end; ``meta_loss`` is the §4.1 sum of squares on a batch."""

    def __init__(self, enc: SetTaskEncoder, sim: TaskSimilarity):
        super().__init__()
        self.enc, self.sim = enc, sim

    def meta_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        xi, xj, y = (t.to(self.device) for t in batch)
        return similarity_loss(self.sim(self.enc(xi), self.enc(xj)), y), {}


def train_set_similarity(cs: ClassSet, split, steps: int, pairs: int = 16, ways: int = 4, shots: int = 5,
                         hidden: int = 32, dim: int = 32, lr: float = 1e-3, seed: int = 0, device="cpu"):
    """Train SetTaskEncoder + TaskSimilarity end-to-end with the §4.1 squared loss; returns (enc, sim, history).

    ``history`` holds each step's loss per pair.
    """
    model = SetSimilarity(*seeded(seed, lambda: (SetTaskEncoder(hidden, dim).to(device),
                                                 TaskSimilarity(dim).to(device))))
    fr = fit(model, TaskPairSampler(cs, split, pairs, ways, shots, seed), steps, lr=lr, log_every=1, progress=False)
    return model.enc, model.sim, [h["loss"] / pairs for h in fr.history]  # fit leaves both in eval mode


# --------------------------------------------------------------------------- Task2Vec-style Fisher embedding
def task2vec(probe: Conv4, support_x: torch.Tensor, support_y: torch.Tensor, head_steps: int = 50,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Diagonal Fisher of the probe's conv weights on a task, averaged per filter (Task2Vec-style).

    A linear head is fitted on the frozen probe features; then, for each support image and a
    label sampled from the model's own predictive distribution (the true Fisher, not the
    empirical one), the squared gradient of log p(y|x) w.r.t. every conv weight is averaged.
    Returns one value per filter of each conv layer (4 * hidden numbers).
    """
    from torch.func import functional_call, grad, vmap

    dev = support_x.device
    ways = int(support_y.max()) + 1
    with torch.no_grad():
        feats = probe.embed(support_x)
    head = nn.Linear(feats.shape[1], ways).to(dev)
    nn.init.zeros_(head.weight)  # a convex fit from zero: the same task always gets the same embedding
    nn.init.zeros_(head.bias)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(head_steps):
        loss = F.cross_entropy(head(feats), support_y.to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        probs = F.softmax(head(feats), -1)
    g = generator or torch.Generator().manual_seed(0)
    y_model = torch.multinomial(probs.cpu(), 1, generator=g).flatten().to(dev)
    conv_names = [n for n, p in probe.named_parameters() if p.ndim == 4]
    params = {n: p.detach() for n, p in probe.named_parameters()}
    buffers = dict(probe.named_buffers())
    hw, hb = head.weight.detach(), head.bias.detach()

    def log_lik(conv_params, x, y):
        z = functional_call(probe, ({**params, **conv_params}, buffers), (x[None],), kwargs=None)
        return (F.log_softmax(z @ hw.T + hb, -1)[0] * y).sum()  # y one-hot: vmap-safe indexing

    conv = {n: params[n] for n in conv_names}
    per_example = vmap(grad(log_lik), in_dims=(None, 0, 0))(conv, support_x, F.one_hot(y_model, ways).float())
    return torch.cat([per_example[n].pow(2).mean(0).flatten(1).mean(1) for n in conv_names])


def task2vec_similarity(e_i: torch.Tensor, e_j: torch.Tensor) -> torch.Tensor:
    """Task2Vec's symmetric similarity: cosine of F_i/(F_i+F_j) and F_j/(F_i+F_j) (1 = identical)."""
    s = e_i + e_j + 1e-12
    return F.cosine_similarity(e_i / s, e_j / s, dim=-1)


# --------------------------------------------------------------------------- transfer
def transfer_net(hidden: int, ways: int) -> Conv4:
    # batch statistics in train and test alike (no running stats), so a warm start and a cold
    # start are treated identically when the support set is tiny
    return Conv4(1, hidden, pool="max", out_dim=ways, track_running_stats=False)


def fine_tune_accuracy(task: Task, init: dict | None, steps: int, hidden: int, seed: int, lr: float = 3e-3,
                       device="cpu") -> float:
    """Query accuracy after fine-tuning on the task's support set from ``init`` (a source state dict) or scratch.

    The source's classifier head is discarded (its classes mean nothing here): a fresh,
    zero-initialised head is put on the transferred features.
    """
    ways = int(task.support_y.max()) + 1
    net = seeded(seed, lambda: transfer_net(hidden, ways).to(device))
    if init is not None:
        net.load_state_dict({k: v for k, v in init.items() if not k.startswith("head.")}, strict=False)
    nn.init.zeros_(net.head.weight)
    nn.init.zeros_(net.head.bias)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, y = task.support_x.to(device), task.support_y.to(device)
    net.train()
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(task.query_x.to(device)).argmax(-1)
    return float((pred.cpu() == task.query_y).float().mean())


# --------------------------------------------------------------------------- transfer from frozen features
class DrawingSampler:
    """Batches of distorted drawings of ``classes`` with their labels 0..len(classes)-1, for :func:`~mlcore.engine.fit`.

    Each image is a random character and one of its drawings ``[0, train_drawings)``, distorted on
    ``device`` by :func:`~mlcore.metric.siamese.distort`; one seeded generator draws both.
    """

    def __init__(self, cs: ClassSet, classes: list[int], batch: int, train_drawings: int, seed: int = 0,
                 device="cpu"):
        self.images, self.classes = cs.images, torch.tensor(classes)
        self.batch, self.train_drawings, self.device = batch, train_drawings, device
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        c = torch.randint(len(self.classes), (self.batch,), generator=g)
        d = torch.randint(self.train_drawings, (self.batch,), generator=g)
        return distort(self.images[self.classes[c], d].to(self.device), g), c

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class SourceClassifier(TrainableModule):
    """A source network (``net``, a Conv-4 with a head) learning to classify its characters: cross-entropy."""

    def __init__(self, net: Conv4):
        super().__init__()
        self.net = net

    def meta_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, c = batch
        return F.cross_entropy(self.net(x), c.to(self.device)), {}


def train_feature_net(cs: ClassSet, classes: list[int], steps: int, hidden: int = 32, batch: int = 64,
                      lr: float = 1e-3, train_drawings: int = 15, seed: int = 0,
                      device="cpu") -> tuple[Conv4, float]:
    """A Conv-4 trained to classify ``classes`` on drawings ``[0, train_drawings)``, with affine distortions.

    Returns the network without its classifier head (what is transferred: its features) and its
    accuracy on the held-out drawings ``[train_drawings, 20)`` of the same characters, which says
    whether the source was trained long enough to be worth transferring from.
    """
    if not 1 <= train_drawings < DRAWERS:
        raise ValueError(f"train_drawings must be in [1, {DRAWERS - 1}], got {train_drawings}")
    net = seeded(seed, lambda: Conv4(1, hidden, pool="max", out_dim=len(classes)).to(device))
    sampler = DrawingSampler(cs, classes, batch, train_drawings, seed, device)
    fit(SourceClassifier(net), sampler, steps, lr=lr, log_every=max(1, steps), progress=False)
    # fit leaves the net in eval mode: batch norm uses the running statistics of training from here on
    with torch.no_grad():
        held = cs.images[sampler.classes][:, train_drawings:].flatten(0, 1).to(device)
        truth = torch.arange(len(classes)).repeat_interleave(DRAWERS - train_drawings)
        heldout_acc = float((net(held).argmax(-1).cpu() == truth).float().mean())
    net.head = None  # keep the feature extractor only
    return net, heldout_acc


@torch.no_grad()
def feature_bank(nets: list[nn.Module], images: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """Features of every image under every net: images (C, D, 1, H, W) -> (len(nets), C, D, dim)."""
    flat = images.flatten(0, 1)
    out = []
    for net in nets:
        net.eval()
        feats = torch.cat([net.embed(flat[i:i + batch]) for i in range(0, len(flat), batch)])
        out.append(feats.view(*images.shape[:2], -1))
    return torch.stack(out)


def prototype_logits(support: torch.Tensor, query: torch.Tensor, metric: str = "cosine",
                     scale: float = 10.0) -> torch.Tensor:
    """Nearest-centroid logits on frozen features: support (..., N, K, d), query (..., Q, d) -> (..., Q, N).

    ``cosine``: ``scale`` times the cosine between the query and each class's mean of normalised
    support features; ``euclidean``: minus the squared distance to the class mean (a ProtoNet head).
    """
    if metric == "cosine":
        c = F.normalize(F.normalize(support, dim=-1).mean(-2), dim=-1)
        return scale * F.normalize(query, dim=-1) @ c.transpose(-1, -2)
    if metric == "euclidean":
        return -torch.cdist(query, support.mean(-2)).pow(2)
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


def frozen_transfer_accuracy(bank: torch.Tensor, chars: torch.Tensor, drawings: torch.Tensor, shots: int,
                             metric: str = "cosine") -> torch.Tensor:
    """Query accuracy of nearest-centroid transfer from every model of ``bank`` at once.

    ``bank`` (M, C, D, d) from :func:`feature_bank`; a task is ``chars`` (N,) rows of the bank and
    ``drawings`` (N, D') in which the first ``shots`` are the support set, the rest the queries.
    Returns (M,) accuracies, one per model.
    """
    f = bank[:, chars[:, None], drawings]  # (M, N, D', d)
    sup, qry = f[:, :, :shots], f[:, :, shots:]
    n, q = qry.shape[1], qry.shape[2]
    logits = prototype_logits(sup, qry.flatten(1, 2), metric)
    truth = torch.arange(n).repeat_interleave(q)
    return (logits.argmax(-1) == truth).float().mean(-1)


def support_loo_score(bank: torch.Tensor, chars: torch.Tensor, drawings: torch.Tensor, shots: int,
                      metric: str = "cosine") -> torch.Tensor:
    """How well each model's features separate the *support set alone*: leave-one-out log-likelihood.

    Every support image is classified by the class means of the other support images (its own
    class without it), and the mean log-probability of its true class is the score, (M,). It needs
    no query and no label beyond the support set's, so it is a fair retrieval criterion; ``shots``
    must be at least 2.
    """
    if shots < 2:
        raise ValueError(f"leave-one-out needs at least 2 shots per class, got {shots}")
    f = bank[:, chars[:, None], drawings[:, :shots]]  # (M, N, K, d)
    if metric == "cosine":
        f = F.normalize(f, dim=-1)
    m, n, k, _ = f.shape
    total = f.sum(-2)  # (M, N, d)
    own = (total[:, :, None] - f) / (k - 1)  # each item's class mean without it, (M, N, K, d)
    means = total / k
    if metric == "cosine":
        own, means = F.normalize(own, dim=-1), F.normalize(means, dim=-1)
        logits = 10.0 * torch.einsum("mnkd,mcd->mnkc", f, means)
        own_logit = 10.0 * (f * own).sum(-1)
    else:
        logits = -(f[:, :, :, None] - means[:, None, None]).pow(2).sum(-1)
        own_logit = -(f - own).pow(2).sum(-1)
    eye = torch.eye(n, dtype=torch.bool)[None, :, None, :].expand(m, n, k, n)
    logits = torch.where(eye, own_logit[..., None].expand_as(logits), logits)
    return logits.log_softmax(-1).masked_select(eye).view(m, n, k).mean((1, 2))


def ensemble_transfer_accuracy(bank: torch.Tensor, models: torch.Tensor, chars: torch.Tensor,
                               drawings: torch.Tensor, shots: int, metric: str = "cosine") -> float:
    """Nearest-centroid transfer from several models at once: their logits summed (a top-k ensemble)."""
    f = bank[models][:, chars[:, None], drawings]
    sup, qry = f[:, :, :shots], f[:, :, shots:]
    n, q = qry.shape[1], qry.shape[2]
    logits = prototype_logits(sup, qry.flatten(1, 2), metric).sum(0)
    return float((logits.argmax(-1) == torch.arange(n).repeat_interleave(q)).float().mean())


# --------------------------------------------------------------------------- the metric learned on transfer gains
def gain_labels(acc: torch.Tensor) -> torch.Tensor:
    """The article's y_ij from a measured transfer matrix: each task's accuracies rescaled to [0, 1].

    ``acc`` (T, S) holds the accuracy on task i after transfer from source j; row-wise min-max
    scaling makes y = 1 for the most helpful source of each task and 0 for the least, so the
    loss weighs every task alike whatever its difficulty. A row with no spread gets 0.5 everywhere.
    """
    if acc.ndim != 2:
        raise ValueError(f"acc must be a (tasks, sources) matrix, got shape {tuple(acc.shape)}")
    lo, hi = acc.min(1, keepdim=True).values, acc.max(1, keepdim=True).values
    spread = hi - lo
    return torch.where(spread > 0, (acc - lo) / spread.clamp_min(1e-12), torch.full_like(acc, 0.5))


@dataclass
class LabelledPairs:
    """Every (task, source) pair of some tasks: their embeddings, the sources', the labels y and pair weights."""

    e_tasks: torch.Tensor  # (T, d)
    e_sources: torch.Tensor  # (S, d)
    y: torch.Tensor  # (T, S)
    weight: torch.Tensor  # (T, S)


class LearnedTaskMetric(TrainableModule):
    """f_theta(T_i, T_j) on fixed task embeddings: an MLP rho on each, then :class:`TaskSimilarity`."""

    def __init__(self, in_dim: int, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.rho = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.sim = TaskSimilarity(dim, hidden)

    def forward(self, e_i: torch.Tensor, e_j: torch.Tensor) -> torch.Tensor:
        return self.sim(self.rho(e_i), self.rho(e_j))

    def meta_loss(self, pairs: LabelledPairs) -> tuple[torch.Tensor, dict]:
        """The article's sum of squares over every pair, weighted, per unit weight."""
        e, src = pairs.e_tasks, pairs.e_sources
        f = self(e[:, None].expand(-1, len(src), -1), src[None].expand(len(e), -1, -1))
        return (pairs.weight * (f - pairs.y) ** 2).sum() / pairs.weight.sum(), {}


class _Always:
    """A sampler giving the same batch every step (full-batch training); it has no state to save."""

    def __init__(self, batch):
        self.batch = batch

    def sample(self):
        return self.batch

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def train_task_metric(e_tasks: torch.Tensor, e_sources: torch.Tensor, y: torch.Tensor, steps: int,
                      val: tuple[torch.Tensor, torch.Tensor] | None = None, weight: torch.Tensor | None = None,
                      lr: float = 1e-3, weight_decay: float = 1e-4, eval_every: int = 50,
                      seed: int = 0) -> tuple[LearnedTaskMetric, list[dict]]:
    """Fit f_theta to labels ``y`` (T, S) over every (task, source) pair with the §4.1 squared loss.

    ``weight`` (T, S) reweights pairs (e.g. to balance same / different alphabet); ``val`` =
    (held-out task embeddings, their labels) chooses the step to keep (the lowest validation loss),
    so nothing is selected on the test tasks. Returns the metric and its history: the training and
    validation losses after 0, ``eval_every``, 2 ``eval_every``, ... and ``steps`` steps.
    """
    metric = seeded(seed, lambda: LearnedTaskMetric(e_tasks.shape[1]))
    train = LabelledPairs(e_tasks, e_sources, y, torch.ones_like(y) if weight is None else weight)
    held = None if val is None else LabelledPairs(val[0], e_sources, val[1], torch.ones_like(val[1]))
    best, history = (float("inf"), None), []

    def evaluate(m: LearnedTaskMetric, step: int) -> dict:
        """Log both losses and keep the state if its validation loss is the lowest so far (the first on ties)."""
        nonlocal best
        with torch.no_grad():
            tr = float(m.meta_loss(train)[0])
            va = float(m.meta_loss(held)[0]) if held is not None else tr
        history.append({"step": step, "train_loss": tr, "val_loss": va})
        if va < best[0]:
            best = (va, {k: v.clone() for k, v in m.state_dict().items()})
        return {"train_loss": tr, "val_loss": va}

    evaluate(metric, 0)  # the untrained metric is a candidate too
    # fit validates after every eval_every-th step and after the last one: these are the steps of its calls
    val_steps = iter([*range(eval_every, steps, eval_every), steps])
    opt = torch.optim.Adam(metric.parameters(), lr=lr, weight_decay=weight_decay)
    fit(metric, _Always(train), steps, lr=lr, optimizer=opt, log_every=eval_every, val_every=eval_every,
        val_fn=lambda m: evaluate(m, next(val_steps)), progress=False)
    metric.load_state_dict(best[1])
    return metric.eval(), history


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation along the last dimension (average ranks for ties)."""
    def ranks(x):
        order = x.argsort(-1)
        r = torch.empty_like(x)
        r.scatter_(-1, order, torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x).contiguous())
        # average the ranks of tied values so that a constant row has no spurious order
        uniq = (x[..., :, None] == x[..., None, :]).to(x.dtype)
        return (uniq @ r[..., None]).squeeze(-1) / uniq.sum(-1)
    ra, rb = ranks(a.double()), ranks(b.double())
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-12)
