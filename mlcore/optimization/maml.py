"""MAML (Finn et al. 2017) with ``torch.func``: exact second-order meta-gradients, vectorised over tasks.

The meta-objective for a batch of tasks i with support (x_i, y_i) and query (x'_i, y'_i) is

    L_meta(θ0) = 1/B Σ_i L(f(x'_i; φ_i), y'_i),   φ_i = θ_{S},  θ_{s+1} = θ_s − α_s ∇_θ L(f(x_i; θ_s), y_i)

Everything below is plain functional code: the network's weights are a dict of tensors,
``functional_call`` runs the module with them, ``torch.func.grad`` gives the inner
gradient *as a differentiable function of θ0*, and ``vmap`` runs the inner loops of all B
tasks at once (``batching``: on a CUDA device the query passes too; on the CPU they run task by
task, which spares the allocator the whole meta-batch's activations in one block). The outer ``loss.backward()`` then differentiates through the inner
gradients, which is the exact second-order meta-gradient (Hessian-vector products
included). ``first_order=True`` detaches the inner gradients (FOMAML): the meta-gradient
becomes ∇L_query evaluated at φ_i, the Hessian term is dropped.

Batch norm: the inner loop and the query pass use the statistics of the batch they are
given (the current task's support or query set), at training *and* at test time, as in
the MAML paper (transductive). At test, ``learner.test_batch_norm = "support"`` normalises every
query with the support set's statistics, so no query's statistics reach another (the book's
protocol); ``"per_query"`` runs each query in a batch with the support set (Nichol et al.'s
non-transductive protocol, n + 1 times the cost). The backbone is therefore built with
``track_running_stats=False``; a model that keeps running-stat buffers is rejected,
because updating buffers in-place inside ``vmap`` would mix tasks.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..budget import pick
from ..data.episodes import Episode
from ..learner import FewShotLearner, Recipe, check_task
from ..nets import Conv4

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# one inner step's learning rate: a scalar (float or 0-d tensor) or one tensor per parameter (Meta-SGD)
StepLR = float | torch.Tensor | Mapping[str, torch.Tensor]


# ----------------------------------------------------------------------------- validation
def check_functional_model(model: nn.Module) -> None:
    """Refuse models whose buffers a functional inner loop cannot handle (e.g. BN running stats)."""
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise ValueError(
            f"MAML needs a model without buffers, found {buffers[:4]}{'...' if len(buffers) > 4 else ''}. "
            "Batch norm must use the current batch's statistics (build it with track_running_stats=False, "
            "e.g. Conv4(pool='stride', out_dim=N, track_running_stats=False)); running statistics would be "
            "updated in place across the tasks of a vmapped meta-batch.")


def check_inner_steps(steps: int, name: str = "inner_steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name} must be an int >= 0 (0 = no adaptation), got {steps!r}")
    return steps


def check_lr(lr: float, name: str = "inner_lr") -> float:
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {lr!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {lr!r}")
    return value


# ----------------------------------------------------------------------------- batch norm for vmap
class TaskBatchNorm2d(nn.BatchNorm2d):
    """Batch norm on the current batch's statistics, written with plain tensor ops.

    Same parameters (``weight``, ``bias``) and the same forward as ``nn.BatchNorm2d`` in
    training mode without running statistics, so Conv-4 state dicts are unchanged. Why not
    ``F.batch_norm``: under ``vmap`` its second derivative comes out wrong (torch 2.13,
    CPU: the vmapped meta-gradient of a BN net differed from the per-task loop and from
    finite differences by ~1e-3 relative, while BN-free nets agreed to 1e-17; see
    tests/test_optimization.py). Mean/var/rsqrt have exact batching rules at every order.
    """

    #: How forward normalises (None by default, with the batch's own statistics); "record" also keeps them, and
    #: "apply" uses the kept ones, which is how :func:`query_logits` scores queries with the support set's.
    stats_mode: str | None = None
    kept_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The centred tensor is computed once and reused for the variance and the output, and the
        # scale is folded into one per-channel factor: fewer full-size elementwise ops, which is
        # where a second-order meta-step spends half its CPU time (~13 % faster per meta-step).
        if self.stats_mode == "apply":
            mean, var = self.kept_stats
        else:
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = None
        centred = x - mean
        if var is None:
            var = (centred * centred).mean(dim=(0, 2, 3), keepdim=True)
            if self.stats_mode == "record":
                self.kept_stats = (mean.detach(), var.detach())
        scale = torch.rsqrt(var + self.eps)
        if not self.affine:
            return centred * scale
        return torch.addcmul(self.bias.view(1, -1, 1, 1), centred, scale * self.weight.view(1, -1, 1, 1))


def use_task_batch_norm(net: nn.Module) -> nn.Module:
    """Swap every statistics-free ``BatchNorm2d`` of ``net`` for :class:`TaskBatchNorm2d` (in place)."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, TaskBatchNorm2d) \
                and not child.track_running_stats:
            bn = TaskBatchNorm2d(child.num_features, eps=child.eps, affine=child.affine, track_running_stats=False)
            if child.affine:
                bn.load_state_dict(child.state_dict())
            setattr(net, name, bn.to(device=next(child.parameters(), torch.empty(0)).device))
        else:
            use_task_batch_norm(child)
    return net


