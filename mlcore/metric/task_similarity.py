"""A learned metric between *tasks*, and nearest-task transfer (the source article's §4.1).

The article proposes learning a similarity f_theta(T_i, T_j) between tasks by minimising

    L(theta) = sum_{(i, j)} ( f_theta(T_i, T_j) - y_ij )^2,

and, for a new task, transferring what was learned on the most similar training task.
Here every piece is made concrete and measurable on Omniglot:

* **Tasks at the alphabet level.** Each of the 30 ``background`` alphabets is split by
  character: the last ``ways`` characters form that alphabet's *new* (target) task, a
  ``ways``-way ``shots``-shot problem; the other characters form its *training* (source)
  tasks. So "same alphabet" is a label we can check, and targets share no character with
  any source.
* **y_ij = 1 if T_i and T_j come from the same alphabet, else 0.** Pairs of training tasks
  with *disjoint* characters are drawn, so the metric must learn an alphabet's style, not
  recognise repeated characters.
* **Task embeddings.** (1) :class:`SetTaskEncoder`, a permutation-invariant encoder of a
  task's support images (a CNN per image, mean over the set, an MLP; Deep Sets), trained
  end-to-end with the similarity head :class:`TaskSimilarity`; (2) :func:`task2vec`, a
  Task2Vec-style embedding (Achille et al. 2019): the diagonal Fisher information of a
  fixed probe Conv-4 on the task, averaged per filter; compared with Task2Vec's
  normalised cosine distance, or fed to the same learned head.
* **Transfer.** Each training task gets its own small CNN trained on its characters. A new
  task is solved by fine-tuning a CNN on its 5-shot support set, starting from: random
  weights (no transfer), a random training task's CNN, the *retrieved* (most similar) task's
  CNN, or the best one in hindsight (an oracle that peeks at query accuracy). The full
  transfer matrix ``acc[target, source]`` says how often retrieval picks a helpful source.

The study that runs all of it and writes its record is :mod:`mlcore.experiments.task_similarity`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.omniglot import DRAWERS, ClassSet
from ..nets import Conv4
from .siamese import distort


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


def train_set_similarity(cs: ClassSet, split, steps: int, pairs: int = 16, ways: int = 4, shots: int = 5,
                         hidden: int = 32, dim: int = 32, lr: float = 1e-3, seed: int = 0, device="cpu"):
    """Train SetTaskEncoder + TaskSimilarity end-to-end with the §4.1 squared loss; returns (enc, sim, history)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    enc, sim = SetTaskEncoder(hidden, dim).to(device), TaskSimilarity(dim).to(device)
    opt = torch.optim.Adam([*enc.parameters(), *sim.parameters()], lr=lr)
    hist = []
    for step in range(steps):
        xi, xj, y, _ = sample_task_pairs(cs, split, pairs, ways, shots, g)
        f = sim(enc(xi.to(device)), enc(xj.to(device)))
        loss = similarity_loss(f, y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(float(loss.detach()) / pairs)
    return enc.eval(), sim.eval(), hist


# --------------------------------------------------------------------------- Task2Vec-style Fisher embedding
def train_probe(cs: ClassSet, classes: list[int], steps: int, hidden: int = 32, batch: int = 128, seed: int = 0,
                device="cpu") -> Conv4:
    """The fixed probe: a Conv-4 trained once to classify all ``classes`` (the source characters)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    probe = Conv4(1, hidden, pool="max", out_dim=len(classes)).to(device)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    cls = torch.tensor(classes)
    for _ in range(steps):
        c = torch.randint(len(classes), (batch,), generator=g)
        d = torch.randint(DRAWERS, (batch,), generator=g)
        x = distort(cs.images[cls[c], d].to(device), g)
        loss = F.cross_entropy(probe(x), c.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    probe.head = None  # keep the feature extractor only
    return probe.eval()


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


def train_source(task: Task, steps: int, hidden: int, seed: int, device="cpu") -> Conv4:
    """The 'what was learned on a task' that can be transferred: a CNN trained on that task alone."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = transfer_net(hidden, int(task.support_y.max()) + 1).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = task.support_x.to(device), task.support_y.to(device)
    for _ in range(steps):
        loss = F.cross_entropy(net(distort(x, g)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def fine_tune_accuracy(task: Task, init: dict | None, steps: int, hidden: int, seed: int, lr: float = 3e-3,
                       device="cpu") -> float:
    """Query accuracy after fine-tuning on the task's support set from ``init`` (a source state dict) or scratch.

    The source's classifier head is discarded (its classes mean nothing here): a fresh,
    zero-initialised head is put on the transferred features.
    """
    torch.manual_seed(seed)
    ways = int(task.support_y.max()) + 1
    net = transfer_net(hidden, ways).to(device)
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


# --------------------------------------------------------------------------- retrieval
def retrieval_scores(enc, sim, sources: list[Task], targets: list[Task], shots: int) -> torch.Tensor:
    """f_theta(target, source) for every pair: (T, S). Sources are embedded from ``shots`` images per class."""
    with torch.no_grad():
        src = torch.stack([s.support_x.view(-1, 15, *s.support_x.shape[1:])[:, :shots].flatten(0, 1)
                           for s in sources])
        es = enc(src)
        et = enc(torch.stack([t.support_x for t in targets]))
        return sim(et[:, None].expand(-1, len(sources), -1), es[None].expand(len(targets), -1, -1))


def t2v_embed_tasks(probe, tasks: list[Task], shots: int, head_steps: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in tasks:
        n = len(t.support_y)
        per = n // (int(t.support_y.max()) + 1)
        keep = torch.arange(n).view(-1, per)[:, :shots].flatten()
        out.append(task2vec(probe, t.support_x[keep], t.support_y[keep], head_steps, g))
    return torch.stack(out)


def train_embedding_head(emb: torch.Tensor, alph: torch.Tensor, steps: int, seed: int) -> TaskSimilarity:
    """The same §4.1 squared loss, on fixed (log, standardised) Task2Vec embeddings of training tasks."""
    torch.manual_seed(seed)
    head = TaskSimilarity(emb.shape[1], 64)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    y = (alph[:, None] == alph[None]).float()
    off = ~torch.eye(len(alph), dtype=torch.bool)
    pos_w = (y[off] == 0).sum() / (y[off] == 1).sum().clamp_min(1)  # balance same/different pairs
    w = torch.where(y.bool(), pos_w, torch.ones_like(y)) * off
    for _ in range(steps):
        f = head(emb[:, None].expand(-1, len(alph), -1), emb[None].expand(len(alph), -1, -1))
        loss = (w * (f - y) ** 2).sum() / w.sum()  # sum of squared errors, reweighted per pair
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def standardise(e: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    le, lr_ = e.clamp_min(1e-12).log(), ref.clamp_min(1e-12).log()
    return (le - lr_.mean(0)) / (lr_.std(0) + 1e-6)
