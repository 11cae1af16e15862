"""Memory-augmented neural network with LRUA memory (Santoro et al. 2016), top to bottom.

An episode is a *sequence*: at step t the network sees image x_t together with the
one-hot label of the previous step, y_{t-1}, and must output the label of x_t. A
class's first appearance is therefore a guess; from its second appearance on, the
network can answer from what it stored. This is few-shot learning as sequence
prediction, with an explicit external memory M (slots x width) that the network reads
and writes, not the support set itself.

One step of the controller + least-recently-used access (LRUA) memory, per read head:

    h_t          = LSTM([x_t, y_{t-1}, r_{t-1}], state)           controller
    k_t, α_t     = tanh(W_k h_t), W_α h_t                         key, write gate (logit)
    w^w_t        = σ(α_t) w^r_{t-1} + (1 - σ(α_t)) w^lu_{t-1}       write: last-read slot or least-used slot
    M_t          = zero_lu(M_{t-1}) + Σ_heads w^w_t ⊗ k_t           least-used slot(s) erased, then the key written
    w^r_t(i)     = softmax_i cos(k_t, M_t(i))                       content-based read weights
    r_t          = Σ_i w^r_t(i) M_t(i)                               read vector
    w^u_t        = γ w^u_{t-1} + Σ_heads (w^r_t + w^w_t)            usage decays by γ
    w^lu_t       = one-hot of the least used slot(s) of w^u_t       (head j gets the j-th least used)
    logits_t     = W_o [h_t, r_t]

Why this order works: the read after the write points (w^r_t) at the slot holding x_t, and
x_t's label only arrives at step t+1, whose write can go to that same slot (σ(α) → 1):
image and label end up bound in one row of memory.

Choices where the paper leaves room (each stated so a reader can change it):

* ``key_strength=True`` adds a learned key strength β_t (from the NTM, Graves et al. 2014)
  that multiplies the cosine before the softmax. The paper's softmax has none (the
  default here): over 128 slots a plain cosine softmax is broad (an exact match gets at
  most e/(e+127) ≈ 2 %), so a read blends many slots.
* With several heads, head j writes to the j-th least used slot (with one head this is the
  paper's rule), and all those slots are zeroed before writing.
* Images are flattened (no convolution), resized to ``image_size`` (the paper used 20x20).
  ``encoder='conv'`` swaps in a Conv-4 front-end (an option; not the paper's model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..budget import pick
from ..data.episodes import Episode
from ..learner import FewShotLearner, Recipe, check_task
from ..nets import Conv4

EPS = 1e-8


# ----------------------------------------------------------------------------------------------
# The memory, as pure functions (tested on hand-made sequences)
# ----------------------------------------------------------------------------------------------
@dataclass
class MemoryState:
    """LRUA state for a batch: memory (B, S, W); usage (B, S); read_w (B, H, S); lu (B, H, S); reads (B, H, W)."""

    memory: torch.Tensor
    usage: torch.Tensor
    read_w: torch.Tensor
    lu: torch.Tensor
    reads: torch.Tensor


def least_used(usage: torch.Tensor, heads: int) -> torch.Tensor:
    """One-hot rows (B, heads, S): row j marks the j-th least used slot of ``usage`` (B, S)."""
    idx = torch.topk(usage, heads, dim=-1, largest=False).indices  # ascending usage
    return F.one_hot(idx, usage.shape[-1]).to(usage.dtype)


def cosine_read_weights(keys: torch.Tensor, memory: torch.Tensor,
                        strength: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over slots of strength * cosine(key, slot): keys (B, H, W), memory (B, S, W) -> (B, H, S)."""
    sim = F.normalize(keys, dim=-1, eps=EPS) @ F.normalize(memory, dim=-1, eps=EPS).transpose(1, 2)
    if strength is not None:
        sim = sim * strength.unsqueeze(-1)
    return torch.softmax(sim, dim=-1)


def init_memory(batch: int, slots: int, width: int, heads: int, device=None, dtype=torch.float32) -> MemoryState:
    """Empty memory: tiny constant entries (cosine needs a non-zero norm), zero usage, no reads yet."""
    usage = torch.zeros(batch, slots, device=device, dtype=dtype)
    return MemoryState(
        memory=torch.full((batch, slots, width), 1e-6, device=device, dtype=dtype),
        usage=usage,
        read_w=torch.zeros(batch, heads, slots, device=device, dtype=dtype),
        lu=least_used(usage, heads),
        reads=torch.zeros(batch, heads, width, device=device, dtype=dtype),
    )