# ----------------------------------------------------------------------------- the functional core
def inner_loop(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
               lrs: Sequence[StepLR], first_order: bool = False, adapt: Sequence[str] | None = None) -> Params:
    """Run len(lrs) steps of gradient descent on one task; return the adapted weights.

    ``params`` are the starting weights θ0 (may require grad: the result stays a
    differentiable function of them). ``lrs[s]`` is step s's learning rate, a scalar or a
    dict of per-parameter tensors (Meta-SGD). ``adapt`` names the parameters the inner loop
    changes (default: all; ANIL: the head). ``first_order`` detaches each inner gradient.
    """
    names = list(params) if adapt is None else list(adapt)
    fast = {k: params[k] for k in names}
    frozen = {k: v for k, v in params.items() if k not in fast}

    def support_loss(fast_weights: Params) -> torch.Tensor:
        return loss_fn(functional_call(model, {**frozen, **fast_weights}, (x,)), y)

    grad_fn = grad(support_loss)  # returns ∇ as a function of fast_weights; outer autograd sees through it
    for lr in lrs:
        g = grad_fn(fast)
        if first_order:  # FOMAML: treat ∇L as a constant w.r.t. θ0, dropping the Hessian term
            g = {k: v.detach() for k, v in g.items()}
        if isinstance(lr, Mapping):
            fast = {k: fast[k] - lr[k] * g[k] for k in names}
        else:
            fast = {k: fast[k] - lr * g[k] for k in names}
    return {**frozen, **fast}


