"""Train from scratch on the support set: what you get with no meta-learning at all.

For every task a Conv-4 + linear head starts from the same random initialisation (the
module's own weights, never meta-trained) and is trained with full-batch Adam on the
N*K support images only, for a fixed number of steps; then it labels the queries. This is
"traditional" supervised learning squeezed into one tiny task, the baseline every
few-shot method has to beat.

Two engineering choices, both stated because they matter for the numbers:

* Tasks are trained **in parallel**: the weights get a leading task dimension and
  ``torch.func.vmap(torch.func.grad(...))`` computes all B tasks' gradients in one call,
  followed by a hand-written Adam on the stacked tensors. Results equal a loop over tasks.
* Batch norm uses the **support set's** statistics, also when the queries are scored
  (the network is run on support and queries together, but mean and variance come from
  the support rows only), so no information leaks from the queries
  (non-transductive).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ..data.episodes import Episode
from ..learner import FewShotLearner, Recipe, check_task
from ..nets import Conv4
from ..runtime import seeded_global_rng

BN_EPS = 1e-5


def conv4_forward(params: dict[str, torch.Tensor], x: torch.Tensor, n_stats: int, blocks: int = 4) -> torch.Tensor:
    """Functional Conv-4 + linear head for one task; BN statistics from the first ``n_stats`` rows.

    Not :class:`mlcore.nets.Conv4` itself: a stateless forward, so ``grad``/``vmap`` can train one fresh
    copy per task, and its batch norm takes statistics from the support rows only (no running buffers).

    ``params`` uses the names of :class:`mlcore.nets.Conv4` (``features.{i}.0`` conv,
    ``features.{i}.1`` batch norm) plus ``head.weight`` / ``head.bias``. Returns logits (n, N).
    """
    h = x
    for i in range(blocks):
        h = F.conv2d(h, params[f"features.{i}.0.weight"], params[f"features.{i}.0.bias"], padding=1)
        gamma, beta = params[f"features.{i}.1.weight"], params[f"features.{i}.1.bias"]
        if n_stats == h.shape[0]:  # statistics of the whole input (training on the support set)
            h = F.batch_norm(h, None, None, gamma, beta, training=True, eps=BN_EPS)
        else:  # statistics of the support rows only, applied to every row
            ref = h[:n_stats]
            mean = ref.mean(dim=(0, 2, 3))
            var = ref.var(dim=(0, 2, 3), unbiased=False)
            h = F.batch_norm(h, mean, var, gamma, beta, training=False, eps=BN_EPS)
        h = F.max_pool2d(F.relu(h), 2)
    z = h.flatten(1)  # 28x28 input -> 64x1x1 after four 2x2 pools
    return z @ params["head.weight"].t() + params["head.bias"]


class Scratch(FewShotLearner):
    """A fresh Conv-4 + linear head trained on each support set only (no meta-training).

    Config: ``hidden`` (channels), ``steps`` (Adam steps per task), ``lr``, ``init_seed``
    (seeds the random initialisation, so the baseline is deterministic).
    """

    method = "scratch"

    def __init__(self, hidden: int = 64, steps: int = 100, lr: float = 3e-3, init_seed: int = 0,
                 in_channels: int = 1):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps (Adam steps per task) must be a positive int, got {steps!r}")
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        super().__init__(hidden=hidden, steps=steps, lr=lr, init_seed=init_seed, in_channels=in_channels)
        self.steps, self.lr, self.hidden = steps, lr, hidden
        # The random initialisation every task starts from. It is a registered module, so it
        # is saved in the state dict and ``mlcore.load`` gives back the very same baseline.
        # The initialisation draws from torch's global CPU generator, seeded for this block only, so
        # building a Scratch leaves the caller's random state (CPU and CUDA) as it was.
        with seeded_global_rng(init_seed):
            self.encoder = Conv4(in_channels, hidden, pool="max")
        self.init_seed = init_seed

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        # No meta-training: 0 steps. The learning happens inside predict, on each support set.
        return Recipe(ways=ways, shots=shots, steps=0, test_ways=ways, test_shots=shots,
                      model={"hidden": 64, "steps": 100, "lr": 3e-3, "init_seed": 0})

    def make_train_sampler(self, recipe: Recipe, device, seed: int):
        return _NoMetaTraining()

    def meta_loss(self, episodes: Episode):
        raise RuntimeError("the scratch baseline has no meta-training; its recipe runs 0 steps")

    def _init_params(self, batch: int, ways: int) -> dict[str, torch.Tensor]:
        p = {k: v.detach() for k, v in self.encoder.named_parameters()}
        # A fresh N-way head with nn.Linear's default init U(-1/sqrt(D), 1/sqrt(D)), drawn from
        # its own seeded generator so the same task always gets the same starting point.
        g = torch.Generator().manual_seed(self.init_seed * 1000 + ways)
        bound = 1 / math.sqrt(self.hidden)
        p["head.weight"] = ((torch.rand(ways, self.hidden, generator=g) * 2 - 1) * bound).to(self.device)
        p["head.bias"] = ((torch.rand(ways, generator=g) * 2 - 1) * bound).to(self.device)
        return {k: v.unsqueeze(0).expand(batch, *v.shape).clone() for k, v in p.items()}

    def _vectorise(self, x: torch.Tensor) -> bool:
        # vmap turns the B tasks' convolutions into one grouped convolution: a large win on a
        # GPU, but on a CPU it is slower than a plain loop over tasks (measured: ~25x at B=5).
        return x.device.type == "cuda"

    def _per_task(self, fn, *args):
        """``vmap(fn)(*args)`` on a GPU, the same as a loop over the task dimension elsewhere."""
        if self._vectorise(args[1]):
            return vmap(fn)(*args)
        outs = [fn({k: v[i] for k, v in args[0].items()}, *(a[i] for a in args[1:]))
                for i in range(args[1].shape[0])]
        if isinstance(outs[0], dict):
            return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
        return torch.stack(outs)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, ways: int) -> dict[str, torch.Tensor]:
        """Train B task-specific networks on their support sets: (B, n, C, H, W), (B, n) -> batched params."""
        params = self._init_params(support_y.shape[0], ways)

        def loss_fn(p, x, y):
            return F.cross_entropy(conv4_forward(p, x, n_stats=x.shape[0]), y)

        m = {k: torch.zeros_like(v) for k, v in params.items()}
        v2 = {k: torch.zeros_like(v) for k, v in params.items()}
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        with torch.enable_grad():
            for t in range(1, self.steps + 1):
                g = self._per_task(grad(loss_fn), params, support_x, support_y)
                for k in params:  # Adam (Kingma & Ba) on the stacked per-task weights
                    m[k].mul_(beta1).add_(g[k], alpha=1 - beta1)
                    v2[k].mul_(beta2).addcmul_(g[k], g[k], value=1 - beta2)
                    step = self.lr / (1 - beta1 ** t)
                    params[k] = params[k] - step * m[k] / (torch.sqrt(v2[k] / (1 - beta2 ** t)) + eps)
        return params

    def _logits(self, sx, sy, qx, ways: int) -> torch.Tensor:
        params = self.adapt(sx, sy, ways)
        n = sx.shape[1]

        def score(p, s, q):
            return conv4_forward(p, torch.cat([s, q]), n_stats=n)[n:]

        return self._per_task(score, params, sx, qx)

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        support_x, query_x = self.as_input(support_x), self.as_input(query_x)  # raw drawings of any size
        ways = check_task(support_x, support_y, query_x)
        return self._logits(support_x[None], support_y[None].long(), query_x[None], ways)[0]

    def predict_batch(self, episodes: Episode) -> torch.Tensor:
        return self._logits(episodes.support_x, episodes.support_y, episodes.query_x, episodes.ways)


class _NoMetaTraining:
    """Stand-in training sampler: ``fit`` with 0 steps never calls ``sample``."""

    def sample(self):
        raise RuntimeError("the scratch baseline has no meta-training data")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