def lrua_step(state: MemoryState, keys: torch.Tensor, write_gate_logits: torch.Tensor, gamma: float,
              strength: torch.Tensor | None = None) -> tuple[MemoryState, torch.Tensor]:
    """One write-then-read LRUA step. keys (B, H, W), write_gate_logits (B, H), strength (B, H) or None (= 1).

    Returns the new state and the write weights (B, H, S) (for plots and tests).
    """
    heads = keys.shape[1]
    sig = torch.sigmoid(write_gate_logits).unsqueeze(-1)  # (B, H, 1)
    write_w = sig * state.read_w + (1 - sig) * state.lu
    erase = state.lu.amax(1)  # (B, S): the least-used slots are zeroed before writing
    memory = state.memory * (1 - erase).unsqueeze(-1) + write_w.transpose(1, 2) @ keys
    read_w = cosine_read_weights(keys, memory, strength)
    reads = read_w @ memory  # (B, H, W)
    usage = gamma * state.usage + read_w.sum(1) + write_w.sum(1)
    new = MemoryState(memory=memory, usage=usage, read_w=read_w, lu=least_used(usage, heads), reads=reads)
    return new, write_w


# ----------------------------------------------------------------------------------------------
# Sequences from episodes
# ----------------------------------------------------------------------------------------------
@dataclass
class SequenceBatch:
    """B episodes as sequences: x (B, T, C, H, W), y (B, T) labels in 0..ways-1."""

    x: torch.Tensor
    y: torch.Tensor
    ways: int


def episode_to_sequence(episode: Episode, generator: torch.Generator | None = None) -> SequenceBatch:
    """Pool support and query of each task and shuffle them into one sequence per task."""
    x = torch.cat([episode.support_x, episode.query_x], 1)
    y = torch.cat([episode.support_y, episode.query_y], 1)
    b, t = y.shape
    order = torch.rand(b, t, generator=generator).argsort(1).to(y.device)
    x = torch.gather(x, 1, order.view(b, t, 1, 1, 1).expand_as(x))
    return SequenceBatch(x, torch.gather(y, 1, order), episode.ways)


def instance_numbers(y: torch.Tensor) -> torch.Tensor:
    """For labels (B, T), the presentation number (1, 2, ...) of each step's class so far."""
    onehot = F.one_hot(y)  # (B, T, N)
    return (onehot.cumsum(1) * onehot).sum(-1)


AUGMENT_KEYS = ("max_rotation", "max_shift")


def check_augment(augment: dict | None) -> dict | None:
    """``None`` (no augmentation) or ``{"max_rotation": degrees in [0, 180], "max_shift": pixels >= 0}``."""
    if augment is None:
        return None
    if not isinstance(augment, dict) or set(augment) != set(AUGMENT_KEYS):
        raise ValueError(f"augment must be None or a dict with exactly the keys {AUGMENT_KEYS}, got {augment!r}")
    rot, shift = augment["max_rotation"], augment["max_shift"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (rot, shift)):
        raise ValueError(f"augment values must be finite numbers, got {augment!r}")
    if not 0 <= rot <= 180 or shift < 0:
        raise ValueError(f"augment needs 0 <= max_rotation <= 180 (degrees) and max_shift >= 0 (pixels), got {augment!r}")
    return {"max_rotation": float(rot), "max_shift": float(shift)}


def random_affine(x: torch.Tensor, max_rotation: float, max_shift: float,
                  generator: torch.Generator) -> torch.Tensor:
    """Turn each image (n, C, H, W) by its own angle in +-max_rotation degrees about its centre and move it
    by up to +-max_shift pixels along each axis (bilinear; ink leaving the frame is lost, background is 0)."""
    n, size = x.shape[0], x.shape[-1]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_rotation)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (max_shift * 2 / size)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class SequenceSampler:
    """N-way episodes with ``instances`` drawings per class, shuffled into sequences (Santoro et al.).

    ``augment`` (see :func:`check_augment`) moves every image of a training sequence by its own small random
    rotation and shift, Santoro et al.'s augmentation on top of the 90-degree rotations that already make
    new classes in the Vinyals splits; the paper does not give the magnitudes."""

    def __init__(self, classes, ways: int, instances: int, batch_size: int, device, seed: int,
                 augment: dict | None = None):
        from ..data.episodes import EpisodeSampler

        if instances < 2:
            raise ValueError(f"instances per class must be >= 2 (a class seen once cannot be recalled), "
                             f"got {instances}")
        self.augment = check_augment(augment)
        # an EpisodeSampler with K = instances - 1 support + 1 query draws `instances` distinct drawings per class
        self.episodes = EpisodeSampler(classes, ways, instances - 1, 1, batch_size=batch_size, device=device,
                                       seed=seed)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.augment_generator = torch.Generator().manual_seed(seed + 2)

    def sample(self) -> SequenceBatch:
        seq = episode_to_sequence(self.episodes.sample(), self.generator)
        if self.augment is not None:
            b, t = seq.y.shape
            moved = random_affine(seq.x.flatten(0, 1), self.augment["max_rotation"], self.augment["max_shift"],
                                  self.augment_generator)
            seq = SequenceBatch(moved.view(b, t, *seq.x.shape[2:]), seq.y, seq.ways)
        return seq

    def state_dict(self) -> dict:
        state = {"episodes": self.episodes.state_dict(), "generator": self.generator.get_state()}
        if self.augment is not None:
            state["augment_generator"] = self.augment_generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.episodes.load_state_dict(state["episodes"])
        self.generator.set_state(state["generator"])
        if self.augment is not None:
            self.augment_generator.set_state(state["augment_generator"])