def adapted_query_loss(model: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                       query_x: torch.Tensor, query_y: torch.Tensor, loss_fn: LossFn, lrs: Sequence[StepLR],
                       first_order: bool = False, adapt: Sequence[str] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One task: adapt on the support set, return (query loss, query outputs) under φ."""
    phi = inner_loop(model, params, support_x, support_y, loss_fn, lrs, first_order, adapt)
    out = functional_call(model, phi, (query_x,))
    return loss_fn(out, query_y), out


#: How a meta-batch's B tasks are batched, one of four schedules. "vmap" runs each whole task (inner loop and
#: query pass) in one vmap; "inner" runs the inner loops in one vmap, then each task's query pass on its own
#: adapted weights; "loop" is a Python loop over tasks (the reference the tests compare against); "auto" is
#: "vmap" on an accelerator and "inner" on the CPU. All give the same meta-gradient, only the speed differs.
BATCHING = ("auto", "vmap", "inner", "loop")


def resolve_batching(batching: str, device: torch.device) -> str:
    """The concrete batching for ``device``: "auto" becomes "inner" on the CPU and "vmap" elsewhere.

    Why "inner" on the CPU: under vmap the query pass holds the activations of all B tasks in blocks of tens
    of megabytes, which glibc's malloc returns to the system when freed and faults in again every step
    (233,000 page faults per 5w1s meta-step at meta-batch 32, against 24,000 task by task); the inner loops,
    many small steps on 1-5 images each, still gain from being one vmap. ``benchmarks/engineering.py
    --only vmap`` measures all three schedules. On a GPU the loop's extra kernel launches would cost more.
    """
    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {', '.join(map(repr, BATCHING))}, got {batching!r}")
    if batching != "auto":
        return batching
    return "inner" if torch.device(device).type == "cpu" else "vmap"


def batched_query_loss(model: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                       query_x: torch.Tensor, query_y: torch.Tensor, loss_fn: LossFn, lrs: Sequence[StepLR],
                       first_order: bool = False, adapt: Sequence[str] | None = None, batching: str = "auto"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """All tasks of a meta-batch (leading dim B): per-task query losses (B,) and outputs (B, m, ...).

    ``batching`` (see :data:`BATCHING`) only changes how the B tasks are scheduled, never the result.
    """
    def one(sx, sy, qx, qy):
        return adapted_query_loss(model, params, sx, sy, qx, qy, loss_fn, lrs, first_order, adapt)

    mode = resolve_batching(batching, support_x.device)
    if mode == "vmap":
        # randomness='different' lets dropout-like layers draw per task; our nets have none
        return vmap(one, randomness="different")(support_x, support_y, query_x, query_y)
    if mode == "inner":
        names = list(params) if adapt is None else list(adapt)
        frozen = {k: v for k, v in params.items() if k not in names}

        def adapt_one(sx, sy):
            phi = inner_loop(model, params, sx, sy, loss_fn, lrs, first_order, adapt)
            return {k: phi[k] for k in names}

        fast = vmap(adapt_one, randomness="different")(support_x, support_y)
        # unbind, not fast[k][i]: each indexing's backward would fill a zero tensor of all B tasks' weights
        per_task = [dict(zip(fast, weights)) for weights in zip(*(v.unbind(0) for v in fast.values()))]
        outs = [functional_call(model, {**frozen, **phi}, (qx,)) for phi, qx in zip(per_task, query_x)]
        losses = [loss_fn(out, qy) for out, qy in zip(outs, query_y)]
        return torch.stack(losses), torch.stack(outs)
    pairs = [one(support_x[i], support_y[i], query_x[i], query_y[i]) for i in range(support_x.shape[0])]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


TEST_BATCH_NORM = ("transductive", "support", "per_query")


def query_logits(net, phi: dict[str, torch.Tensor], support_x: torch.Tensor, query_x: torch.Tensor,
                 batch_norm: str) -> torch.Tensor:
    """Logits of one task's queries under adapted weights φ.

    "transductive": all queries in one batch (batch norm uses the queries' own statistics).
    "support": every query normalised with the support set's statistics (no query sees another; as cheap
    as the transductive pass). "per_query": each query in a batch with the support set only (Nichol et
    al.'s non-transductive protocol; the support set runs once per query, so it costs n + 1 times more).
    """
    if batch_norm == "transductive":
        return functional_call(net, phi, (query_x,))
    if batch_norm == "support":
        bns = [m for m in net.modules() if isinstance(m, TaskBatchNorm2d)]
        try:
            for m in bns:
                m.stats_mode = "record"
            functional_call(net, phi, (support_x,))
            for m in bns:
                m.stats_mode = "apply"
            return functional_call(net, phi, (query_x,))
        finally:
            for m in bns:
                m.stats_mode, m.kept_stats = None, None
    if batch_norm != "per_query":
        raise ValueError(f"test batch norm must be one of {TEST_BATCH_NORM}, got {batch_norm!r}")

    def one(q):
        return functional_call(net, phi, (torch.cat([support_x, q[None]]),))[-1]

    return torch.cat([vmap(one)(part) for part in query_x.split(100)])


def step_lrs(lrs: Sequence[StepLR], steps: int) -> list[StepLR]:
    """Learning rates for ``steps`` steps: the given per-step list, its last entry repeated if longer."""
    if steps == 0:
        return []
    if len(lrs) == 0:
        raise ValueError("need at least one inner learning rate")
    return [lrs[min(s, len(lrs) - 1)] for s in range(steps)]


# ----------------------------------------------------------------------------- the learner
class MAML(FewShotLearner):
    """MAML on Omniglot: strided Conv-4 + linear head, second order unless ``first_order``.

    ``inner_lr`` is α, one float or a list of per-step floats; ``learn_inner_lr`` turns
    the per-step rates into meta-learned parameters (as in MAML++). ``inner_steps`` are
    used while meta-training, ``test_inner_steps`` when adapting at test time.
    """

    method = "maml"
    needs_grad_at_test = True

    def __init__(self, ways: int = 5, hidden: int = 64, in_channels: int = 1, inner_steps: int = 1,
                 inner_lr: float | list[float] = 0.4, test_inner_steps: int = 3, first_order: bool = False,
                 learn_inner_lr: bool = False, *, config: dict | None = None):
        """``config`` is what the learner records as its constructor arguments (``mlcore.load`` rebuilds it
        with ``cls(**config)``): MAML's own arguments by default; a subclass whose constructor takes other
        arguments (Reptile, Meta-SGD) passes its own, so ``self.config`` is complete when the base sets it."""
        check_inner_steps(inner_steps)
        check_inner_steps(test_inner_steps, "test_inner_steps")
        rates = [check_lr(r) for r in (inner_lr if isinstance(inner_lr, (list, tuple)) else [inner_lr])]
        if not isinstance(ways, int) or ways < 2:
            raise ValueError(f"ways must be an int >= 2, got {ways!r}")
        if config is None:
            config = {"ways": ways, "hidden": hidden, "in_channels": in_channels, "inner_steps": inner_steps,
                      "inner_lr": inner_lr, "test_inner_steps": test_inner_steps, "first_order": first_order,
                      "learn_inner_lr": learn_inner_lr}
        super().__init__(**config)
        self.ways, self.inner_steps, self.test_inner_steps = ways, inner_steps, test_inner_steps
        self.first_order = first_order
        self.net = self.build_net(ways, hidden, in_channels)
        check_functional_model(self.net)
        rates_t = torch.tensor(rates, dtype=torch.float32)
        self.test_batch_norm = "transductive"  # or "support" / "per_query": how queries are normalised at test
        if learn_inner_lr:
            self.inner_lrs = nn.Parameter(rates_t)
        else:
            self.register_buffer("inner_lrs", rates_t, persistent=True)

    @staticmethod
    def build_net(ways: int, hidden: int, in_channels: int) -> nn.Module:
        # the paper's Omniglot net: 4 strided 3x3 convs, BN with batch statistics, linear head
        return use_task_batch_norm(Conv4(in_channels, hidden, pool="stride", out_dim=ways, track_running_stats=False))

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        # Finn et al.: 5-way: 1 inner step α=0.4, meta-batch 32, 3 steps at test;
        # 20-way: 5 steps α=0.1, meta-batch 16 (5 at test). Adam 1e-3 for the outer loop.
        five = ways <= 5
        model = {"ways": ways, "inner_steps": 1 if five else 5, "inner_lr": 0.4 if five else 0.1,
                 "test_inner_steps": 3 if five else 5, "first_order": cls.first_order_default()}
        deviations = cls.recipe_deviations()
        if shots == 1 and "recipe" not in deviations:
            deviations["queries"] = (
                "5 query images per class in training, not Finn et al.'s 1 at one shot (their code draws twice the "
                "shots per class): five times the images behind each meta-gradient; at 20w1s its training accuracy "
                "led 1 query's by ~4 points over steps 200-600 and by 0.6 at 800-965, and the 5w1s record reached "
                "the paper's number this way")
        return Recipe(ways=ways, shots=shots, queries=5, meta_batch=pick(budget, smoke=4, full=32 if five else 16),
                      steps=pick(budget, smoke=30, full=cls.full_steps(ways, shots)), lr=1e-3,
                      test_ways=ways, test_shots=shots, model=model, deviations=deviations)

    @classmethod
    def recipe_deviations(cls) -> dict[str, str]:
        return {}

    @classmethod
    def first_order_default(cls) -> bool:
        return False

    @classmethod
    def full_steps(cls, ways: int, shots: int) -> int:
        """Outer steps of the full budget (sized for <= 6 min on a shared GPU; see the chapter)."""
        return FULL_STEPS[cls.method][(ways, shots)] if (ways, shots) in FULL_STEPS.get(cls.method, {}) else 60_000

    # -- pieces subclasses change
    def start_params(self) -> Params:
        return dict(self.net.named_parameters())

    def rates(self, steps: int) -> list[StepLR]:
        return step_lrs(list(self.inner_lrs.unbind(0)), steps)

    def adapt_names(self) -> list[str] | None:
        return None  # all parameters

    def task_outputs(self, params: Params, sx, sy, qx, qy, steps: int, first_order: bool, batching: str = "auto"):
        return batched_query_loss(self.net, params, sx, sy, qx, qy, F.cross_entropy, self.rates(steps),
                                  first_order, self.adapt_names(), batching)

    # -- the protocol
    def meta_loss(self, episodes: Episode, batching: str = "auto") -> tuple[torch.Tensor, dict]:
        if episodes.ways != self.ways:
            raise ValueError(f"this learner's head has {self.ways} outputs; got a {episodes.ways}-way batch")
        losses, logits = self.task_outputs(self.start_params(), episodes.support_x, episodes.support_y,
                                           episodes.query_x, episodes.query_y, self.inner_steps,
                                           self.first_order, batching)
        acc = (logits.argmax(-1) == episodes.query_y).float().mean()
        return losses.mean(), {"acc": acc.detach()}

    def predict_batch(self, episodes: Episode) -> torch.Tensor:
        if episodes.ways != self.ways:
            raise ValueError(f"this learner's head has {self.ways} outputs; got a {episodes.ways}-way task")
        # adapt from detached weights: test-time adaptation must not build a graph into θ0
        params = {k: v.detach() for k, v in self.start_params().items()}
        if self.test_batch_norm != "transductive":
            # one task at a time: each query runs with a copy of the support set, which is memory enough
            lrs, names, out = self.rates(self.test_inner_steps), self.adapt_names(), []
            for sx, sy, qx in zip(episodes.support_x, episodes.support_y, episodes.query_x):
                with torch.enable_grad():
                    phi = inner_loop(self.net, params, sx, sy, F.cross_entropy, lrs, True, names)
                out.append(query_logits(self.net, {k: v.detach() for k, v in phi.items()}, sx, qx,
                                        self.test_batch_norm))
            return torch.stack(out).detach()
        with torch.enable_grad():
            dummy_qy = torch.zeros(episodes.query_x.shape[:2], dtype=torch.long, device=episodes.query_x.device)
            _, logits = self.task_outputs(params, episodes.support_x, episodes.support_y, episodes.query_x,
                                          dummy_qy, self.test_inner_steps, first_order=True)
        return logits.detach()

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        support_x, query_x = self.as_input(support_x), self.as_input(query_x)  # raw drawings of any size
        ways = check_task(support_x, support_y, query_x)
        if ways != self.ways:
            raise ValueError(f"this learner's head has {self.ways} outputs; got a {ways}-way task")
        ep = Episode(support_x[None], support_y[None].long(), query_x[None],
                     torch.zeros(1, query_x.shape[0], dtype=torch.long, device=query_x.device), ways,
                     support_x.shape[0] // ways, max(1, query_x.shape[0] // ways))
        return self.predict_batch(ep)[0]


class FOMAML(MAML):
    """First-order MAML: the same learner with the inner gradients detached."""

    method = "fomaml"

    def __init__(self, **kwargs):
        kwargs.setdefault("first_order", True)
        super().__init__(**kwargs)

    @classmethod
    def first_order_default(cls) -> bool:
        return True

    @classmethod
    def recipe_deviations(cls) -> dict[str, str]:
        return {"recipe": "MAML's recipe (Finn et al.) with the Hessian term dropped; the published number is "
                          "Nichol et al.'s, who trained first-order MAML with their Reptile setup"}


# Full-budget outer steps per (method, ways, shots): Finn et al.'s 60,000 meta-iterations for MAML. First-order
# MAML, Meta-SGD and ANIL follow MAML's Omniglot setup here (their recipes declare it). Records trained with an
# earlier, shorter budget keep the steps they ran in their own recipe.
FULL_STEPS: dict[str, dict[tuple[int, int], int]] = {
    m: {(5, 1): 60_000, (5, 5): 60_000, (20, 1): 60_000, (20, 5): 60_000}
    for m in ("maml", "fomaml", "metasgd", "anil")
}