# ----------------------------------------------------------------------------------------------
# The learner
# ----------------------------------------------------------------------------------------------
class MANN(FewShotLearner):
    """LSTM controller + LRUA external memory; label of the previous step as input."""

    method = "mann"

    def __init__(self, ways: int = 5, image_size: int = 20, controller: int = 200, slots: int = 128,
                 slot_width: int = 40, heads: int = 4, gamma: float = 0.95, encoder: str = "flat",
                 key_strength: bool = False):
        super().__init__(ways=ways, image_size=image_size, controller=controller, slots=slots,
                         slot_width=slot_width, heads=heads, gamma=gamma, encoder=encoder, key_strength=key_strength)
        if encoder not in ("flat", "conv"):
            raise ValueError(f"encoder must be 'flat' (the paper's) or 'conv', got {encoder!r}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"usage decay gamma must be in (0, 1], got {gamma}")
        if heads > slots:
            raise ValueError(f"heads ({heads}) cannot exceed memory slots ({slots})")
        self.ways, self.image_size, self.heads, self.slots = ways, image_size, heads, slots
        self.slot_width, self.gamma = slot_width, gamma
        if encoder == "conv":
            self.conv = Conv4(1, 64, pool="max")
            feat = 64
        else:
            self.conv = None
            feat = image_size * image_size
        self.controller = nn.LSTMCell(feat + ways + heads * slot_width, controller)
        self.key = nn.Linear(controller, heads * slot_width)
        self.write_gate = nn.Linear(controller, heads)
        self.strength = nn.Linear(controller, heads) if key_strength else None
        self.out = nn.Linear(controller + heads * slot_width, ways)

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        # Santoro et al.: 5 classes, 10 instances each (50-step episodes), batch 16, RMSprop 1e-4 for
        # 100,000 episodes. We keep batch 16 and use Adam 1e-3. What matters is the number of updates:
        # the model sits on a plateau (keys carry no class information, ~28 % after the 1st presentation)
        # for ~4,000 updates and only then learns to use its memory. 2,000 updates at batch 64 (the old
        # recipe) never left it; at batch 16 it escaped between 4,000 and 4,500 updates (CPU probe, two
        # key designs; benchmarks/mann_plateau.py). It was still improving at 20,000 updates (71 % at the
        # 2nd presentation) and at 36,220 (77 %), so the full recipe is 40,000 updates: ~2 h on one CPU
        # thread (~0.17 s each), resumable.
        # Training ignores the test shot: one model serves every K (it is read off the sequence).
        return Recipe(ways=5, shots=9, queries=1, meta_batch=pick(budget, smoke=4, full=16),
                      steps=pick(budget, smoke=30, full=40000), lr=1e-3, grad_clip=10.0,
                      test_ways=ways, test_shots=shots, test_queries=15,
                      model={"ways": 5}, extra={"instances": 10},
                      deviations={"optimizer": "Adam, not the paper's RMSprop: PyTorch's RMSprop at the paper's 1e-4 "
                                               "(no momentum; the paper names none) was still on the plateau after "
                                               "54,000 updates, with momentum 0.9 it left it after ~5,000 "
                                               "(benchmarks/mann_optimizers.py, chapter 5)",
                                  "lr": "1e-3 with Adam, not 1e-4 with RMSprop (see optimizer)",
                                  "steps": "40,000 updates, not 100,000 episodes: what one CPU run could give",
                                  "augmentation": "none by default; extra['augment'] adds the paper's small "
                                                  "random rotations and shifts (magnitudes unpublished)"})

    def make_train_sampler(self, recipe: Recipe, device, seed: int) -> SequenceSampler:
        from ..data.omniglot import load_split

        instances = recipe.extra.get("instances", recipe.shots + recipe.queries)
        return SequenceSampler(load_split(recipe.train_split), recipe.ways, instances, recipe.meta_batch, device, seed,
                               augment=recipe.extra.get("augment"))

    # -- features --------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, 28, 28) -> (n, F): resized and flattened (paper), or Conv-4 features."""
        if self.conv is not None:
            return self.conv.embed(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="area")
        return x.flatten(1)

    # -- the recurrent core ---------------------------------------------------------------
    def initial_state(self, batch: int, device, dtype=torch.float32):
        h = torch.zeros(batch, self.controller.hidden_size, device=device, dtype=dtype)
        return (h, h.clone()), init_memory(batch, self.slots, self.slot_width, self.heads, device, dtype)

    def step(self, feat: torch.Tensor, prev_label: torch.Tensor, state, trace: dict | None = None):
        """One time step. feat (B, F); prev_label (B,) in 0..ways-1 or -1 for 'none'. Returns (logits, state)."""
        (h, c), mem = state
        b = feat.shape[0]
        y_prev = F.one_hot(prev_label.clamp_min(0), self.ways).to(feat.dtype) * (prev_label >= 0).unsqueeze(-1)
        h, c = self.controller(torch.cat([feat, y_prev, mem.reads.flatten(1)], -1), (h, c))
        keys = torch.tanh(self.key(h)).view(b, self.heads, self.slot_width)
        strength = 1 + F.softplus(self.strength(h)) if self.strength is not None else None
        mem, write_w = lrua_step(mem, keys, self.write_gate(h), self.gamma, strength)
        if trace is not None:
            trace.setdefault("keys", []).append(keys.detach())
            trace.setdefault("read_w", []).append(mem.read_w.detach())
            trace.setdefault("write_w", []).append(write_w.detach())
            trace.setdefault("usage", []).append(mem.usage.detach())
        logits = self.out(torch.cat([h, mem.reads.flatten(1)], -1))
        return logits, ((h, c), mem)

    def forward_sequence(self, x: torch.Tensor, y: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        """Logits (B, T, ways) for sequences x (B, T, C, H, W) with labels y (B, T) (shifted inside)."""
        b, t = y.shape
        feats = self.features(x.flatten(0, 1)).view(b, t, -1)
        prev = torch.cat([y.new_full((b, 1), -1), y[:, :-1]], 1)
        state = self.initial_state(b, x.device, feats.dtype)
        out = []
        for i in range(t):
            logits, state = self.step(feats[:, i], prev[:, i], state, trace)
            out.append(logits)
        return torch.stack(out, 1)

    def _check_ways(self, ways: int) -> None:
        if ways > self.ways:
            raise ValueError(f"this MANN has {self.ways} output units (ways); it cannot label a {ways}-way task. "
                             f"Build MANN(ways={ways}) and train it on {ways}-way sequences.")

    # -- learner protocol --------------------------------------------------------------------
    def meta_loss(self, batch) -> tuple[torch.Tensor, dict]:
        """Cross-entropy over every step of the sequence (an Episode is pooled and shuffled first)."""
        seq = batch if isinstance(batch, SequenceBatch) else episode_to_sequence(batch)
        self._check_ways(seq.ways)
        logits = self.forward_sequence(seq.x, seq.y)
        loss = F.cross_entropy(logits.flatten(0, 1), seq.y.flatten())
        hit = (logits.argmax(-1) == seq.y).float()
        inst = instance_numbers(seq.y)
        stats = {"acc": hit.mean().detach(), "acc_2nd": hit[inst == 2].mean().detach()}
        return loss, stats

    def _predict(self, sx, sy, qx, generator: torch.Generator | None = None) -> torch.Tensor:
        """Batched: feed each task's support (shuffled) with labels, then each query from that memory."""
        b, n = sy.shape
        m = qx.shape[1]
        order = torch.rand(b, n, generator=generator).argsort(1).to(sy.device)
        sx = torch.gather(sx, 1, order.view(b, n, 1, 1, 1).expand_as(sx))
        sy = torch.gather(sy, 1, order)
        feats = self.features(sx.flatten(0, 1)).view(b, n, -1)
        prev = torch.cat([sy.new_full((b, 1), -1), sy[:, :-1]], 1)
        state = self.initial_state(b, sx.device, feats.dtype)
        for i in range(n):
            _, state = self.step(feats[:, i], prev[:, i], state)
        # every query is answered from the same post-support state (queries do not see each other);
        # its "previous label" input is the last support label, as it would be in a sequence
        (h, c), mem = state
        rep = lambda t: t.repeat_interleave(m, 0)
        state = ((rep(h), rep(c)), MemoryState(*(rep(getattr(mem, f)) for f in
                                                 ("memory", "usage", "read_w", "lu", "reads"))))
        qf = self.features(qx.flatten(0, 1))
        logits, _ = self.step(qf, rep(sy[:, -1]), state)
        return logits.view(b, m, -1)

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        support_x, query_x = self.as_input(support_x), self.as_input(query_x)  # raw drawings of any size
        ways = check_task(support_x, support_y, query_x)
        self._check_ways(ways)
        g = torch.Generator().manual_seed(0)
        return self._predict(support_x[None], support_y[None], query_x[None], g)[0][:, :ways]

    def predict_batch(self, episodes: Episode) -> torch.Tensor:
        self._check_ways(episodes.ways)
        g = torch.Generator().manual_seed(0)
        return self._predict(episodes.support_x, episodes.support_y, episodes.query_x, g)[..., : episodes.ways]


# ----------------------------------------------------------------------------------------------
# The paper's measurement: accuracy by presentation number
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def accuracy_by_instance(learner: MANN, split: str = "vinyals/test", episodes: int = 1000, ways: int = 5,
                         instances: int = 10, seed: int = 2017, chunk: int = 100) -> dict:
    """Accuracy on the 1st..``instances``-th presentation of a class, over held-out sequences.

    Returns ``{"instance": [1..I], "accuracy": [...], "ci95": [...], "episodes": n}``; the CI is
    over episodes (each episode's accuracy at that presentation number).
    """
    from ..data.omniglot import load_split
    from ..results import mean_ci95

    learner.eval()
    sampler = SequenceSampler(load_split(split), ways, instances, chunk, learner.device, seed)
    per_ep: list[torch.Tensor] = []
    done = 0
    while done < episodes:
        seq = sampler.sample()
        logits = learner.forward_sequence(seq.x, seq.y)
        hit = (logits.argmax(-1) == seq.y).float()
        inst = instance_numbers(seq.y)
        # per episode, mean hit at each instance number
        onehot = F.one_hot(inst - 1, instances).float()  # (B, T, I)
        per_ep.append(((hit.unsqueeze(-1) * onehot).sum(1) / onehot.sum(1)).cpu())
        done += seq.y.shape[0]
    acc = torch.cat(per_ep)[:episodes]
    stats = [mean_ci95(acc[:, i]) for i in range(instances)]
    return {"instance": list(range(1, instances + 1)), "accuracy": [s[0] for s in stats],
            "ci95": [s[1] for s in stats], "episodes": int(acc.shape[0])}


def class_similarity(vectors: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mean cosine between vectors of the same class and of different classes, within each sequence.

    vectors (B, T, D), labels (B, T). Pairs are taken inside a sequence only (labels are episode-local)
    and a vector is never paired with itself. Returns ``{"same_class", "different_class", "gap"}``.
    """
    if vectors.dim() != 3 or labels.shape != vectors.shape[:2]:
        raise ValueError(f"expected vectors (B, T, D) and labels (B, T); got {tuple(vectors.shape)} and "
                         f"{tuple(labels.shape)}")
    v = F.normalize(vectors.float(), dim=-1)
    cos = v @ v.transpose(1, 2)  # (B, T, T)
    same = labels.unsqueeze(2) == labels.unsqueeze(1)
    off_diag = ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
    s, d = cos[same & off_diag].mean().item(), cos[~same].mean().item()
    return {"same_class": s, "different_class": d, "gap": s - d}


@torch.no_grad()
def key_class_similarity(learner: MANN, split: str = "vinyals/test", episodes: int = 200, ways: int = 5,
                         instances: int = 10, seed: int = 2017) -> dict:
    """Do the MANN's write keys encode class? :func:`class_similarity` of the keys over held-out sequences.

    A MANN that addresses memory by class writes similar keys for images of the same class; on the
    plateau before it learns to use its memory the gap is ~0 (same-class and different-class keys
    equally alike). The heads' keys are concatenated per step.
    """
    from ..data.omniglot import load_split

    learner.eval()
    seq = SequenceSampler(load_split(split), ways, instances, episodes, learner.device, seed).sample()
    trace: dict = {}
    learner.forward_sequence(seq.x, seq.y, trace)
    keys = torch.stack(trace["keys"], 1).flatten(2)  # (B, T, heads * width)
    return class_similarity(keys, seq.y)
